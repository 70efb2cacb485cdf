"""`hira-gpu-check` with the package installed (pip install -e .): see hira/commands/gpu_check.py."""
from hira.commands.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`hira-gpu-check` with the package installed (pip install -e .): see benchmarks/gpu_check.py."""
from benchmarks.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())

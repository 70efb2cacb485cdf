"""`hira-compare` with the package installed (pip install -e .): see hira/commands/compare.py."""
from hira.commands.compare import main

if __name__ == "__main__":
    raise SystemExit(main())

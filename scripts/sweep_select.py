"""`hira-sweep-select` with the package installed (pip install -e .): see hira/commands/sweep_select.py."""
from hira.commands.sweep_select import main

if __name__ == "__main__":
    raise SystemExit(main())

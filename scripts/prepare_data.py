"""`hira-prepare-data` with the package installed (pip install -e .): see hira/commands/prepare_data.py."""
from hira.commands.prepare_data import main

if __name__ == "__main__":
    raise SystemExit(main())

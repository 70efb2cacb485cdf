"""`hira-make-tables` with the package installed (pip install -e .): see hira/commands/make_tables.py."""
from hira.commands.make_tables import main

if __name__ == "__main__":
    raise SystemExit(main())

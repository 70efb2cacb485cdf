"""`hira-count-params` with the package installed (pip install -e .): see hira/commands/count_params.py."""
from hira.commands.count_params import main

if __name__ == "__main__":
    raise SystemExit(main())

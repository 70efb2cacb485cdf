"""`hira-count-params` with the package installed (pip install -e .): see hira/adapters/count.py."""
from hira.adapters.count import main

if __name__ == "__main__":
    raise SystemExit(main())

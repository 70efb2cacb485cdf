"""`hira-analyze-updates` with the package installed (pip install -e .): see hira/commands/analyze_updates.py."""
from hira.commands.analyze_updates import main

if __name__ == "__main__":
    raise SystemExit(main())

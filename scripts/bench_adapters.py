"""`hira-bench-adapters` with the package installed (pip install -e .): see hira/commands/bench_adapters.py."""
from hira.commands.bench_adapters import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`hira-bench-adapters` with the package installed (pip install -e .): see benchmarks/bench_adapters.py."""
from benchmarks.bench_adapters import main

if __name__ == "__main__":
    raise SystemExit(main())

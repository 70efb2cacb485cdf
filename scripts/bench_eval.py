"""`hira-bench-eval` with the package installed (pip install -e .): see benchmarks/bench_eval.py."""
from benchmarks.bench_eval import main

if __name__ == "__main__":
    raise SystemExit(main())

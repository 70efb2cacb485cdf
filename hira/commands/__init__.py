"""The console commands (pyproject.toml's [project.scripts]), one module each with main(argv=None):

    hira-make-tables       make_tables.py       the paper's tables from finished runs
    hira-analyze-updates   analyze_updates.py   singular-value spectra of the learned updates
    hira-prepare-data      prepare_data.py      downloaded task files into data/<task>/
    hira-bench-adapters    bench_adapters.py    step time and memory of HiRA against the other methods
    hira-gpu-check         gpu_check.py         the GPU proof in one command (its sections: gpu_sections.py)
    hira-count-params      hira/adapters/count.py, its home since `python -m hira.adapters.count`

scripts/<name>.py call the same main()s, for a checkout used without the console scripts on PATH.
"""

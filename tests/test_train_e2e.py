"""train.py and eval.py end to end on the tiny model, as a user runs them."""

import json

import pytest
import torch
from conftest import common_overrides, run_script

from omegaconf import OmegaConf
from helpers import check_record, direct_cross_entropy

from hira.adapters import merge
from hira.evaluation.forgetting import TINY_TEXT, forgetting_text
from hira.models.loading import load_adapted_model, load_base_model
from hira.training.checkpoint import load_adapter
from hira.training.runlog import read_metrics
from hira.run_dir import RunDir, setting_scores

pytestmark = pytest.mark.slow  # train.py and eval.py subprocesses


def test_train_then_eval(workdir):
    run_dir = workdir / "run_e2e"
    proc = run_script("train.py", *common_overrides(workdir), f"run_dir={run_dir}", "task.epochs=2", "train.eval_steps=40",
               "train.lr=3e-2")
    assert proc.returncode == 0, proc.stderr[-3000:]

    last = (60 * 8 - 48) // 8 * 2  # (train examples // global batch) × epochs
    ckpts = [p.name for p in (run_dir / "checkpoints").glob("step_*")]
    assert sorted(ckpts) == sorted(["step_40", "step_80", f"step_{last}"])  # every eval_steps, and the last step
    events = read_metrics(run_dir / "metrics.jsonl")
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["step"] for e in evals] == [40, 80, last]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    best = min(evals, key=lambda e: e["val_loss"])
    assert (run_dir / "checkpoints" / "best").read_text().strip() == f"step_{best['step']}"
    train_steps = [e["step"] for e in events if e["event"] == "train"]
    assert train_steps == sorted(set(train_steps)) and train_steps[-1] == last

    scores = setting_scores(json.loads((run_dir / "scores.json").read_text()))
    assert scores["best"]["checkpoint"] == f"step_{best['step']}"
    assert set(scores["best"]["subsets"]) == {"boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa"}
    assert "average" in proc.stdout and "parse fail" in proc.stdout
    predictions = run_dir / "predictions" / "generate_b4_t8" / f"step_{best['step']}"  # the run's own setting
    rows = [json.loads(line) for line in (predictions / "piqa.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and set(rows[0]) == {"prompt", "generation", "prediction", "gold", "correct"}

    record = check_record(run_dir, "generate_b4_t8")  # result.json, forgetting on the tiny world's text
    assert record["forgetting"]["text"] == TINY_TEXT
    check_forgetting(run_dir, record["forgetting"], forgetting_text(None, "tiny")[1])

    # The separate evaluator scores every checkpoint of the finished run (forgetting on a text of our own).
    text_file = workdir / "forgetting.txt"
    text_file.write_text("the fox is red . the fox lives in the forest .\nwhat does the owl eat? it eats mice .\n")
    proc = run_script("eval.py", f"run_dir={run_dir}", "checkpoints=all", "subsets=[piqa,boolq]", "num_beams=2",
                      f"eval.forgetting_text={text_file}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = check_record(run_dir, "generate_b4_t8")  # still its own setting; the other has no best entry
    assert list(record["scorings"]) == ["generate_b4_t8"] and record["forgetting"]["text"] == str(text_file)
    check_forgetting(run_dir, record["forgetting"], text_file.read_text())
    scores = setting_scores(json.loads((run_dir / "scores.json").read_text()), "generate_b2_t8")
    for name in ckpts:
        assert set(scores["scored"][name]["subsets"]) == {"piqa", "boolq"}
        assert (run_dir / "predictions" / "generate_b2_t8" / name / "boolq.jsonl").is_file()


def test_eval_without_checkpoints_is_one_clear_line(tmp_path):
    (tmp_path / "config.yaml").write_text("task: {num_beams: 4, max_new_tokens: 8}\n")
    proc = run_script("eval.py", f"run_dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: checkpoints=best: run {tmp_path} has no checkpoints yet; training has not "
                                  f"logged anything") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


def check_forgetting(run_dir, entry: dict, text: str) -> None:
    """The record's cross-entropies equal a direct computation with the base and the tuned checkpoint."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    base, tokenizer = load_base_model(cfg.model)
    tuned, _ = load_adapted_model(cfg)
    load_adapter(tuned, run_dir / "checkpoints" / entry["checkpoint"], cfg)
    merge(tuned)
    assert abs(entry["base_cross_entropy"] - direct_cross_entropy(base, tokenizer, text)) < 1e-5
    assert abs(entry["tuned_cross_entropy"] - direct_cross_entropy(tuned, tokenizer, text)) < 1e-5
    assert entry["base_cross_entropy"] != entry["tuned_cross_entropy"]  # training moved the weights


def test_bfloat16_trains_and_scores(workdir, tmp_path):
    """model.dtype=bfloat16 through train.py and its scoring, on the tiny model (SmolLM2 in bf16 is a benchmark:
    a bf16 backward of a 30-layer model takes a minute on a CPU without bf16 instructions)."""
    run_dir = tmp_path / "run"
    proc = run_script("train.py", *common_overrides(workdir), "model.dtype=bfloat16", "train.max_steps=4",
                      "train.eval_steps=4", "train.log_steps=1", "eval_limit=2", f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [e["loss"] for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == "train"]
    assert len(losses) == 4 and all(0 < loss < 20 for loss in losses)
    best = setting_scores(json.loads((run_dir / "scores.json").read_text()))["best"]
    assert best["checkpoint"] == "step_4" and {s["n"] for s in best["subsets"].values()} == {2}
    model, _ = load_adapted_model(RunDir(run_dir).load_config())  # what training and scoring loaded
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16

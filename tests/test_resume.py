"""Exact resume after a SIGKILL in the middle of a checkpoint save: bit-identical adapters, seamless metrics; and a
resume under other settings refused with nothing written, one that changes a neutral key recorded
(hira/training/resume.py)."""

import hashlib
import shutil
from pathlib import Path

import pytest
from conftest import common_overrides, run_script, train_killed_in_save
from omegaconf import OmegaConf
from safetensors.torch import load_file

from hira.run_dir import RunDir
from hira.training import checkpoint
from hira.training.runlog import read_metrics

pytestmark = pytest.mark.slow  # train.py subprocesses

STEPS = ["train.max_steps=12", "train.eval_steps=4", "train.log_steps=1", "evaluate_after_training=false"]


def train(run_dir, workdir, kill_in_save=None, extra=()):
    args = [*common_overrides(workdir), *STEPS, f"run_dir={run_dir}", *extra]
    if kill_in_save is None:
        return run_script("train.py", *args)
    return train_killed_in_save(kill_in_save, *args)


def events(run_dir, kind):
    return [e for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == kind]


@pytest.fixture(scope="module")
def reference(workdir, tmp_path_factory):
    """One uninterrupted run, shared by the tests below (those that resume it change a copy)."""
    run_dir = tmp_path_factory.mktemp("resume") / "uninterrupted"
    proc = train(run_dir, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_killed_run_resumes_bit_identically(reference, workdir, tmp_path):
    run = tmp_path / "killed"

    proc = train(run, workdir, kill_in_save=8)  # SIGKILL mid-run, while step_8 is half written
    assert proc.returncode == -9, proc.stderr[-3000:]
    ckpts = run / "checkpoints"
    assert [p.name for p in checkpoint.list_checkpoints(ckpts)] == ["step_4"] and (ckpts / ".tmp_step_8").is_dir()
    assert [e["step"] for e in events(run, "train")] == list(range(1, 9))
    assert checkpoint.best_checkpoint(ckpts).name == "step_4"  # the previous checkpoint and best still load
    assert load_file(ckpts / "step_4" / checkpoint.ADAPTER_FILE).keys() == \
        load_file(reference / "checkpoints" / "step_4" / checkpoint.ADAPTER_FILE).keys()
    assert checkpoint.trainer_state(ckpts / "step_4")["step"] == 4

    proc = train(run, workdir)  # resume=auto by default: continue step_4 again, to the end
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (ckpts / ".tmp_step_8").exists()
    for step in ("step_4", "step_8", "step_12"):
        ours = (ckpts / step / checkpoint.ADAPTER_FILE).read_bytes()
        assert ours == (reference / "checkpoints" / step / checkpoint.ADAPTER_FILE).read_bytes(), step

    # metrics.jsonl continues without duplicates or gaps, with the same numbers as the uninterrupted run
    for kind in ("train", "eval"):
        assert [(e["step"], e.get("loss", e.get("val_loss"))) for e in events(run, kind)] == \
            [(e["step"], e.get("loss", e.get("val_loss"))) for e in events(reference, kind)]
    assert [e["step"] for e in events(run, "resume")] == [4] and len(events(run, "end")) == 1
    assert (ckpts / "best").read_text() == (reference / "checkpoints" / "best").read_text()


# --- resume under other settings -------------------------------------------------------------------------------------

def snapshot(folder: Path) -> dict:
    """Every file under folder (config.yaml, metrics.jsonl, checkpoints, train.log, ...) with its digest."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_resume_with_changed_settings_is_refused_and_writes_nothing(reference, workdir):
    before = snapshot(reference)
    lr = OmegaConf.load(reference / "config.yaml").train.lr
    proc = train(reference, workdir, extra=["train.lr=0.05", "task.loss_on=full"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: run_dir={reference} was trained with other settings (task.loss_on: response -> full; train.lr: "
        f"{lr} -> 0.05); resuming would train one run under two settings: start a new run with a new run_dir=, or "
        f"resume with the run's own settings (its config.yaml)")
    assert snapshot(reference) == before


def test_a_longer_schedule_is_refused_as_a_new_run(reference, workdir):
    before = snapshot(reference)
    proc = train(reference, workdir, extra=["train.max_steps=16"])
    assert proc.returncode == 2
    assert "(train.max_steps: 12 -> 16); train.max_steps changes the learning-rate schedule, so it is a new run, " \
           "not a resume" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert snapshot(reference) == before


def test_a_neutral_change_resumes_and_is_recorded(reference, workdir, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    config = (run_dir / "config.yaml").read_bytes()
    adapter = (run_dir / "checkpoints" / "step_12" / checkpoint.ADAPTER_FILE).read_bytes()
    proc = train(run_dir, workdir, extra=["train.log_steps=2", "train.keep_last=1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "config.yaml").read_bytes() == config  # what the run trained with, its first run_dir included
    changed = {"run_dir": [str(reference), str(run_dir)], "train.keep_last": [None, 1], "train.log_steps": [1, 2]}
    assert RunDir(run_dir).read_resumes() == [{"step": 12, "checkpoint": "step_12", "changed": changed}]
    assert [(e["step"], e["changed"]) for e in RunDir(run_dir).events("resume")] == [(12, changed)]
    assert (run_dir / "checkpoints" / "step_12" / checkpoint.ADAPTER_FILE).read_bytes() == adapter

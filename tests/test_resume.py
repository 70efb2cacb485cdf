"""Exact resume after a SIGKILL in the middle of a checkpoint save: bit-identical adapters, seamless metrics."""

import os
import subprocess
import sys

import pytest
from conftest import KILLER, ROOT, common_overrides
from safetensors.torch import load_file

from hira.training import checkpoint
from hira.training.runlog import read_metrics

pytestmark = pytest.mark.slow  # train.py subprocesses

STEPS = ["train.max_steps=12", "train.eval_steps=4", "train.log_steps=1", "evaluate_after_training=false"]


def train(run_dir, workdir, kill_in_save=None):
    args = [*common_overrides(workdir), *STEPS, f"run_dir={run_dir}"]
    if kill_in_save is None:
        return subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    env = {**os.environ, "KILL_IN_SAVE": str(kill_in_save)}
    return subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def events(run_dir, kind):
    return [e for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == kind]


def test_killed_run_resumes_bit_identically(workdir, tmp_path):
    reference, run = tmp_path / "uninterrupted", tmp_path / "killed"
    proc = train(reference, workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]

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

"""logger=wandb with the real package, offline: the config and every training and validation metric reach the
wandb run at their steps, and a run killed and resumed keeps logging to the same wandb run (its id is kept in
<run>/wandb_id). The records are read back with wandb's own reader of its offline log (`wandb leet inspect`)."""

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import KILLER, ROOT, common_overrides
from omegaconf import OmegaConf

from hira.run_dir import RunDir
from hira.training.runlog import wandb_run_id

pytestmark = pytest.mark.slow  # train.py subprocesses (the last test is in-process)

STEPS = ["train.max_steps=4", "train.eval_steps=2", "train.log_steps=1", "evaluate_after_training=false",
         "logger=wandb", "wandb.mode=offline"]


def wandb_env(tmp) -> dict:
    """Quiet, without the system monitor's sampling, and wandb's own settings and caches in a temporary folder
    (offline: nothing leaves the machine)."""
    return {**os.environ, "WANDB_SILENT": "true", "WANDB__DISABLE_STATS": "true", "WANDB_DISABLE_GIT": "true",
            "WANDB_CONFIG_DIR": str(tmp / "config"), "WANDB_CACHE_DIR": str(tmp / "cache"),
            "WANDB_DATA_DIR": str(tmp / "data")}


@pytest.fixture(scope="module")
def resumed_run(workdir, tmp_path_factory):
    """A wandb-logged run SIGKILLed while saving step_4 (step_2 is its last checkpoint), then the same command
    again, which resumes it from step_2 to the end (step 4)."""
    tmp = tmp_path_factory.mktemp("wandb")
    run = tmp / "run"
    args = [*common_overrides(workdir), *STEPS, f"run_dir={run}"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args], cwd=ROOT, capture_output=True, text=True,
                            env={**wandb_env(tmp), "KILL_IN_SAVE": "4"}, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True,
                             env=wandb_env(tmp), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return run, [wandb_records(p) for p in offline_runs(run)]


def offline_runs(run) -> list:
    """wandb's offline-run-<time>-<id> folders in the run folder, oldest first."""
    return sorted((run / "wandb").glob("offline-run-*"))


def wandb_records(offline_run) -> list[dict]:
    """The records of one offline-run-* folder's .wandb log, as wandb's own reader prints them."""
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline_run)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "WANDB_SILENT": "true"})
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def of_type(records, kind) -> list[dict]:
    return [r[kind] for r in records if r["type"] == kind]


def logged(records, key) -> dict[int, float]:
    """{step: value} of one metric in the run's history."""
    return {h["step"]["num"]: h["item"][key] for h in of_type(records, "history") if key in h["item"]}


def events(run, kind) -> dict[int | None, dict]:
    return {e.get("step"): e for e in RunDir(run).events(kind)}


def test_a_killed_and_resumed_run_logs_to_one_wandb_run(resumed_run):
    run, records = resumed_run
    run_id = (run / "wandb_id").read_text().strip()
    assert len(offline_runs(run)) == len(records) == 2  # one folder per process, both under the run's one id
    assert {p.name.rpartition("-")[2] for p in offline_runs(run)} == {run_id}
    resumed = of_type(records[1], "run")[0]
    assert resumed["run_id"] == run_id and resumed["resume"]
    # the killed process's own file may hold nothing: wandb writes it every 15 s, and a SIGKILL loses the rest
    assert all(r["run_id"] == run_id for r in of_type(records[0], "run"))


def test_the_config_and_metrics_reach_wandb_at_their_steps(resumed_run):
    run, (killed, resumed) = resumed_run
    config = {k: v for k, v in of_type(resumed, "run")[0]["config"]["update"].items() if k != "_wandb"}
    assert config == OmegaConf.to_container(OmegaConf.load(run / "config.yaml"))

    train, evals = events(run, "train"), events(run, "eval")
    assert sorted(train) == [1, 2, 3, 4] and sorted(evals) == [2, 4]
    # the resumed process sends the events kept from before its checkpoint (step_2), then its own
    assert logged(resumed, "train/loss") == {s: e["loss"] for s, e in train.items()}
    assert logged(resumed, "train/lr") == {s: e["lr"] for s, e in train.items()}
    assert logged(resumed, "eval/val_loss") == {s: e["val_loss"] for s, e in evals.items()}
    assert logged(resumed, "start/trainable_params") == {0: events(run, "start")[None]["trainable_params"]}
    assert logged(resumed, "resume/total_steps") == {2: 4}  # the "resume" event, at the step it resumed from
    assert logged(resumed, "end/best_step") == {4: events(run, "end")[4]["best_step"]}
    before = logged(killed, "train/loss")  # whatever the killed process's file kept: the same numbers
    assert before == {s: train[s]["loss"] for s in before}


def test_the_wandb_id_is_made_once_and_kept(tmp_path):
    run_id = wandb_run_id(tmp_path)
    assert re.fullmatch("[a-z0-9]{8}", run_id)
    assert wandb_run_id(tmp_path) == run_id == (tmp_path / "wandb_id").read_text().strip()
    assert wandb_run_id(tmp_path / "other") != run_id

"""Sweeps (`python train.py -m ...`): each cell in a folder named from its settings, a finished cell skipped, a
failed one recorded while the sweep goes on, and one summary line per cell when the sweep ends.

    <sweep dir>/<task>_<method>_<model>_s<seed>_<cell id>/   one cell's run folder (Hydra's job folder too)
    <run>/failed.json                                        why its last attempt failed (gone once it finishes)
    <sweep dir>/summary.jsonl                                one line per cell and attempt: done | skipped | failed

The cell id is a short hash of the run's settings fingerprint (hira.paper.runs.run_settings), so the same command
finds the same folders again: a finished run is skipped, a killed one resumes (resume=auto), a failed one is tried
again. `sweep.rerun=all` moves each existing cell's results aside (<run>.replaced-<time>/) and runs it afresh.
Under submitit (hydra/launcher=submitit_slurm, submitit_local) a cell of several tasks is one DeepSpeed job whose
rank, world size and master address come from submitit's environment (docs/cluster.md).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from hira.config.schema import SWEEP_RERUN as RERUN
from hira.errors import UserError, log_to_files
from hira.paper.lr_sweep import check_lr_factor, settings_of, short_hash, sweep_lr
from hira.paper.runs import UNREADABLE, first_line, unfinished_reason
from hira.run_dir import RunDir

log = logging.getLogger(__name__)

FAILED_FILE = "failed.json"
SUMMARY_FILE = "summary.jsonl"
SWEEP_KEY = "sweep"         # the config node of sweep options: not a training setting, removed before training


# --- the options and their check --------------------------------------------------------------------------------

def check_sweep_options(cfg: DictConfig) -> None:
    """sweep.rerun and sweep.lr_factor (the lr grid of +experiment=lr_sweep): one line for a bad value."""
    rerun = OmegaConf.select(cfg, "sweep.rerun", default="missing")
    if rerun not in RERUN:
        raise UserError(f"sweep.rerun={rerun}: valid: {' | '.join(RERUN)} (missing: run each cell without a "
                        "finished run; all: every cell again, its earlier results moved aside)")
    check_lr_factor(cfg)


def pop_sweep_options(cfg: DictConfig) -> DictConfig:
    """The sweep options, checked and removed from cfg, train.lr set to the rate the cell trains at: a run's
    config.yaml holds training settings only (the tables compare those)."""
    check_sweep_options(cfg)
    options = OmegaConf.create(OmegaConf.to_container(cfg.get(SWEEP_KEY) or {}, resolve=True))
    with open_dict(cfg):
        cfg.train.lr = sweep_lr(cfg)
        cfg.pop(SWEEP_KEY, None)
    return options


def check_sweep_cell(cfg: DictConfig) -> None:
    """train.py's check phase: the sweep options, then the training config they leave, which train() then takes as
    checked (hira/config/handed_on.py)."""
    from hira.config.check import check_train_config
    from hira.config.handed_on import hand_on

    pop_sweep_options(cfg)
    check_train_config(cfg)
    hand_on(cfg, "train")


def check_launcher(launcher: DictConfig) -> None:
    """A submitit launcher that can start: SLURM's partition exists (sinfo lists it); the local executor has one
    node. One line otherwise, before any cell runs."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("SlurmLauncher"):
        check_slurm_partition(launcher.get("partition"))
    elif "submitit" in target and int(launcher.get("nodes") or 1) > 1:
        raise UserError(f"hydra.launcher.nodes={launcher.nodes}: the local executor runs on this machine; valid: 1 "
                        "(several ranks: hydra.launcher.tasks_per_node)")


def check_slurm_partition(partition) -> None:
    import subprocess

    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=submitit_slurm needs SLURM's sinfo and sbatch, not found on this machine; "
                        "valid here: hydra/launcher=submitit_local or submitit_local_pool, or no launcher")
    listed = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True).stdout.split()
    if partition is not None and partition not in listed:
        raise UserError(f"hydra.launcher.partition={partition}: no such SLURM partition; valid: {', '.join(listed)} "
                        "(sinfo)")


# --- the cell's folder --------------------------------------------------------------------------------------------

def cell_id(*, _root_) -> str:
    """${hira_cell:}: the cell's id, a hash of its settings (seed apart: the folder name shows it)."""
    return short_hash(settings_of(_root_))


# on import: Hydra imports this module for its callbacks before any cell's folder is resolved (in a submitit job too:
# unpickling the callbacks imports it)
OmegaConf.register_new_resolver("hira_cell", cell_id, replace=True)


# --- one cell -----------------------------------------------------------------------------------------------------

def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig, train_and_score):
    """train.py's job: train_and_score(cfg) as it always was, or under -m one cell of the sweep."""
    options = pop_sweep_options(cfg)
    if not is_multirun():
        return train_and_score(cfg)
    join_submitit_job()
    return run_cell(cfg, options, train_and_score)


def join_submitit_job() -> None:
    """Inside a submitit task: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from the job's environment
    (SLURM's or the local executor's), which hira.distributed.init_distributed and DeepSpeed read."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from submitit.helpers import TorchDistributedEnvironment

    # the GPUs SLURM gives a task stay visible: DeepSpeed picks cuda:LOCAL_RANK among them
    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)


def job_folder() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def run_dir_given() -> bool:
    """run_dir= on the command line: the user named the folder (else under -m the cell's job folder is it)."""
    from hydra.core.hydra_config import HydraConfig

    from hira.config.command_line import key_of

    return any(key_of(o) == "run_dir" for o in HydraConfig.get().overrides.task)


def run_cell(cfg: DictConfig, options, train_and_score) -> dict:
    """Skip a finished cell, else run it; a user-fixable failure is recorded and returned, never raised, so the
    sweep's next cell starts (and under submitit the status comes back to the launcher)."""
    if not run_dir_given():
        cfg.run_dir = str(job_folder())
    run = RunDir(cfg.run_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    if not main:
        from hira.cli import close_log_files

        close_log_files(job_folder().resolve())  # rank 0 writes the run's train.log
    if options.get("rerun", "missing") == "missing" and finished_run(run, cfg):
        print(f"skipped: {run.path} holds this cell's finished run", flush=True)
        return record(run, "skipped", main=main)
    if options.get("rerun") == "all" and main:
        move_results_aside(run)
    try:
        train_and_score(cfg)
    except Exception as e:
        if not isinstance(e, UserError) and not is_out_of_memory(e):
            raise  # a bug: Hydra stops the sweep with the traceback
        reason = failure_reason(e)
        log_to_files(f"error: {reason}")
        print(f"failed: {run.path}: {reason}", file=sys.stderr, flush=True)
        return record(run, "failed", reason, main=main)
    return record(run, "done", main=main)


def is_out_of_memory(error: Exception) -> bool:
    import torch

    return isinstance(error, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError),
                              torch.cuda.OutOfMemoryError))


def failure_reason(error: Exception) -> str:
    line = first_line(error)
    return line if isinstance(error, UserError) else f"out of memory ({type(error).__name__}: {line})"


def finished_run(run: RunDir, cfg: DictConfig) -> bool:
    """A finished run (its end event, its scores) of these settings and this seed is in the folder."""
    if not run.config.is_file() or (run.path / FAILED_FILE).is_file():
        return False
    try:
        theirs = run.load_config()
        same = settings_of(theirs) == settings_of(cfg) and theirs.get("seed") == cfg.seed
        return same and unfinished_reason(run, theirs) is None
    except UNREADABLE:
        return False


def move_results_aside(run: RunDir) -> Path | None:
    """sweep.rerun=all: the cell's earlier results move to <run>.replaced-<time>/ (Hydra's own files, open for this
    job, stay), so the new run starts fresh and nothing is deleted."""
    from hira.cli import hydra_files

    old = [p for p in run.path.iterdir() if p.name not in hydra_files()] if run.path.is_dir() else []
    if not any(p.name != FAILED_FILE for p in old):
        return None
    aside = run.path.with_name(f"{run.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
    aside.mkdir()
    for path in old:
        shutil.move(str(path), aside / path.name)
    print(f"rerun: the earlier results of {run.path} moved to {aside}", flush=True)
    return aside


def record(run: RunDir, status: str, reason: str | None = None, *, main: bool = True) -> dict:
    """The cell's status in its folder (failed.json, removed once the cell finishes) and in the sweep's summary."""
    entry = {"status": status, "run_dir": str(run.path), "overrides": task_overrides(), "reason": reason,
             "time": time.time()}
    if not main:
        return entry
    failed = run.path / FAILED_FILE
    if status == "failed":
        run.path.mkdir(parents=True, exist_ok=True)
        failed.write_text(json.dumps({"reason": reason, "time": entry["time"]}) + "\n")
    else:
        failed.unlink(missing_ok=True)
    append_line(summary_file(), entry)
    return entry


def task_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def summary_file() -> Path:
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().sweep.dir) / SUMMARY_FILE


def append_line(path: Path, entry: dict) -> None:
    """One JSON line, appended in one write (parallel cells append to the same file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")


# --- the summary --------------------------------------------------------------------------------------------------

def read_entries(path: Path, offset: int = 0) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        f.seek(offset)
        return [json.loads(line) for line in f.read().splitlines() if line.strip()]


def summary_lines(entries: list[dict]) -> list[str]:
    """One line per cell: its last status in this sweep, its folder, the overrides that tell the cells apart, and
    a failure's reason."""
    last = list({e["run_dir"]: e for e in entries}.values())
    shared = set.intersection(*(set(e["overrides"]) for e in last)) if last else set()  # one cell: none shown
    lines = []
    for entry in last:
        own = " ".join(o for o in entry["overrides"] if o not in shared)
        reason = f": {entry['reason']}" if entry.get("reason") else ""
        lines.append(f"{entry['status']:<8} {entry['run_dir']}{f' ({own})' if own else ''}{reason}")
    return lines


def summary_exit_code(entries: list[dict]) -> int:
    last = {e["run_dir"]: e["status"] for e in entries}
    return 1 if "failed" in last.values() else 0


class SweepSummary(Callback):
    """Prints each cell's status when the sweep ends (the cells of this command: the summary's lines written after
    it started) and exits 1 when any failed. Registered in configs/train.yaml: the last callback to run at the end."""

    def __init__(self):
        self.offset = 0

    def on_multirun_start(self, config, **kwargs) -> None:
        path = Path(config.hydra.sweep.dir) / SUMMARY_FILE
        self.offset = path.stat().st_size if path.is_file() else 0

    def on_multirun_end(self, config, **kwargs) -> None:
        entries = read_entries(Path(config.hydra.sweep.dir) / SUMMARY_FILE, self.offset)
        counts = {s: sum(e == s for e in {e["run_dir"]: e["status"] for e in entries}.values())
                  for s in ("done", "skipped", "failed")}
        print(f"sweep summary ({Path(config.hydra.sweep.dir) / SUMMARY_FILE}): "
              + ", ".join(f"{n} {s}" for s, n in counts.items()), flush=True)
        for line in summary_lines(entries):
            print(line, flush=True)
        if summary_exit_code(entries):
            sys.exit(1)

"""Which of a run's checkpoints eval.py scores: a named selection (best, all, step_<N>), or with watch=true each
one as training writes it, skipping a damaged one until it is written anew. Saving and checking checkpoints is
hira/training/checkpoint.py's."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from hira.errors import UserError
from hira.run_dir import RunDir
from hira.training.checkpoint import best_checkpoint, check_intact, list_checkpoints, verify

log = logging.getLogger(__name__)


def wait_for_config(config_file: Path, watch: bool, poll_s: float, timeout_s: float | None) -> None:
    started = time.monotonic()
    while watch and not config_file.is_file():
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            break
        time.sleep(poll_s)
    if not config_file.is_file():
        raise UserError(f"run_dir={config_file.parent} has no config.yaml; point run_dir at a folder made by train.py")


def select_checkpoints(ckpt_root: Path, which: str) -> list[Path]:
    """`best`, `all` or `step_<N>` -> checkpoint folders."""
    if not list_checkpoints(ckpt_root):
        run_dir = Path(ckpt_root).parent
        raise UserError(f"checkpoints={which}: run {run_dir} has no checkpoints yet; {training_status(run_dir)}")
    if which == "best":
        return [best_checkpoint(ckpt_root)]
    found = list_checkpoints(ckpt_root)
    if which != "all":
        found = [p for p in found if p.name == which]
    if not found:
        raise UserError(f"checkpoints={which}: no such checkpoint in {ckpt_root} "
                        f"(valid: best, all, or one of {', '.join(p.name for p in list_checkpoints(ckpt_root))})")
    for ckpt in found:  # every one before the first loads
        check_intact(ckpt)
    return found


def training_status(run_dir: Path) -> str:
    """Whether training is running, ended or never started, as metrics.jsonl tells it."""
    events = [e.get("event") for e in RunDir(run_dir).events()]
    if not events:
        return "training has not logged anything (not started yet, or it failed before its first step)"
    if "end" in events:
        return "training ended without saving one"
    return ("training is still running (or was stopped): metrics.jsonl has no end event; eval.py watch=true "
            "scores each checkpoint as it appears")


def watch_checkpoints(run_dir: Path, score, already_scored=(), poll_s: float = 30, timeout_s: float | None = None):
    """Call score(ckpt) for each intact checkpoint as it appears; return the scored names once training has finished.

    A damaged checkpoint is skipped with one warning; it is checked again on later polls, since a resumed run
    moves it aside and writes that step anew."""
    run, scored, started = RunDir(run_dir), list(already_scored), time.monotonic()
    damaged = {}  # name -> what was wrong with it when last checked
    while True:
        finished = run.training_ended()  # read before listing: the last checkpoint is saved before "end"
        for ckpt in list_checkpoints(run.checkpoints):
            if ckpt.name in scored:
                continue
            problem = verify(ckpt)
            if problem is None:
                score(ckpt)
                scored.append(ckpt.name)
            elif damaged.get(ckpt.name) != problem:
                log.warning("watch: skipping checkpoint %s, it is damaged (%s)", ckpt, problem)
            damaged[ckpt.name] = problem
        if finished:
            return scored
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise UserError(f"watch: training in {run_dir} has not finished after {timeout_s} s "
                            f"(no \"end\" event in metrics.jsonl); raise watch_timeout_s or check the run")
        time.sleep(poll_s)

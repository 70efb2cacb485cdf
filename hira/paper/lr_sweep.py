"""The equal tuning budget (+experiment=lr_sweep): every method trains at the same factors of its default learning
rate on the first seed; its rate is the one with the lowest validation loss (never a test score); the remaining
seeds then train at that rate (sweep.lr_factor=chosen). docs/tables.md describes the protocol.

A method's tuning group is its settings fingerprint (hira.paper.runs.run_settings) without train.lr: the runs of
one group differ only in their rate and seed. Its tuning runs are its finished lr_sweep runs at the group's lowest
seed; a rate whose run did not finish (diverged, killed) is no candidate.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hira.errors import UserError
from hira.paper.runs import Run, find_runs, run_settings
from hira.run_dir import RunDir

EXPERIMENT = "lr_sweep"
CHOSEN = "chosen"
FOLDERS = ("hydra", "run_dir")  # name folders: removed before resolving (run_dir may name Hydra's job folder)
SWEEP = "sweep"                 # the sweep's options: read by train.lr under lr_sweep, never settings themselves


def settings_of(cfg: DictConfig, drop=()) -> dict:
    """run_settings of cfg without the folder keys and the sweep's options, train.lr the rate the cell trains at;
    `drop` (dotted keys) removed too."""
    tree = OmegaConf.to_container(cfg, resolve=False)
    for key in (*FOLDERS, *drop):
        node, parts = tree, key.split(".")
        for part in parts[:-1]:
            node = node.get(part) or {}
        node.pop(parts[-1], None)
    settings = run_settings(OmegaConf.create(tree), {})
    settings = {k: v for k, v in settings.items() if k.partition(".")[0] != SWEEP}
    if "train.lr" in settings:
        settings["train.lr"] = sweep_lr(cfg)  # the rate the cell trains at (config.yaml's train.lr)
    return settings


def short_hash(settings: dict) -> str:
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:10]


def group_key(cfg: DictConfig) -> str:
    """The tuning group of a config: its settings without the learning rate."""
    return short_hash(settings_of(cfg, drop=("train.lr",)))


def default_lr(cfg: DictConfig) -> float:
    """The method's own rate (train.lr's default: method.lr, or the key model.lr_key names)."""
    return float(cfg.method[OmegaConf.select(cfg, "model.lr_key") or "lr"])


@dataclass(frozen=True)
class TuningRun:
    group: str
    method: str      # the method's name and size, as the tables write them
    lr: float
    factor: float    # lr / the method's default rate
    seed: int
    val_loss: float  # the run's best validation loss (metrics.jsonl's last eval event)
    path: Path
    name: str = ""   # method.name, as the command line names it


def best_val_loss(path: Path) -> float | None:
    evals = RunDir(path).events("eval")
    return float(evals[-1]["best_val_loss"]) if evals else None


def tuning_run(run: Run) -> TuningRun | None:
    """The run as a tuning candidate, or None for a run of another experiment or without a validation."""
    if run.experiment != EXPERIMENT or run.lr is None or run.seed is None:
        return None
    loss = best_val_loss(run.path)
    if loss is None or not math.isfinite(loss):
        return None
    cfg = RunDir(run.path).load_config()
    label = " ".join(part for part in (run.method, run.params, run.modules) if part)
    return TuningRun(group_key(cfg), label, run.lr, run.lr / default_lr(cfg), run.seed, loss, run.path, run.method)


def tuning_runs(runs: list[Run]) -> list[TuningRun]:
    """Each group's candidates: its runs at its lowest seed (the first seed, which the grid runs on)."""
    found = [t for t in map(tuning_run, runs) if t is not None]
    first_seed = {}
    for t in found:
        first_seed[t.group] = min(t.seed, first_seed.get(t.group, t.seed))
    return sorted((t for t in found if t.seed == first_seed[t.group]), key=lambda t: (t.method, t.group, t.lr))


def choose(tuning: list[TuningRun]) -> dict[str, TuningRun]:
    """Per group, the candidate with the lowest validation loss (the smaller rate on a tie)."""
    chosen = {}
    for t in tuning:
        best = chosen.get(t.group)
        if best is None or (t.val_loss, t.lr) < (best.val_loss, best.lr):
            chosen[t.group] = t
    return chosen


def chosen_runs(runs: list[Run], chosen: dict[str, TuningRun]) -> list[Run]:
    """The runs the main tables use: a tuned group's runs at its chosen rate; every other run as it is."""
    kept = []
    for run in runs:
        pick = chosen.get(group_key(RunDir(run.path).load_config())) if run.experiment == EXPERIMENT else None
        if pick is None or math.isclose(run.lr, pick.lr, rel_tol=1e-9):
            kept.append(run)
    return kept


# --- sweep.lr_factor=chosen: the second stage ------------------------------------------------------------------

def chosen_lr(cfg: DictConfig, sweep_dir: str | Path) -> float:
    """The rate the first stage chose for cfg's group, from the finished tuning runs under sweep_dir."""
    sweep_dir = Path(sweep_dir)
    runs, _ = find_runs(sweep_dir) if sweep_dir.is_dir() else ([], [])
    pick = choose(tuning_runs(runs)).get(group_key(cfg))
    if pick is None:
        raise UserError(f"sweep.lr_factor=chosen: no finished tuning run of method={cfg.method.name} with these "
                        f"settings under {sweep_dir}; run the first stage first: python train.py -m "
                        f"+experiment=lr_sweep method={cfg.method.name} (same other overrides)")
    return pick.lr


def sweep_lr(cfg: DictConfig) -> float:
    """The rate a cell trains at: train.lr (the method's default) × sweep.lr_factor, or with
    sweep.lr_factor=chosen the first stage's choice for the cell's group; train.lr itself outside an lr sweep."""
    factor = OmegaConf.select(cfg, "sweep.lr_factor")
    if factor == CHOSEN:
        return chosen_lr(cfg, OmegaConf.select(cfg, "sweep.tuning_dir"))
    lr = cfg.train.lr
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):  # the check phase names it; here it must not crash
        raise UserError(f"train.lr={lr}: valid: a number > 0 (e.g. 1e-3)")
    return lr if factor is None else lr * float(factor)


def check_lr_factor(cfg: DictConfig) -> None:
    """sweep.lr_factor: a number > 0, or chosen with a finished first stage (one line otherwise)."""
    factor = OmegaConf.select(cfg, "sweep.lr_factor")
    if factor == CHOSEN:
        chosen_lr(cfg, OmegaConf.select(cfg, "sweep.tuning_dir"))
    elif factor is not None and (isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor <= 0):
        raise UserError(f"sweep.lr_factor={factor}: valid: a number > 0 (a factor of the method's learning rate, "
                        "e.g. 0.25,0.5,1,2,4) or chosen (the rate of the lowest validation loss in the first stage)")

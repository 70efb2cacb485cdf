"""Checkpoints: <run_dir>/checkpoints/step_<N>/ written to a temp dir and renamed into place; `best` names one.

A checkpoint holds the trainable weights (adapter.safetensors, loadable by a single process), the DeepSpeed
engine state (optimizer, scheduler) for exact resume, per-rank RNG states, the trainer state and the config.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hira.adapters import load_trainable_state_dict, trainable_state_dict
from hira.errors import UserError
from hira.training import distributed

ADAPTER_FILE, STATE_FILE, CONFIG_FILE, BEST_FILE = "adapter.safetensors", "trainer_state.json", "config.yaml", "best"


def step_name(step: int) -> str:
    return f"step_{step}"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def save_checkpoint(engine, ckpt_root: Path, step: int, trainer_state: dict, config_yaml: str) -> Path:
    """Every rank writes its part into a temp dir; rank 0 renames it to step_<N> once all are done."""
    final = Path(ckpt_root) / step_name(step)
    tmp = Path(ckpt_root) / f".tmp_{step_name(step)}"
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    with distributed.gathered(trainable):  # consolidated weights, loadable by a single process
        weights = {k: v.clone() for k, v in trainable_state_dict(engine.module).items()}
    engine.save_checkpoint(str(tmp), tag="engine", save_latest=False, exclude_frozen_parameters=True)
    torch.save(rng_state(), tmp / f"rng_rank{distributed.rank()}.pt")
    if distributed.is_main():
        save_file(weights, str(tmp / ADAPTER_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
        (tmp / CONFIG_FILE).write_text(config_yaml)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    distributed.barrier()
    return final


def mark_best(ckpt_root: Path, step: int) -> None:
    """Point `best` at step_<N>, replacing the marker atomically."""
    tmp = Path(ckpt_root) / f".{BEST_FILE}.tmp"
    tmp.write_text(step_name(step) + "\n")
    os.replace(tmp, Path(ckpt_root) / BEST_FILE)


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints (renamed into place), oldest first."""
    root = Path(ckpt_root)
    found = [p for p in root.glob("step_*") if (p / ADAPTER_FILE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def best_checkpoint(ckpt_root: Path) -> Path:
    marker = Path(ckpt_root) / BEST_FILE
    if not marker.is_file():
        raise UserError(f"no best-checkpoint marker at {marker}; has this run reached its first evaluation?")
    return Path(ckpt_root) / marker.read_text().strip()


def select_checkpoints(ckpt_root: Path, which: str) -> list[Path]:
    """`best`, `all` or `step_<N>` -> checkpoint folders."""
    if which == "best":
        return [best_checkpoint(ckpt_root)]
    found = list_checkpoints(ckpt_root)
    if which != "all":
        found = [p for p in found if p.name == which]
    if not found:
        raise UserError(f"checkpoints={which}: no such checkpoint in {ckpt_root} "
                        f"(valid: best, all, or one of {[p.name for p in list_checkpoints(ckpt_root)] or 'none yet'})")
    return found


def load_adapter(model, ckpt: Path) -> None:
    load_trainable_state_dict(model, load_file(str(Path(ckpt) / ADAPTER_FILE)))

"""Checkpoints: <run_dir>/checkpoints/step_<N>/ written to a temp dir and renamed into place; `best` names one.

A checkpoint holds the trainable weights (adapter.safetensors, loadable by a single process), the DeepSpeed
engine state (optimizer, scheduler) for exact resume, per-rank RNG states, the trainer state and the config.
A step_<N> folder exists only once complete (rename is atomic), so a kill during a save leaves the previous
checkpoints and the `best` marker untouched; rotation renames a folder away before deleting it for the same reason.
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

from hira import distributed
from hira.adapters import load_trainable_state_dict, trainable_state_dict
from hira.errors import UserError
from hira.files import write_text_atomic
from hira.run_dir import CONFIG_FILE, RunDir, best_marker, read_best_marker

ADAPTER_FILE, STATE_FILE = "adapter.safetensors", "trainer_state.json"  # and CONFIG_FILE, the run's config.yaml
TMP_PREFIX, TRASH_PREFIX = ".tmp_", ".del_"


def step_name(step: int) -> str:
    return f"step_{step}"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def checkpoint_bytes(model) -> int:
    """Upper estimate of one checkpoint's size: adapter file + engine copy of the weights + two Adam moments."""
    numel = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
    return 4 * numel * 4 + 2**20  # fp32 (ZeRO also keeps a fp32 master copy) and 1 MiB for the small files


def check_free_space(ckpt_root: Path, step: int, needed: int) -> None:
    """Fail before writing anything when the disk cannot hold the checkpoint (rank 0 decides for all ranks)."""
    free = shutil.disk_usage(ckpt_root).free if distributed.is_main() else 0
    free = distributed.broadcast_object(free)
    if free < needed:
        raise UserError(f"not enough disk space to save {step_name(step)} in {ckpt_root}: needs about "
                        f"{needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB free; free some space or set "
                        f"train.keep_last=N to keep fewer checkpoints")


def save_checkpoint(engine, ckpt_root: Path, step: int, trainer_state: dict, config_yaml: str,
                    rank_state: dict | None = None) -> Path:
    """Every rank writes its part into a temp dir; rank 0 renames it to step_<N> once all are done.

    rank_state: this rank's own values to restore on resume (saved beside its RNG state).
    """
    final = Path(ckpt_root) / step_name(step)
    tmp = Path(ckpt_root) / f"{TMP_PREFIX}{step_name(step)}"
    check_free_space(ckpt_root, step, checkpoint_bytes(engine.module))
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    trainable = [p for p in engine.module.parameters() if p.requires_grad]
    with distributed.gathered(trainable):  # consolidated weights, loadable by a single process
        weights = {k: v.clone() for k, v in trainable_state_dict(engine.module).items()}
    engine.save_checkpoint(str(tmp), tag="engine", save_latest=False, exclude_frozen_parameters=True)
    torch.save({**rng_state(), **(rank_state or {})}, tmp / f"rng_rank{distributed.rank()}.pt")
    distributed.barrier()  # every rank's files are in tmp before it becomes visible as complete
    if distributed.is_main():
        save_file(weights, str(tmp / ADAPTER_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1))
        (tmp / CONFIG_FILE).write_text(config_yaml)
        remove_dir(final)
        os.rename(tmp, final)
    distributed.barrier()
    return final


def remove_dir(path: Path) -> None:
    """Delete a checkpoint folder without ever leaving a half-deleted step_<N> that looks complete."""
    if path.exists():
        trash = path.with_name(TRASH_PREFIX + path.name)
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(path, trash)
        shutil.rmtree(trash)


def clean_partial(ckpt_root: Path) -> None:
    """Remove what a killed save or rotation left behind (rank 0, before training continues)."""
    for leftover in list(Path(ckpt_root).glob(TMP_PREFIX + "*")) + list(Path(ckpt_root).glob(TRASH_PREFIX + "*")):
        shutil.rmtree(leftover, ignore_errors=True)


def mark_best(ckpt_root: Path, step: int) -> None:
    """Point `best` at step_<N>, replacing the marker atomically."""
    write_text_atomic(best_marker(ckpt_root), step_name(step) + "\n")


def rotate(ckpt_root: Path, keep_last: int | None) -> list[str]:
    """Keep the newest keep_last checkpoints and the best one; returns the names deleted (None/0: keep all)."""
    if not keep_last:
        return []
    found = list_checkpoints(ckpt_root)
    best = read_best_marker(ckpt_root)
    doomed = [p for p in found[:-keep_last] if p.name != best]
    for path in doomed:
        remove_dir(path)
    return [p.name for p in doomed]


def list_checkpoints(ckpt_root: Path) -> list[Path]:
    """Complete checkpoints (renamed into place), oldest first."""
    root = Path(ckpt_root)
    found = [p for p in root.glob("step_*") if (p / ADAPTER_FILE).is_file()] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def best_checkpoint(ckpt_root: Path) -> Path:
    name = read_best_marker(ckpt_root)
    if name is None:
        raise UserError(f"no best-checkpoint marker at {best_marker(ckpt_root)}; has this run reached its first "
                        f"evaluation?")
    return Path(ckpt_root) / name


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


def trainer_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def adapter_identity(cfg) -> dict:
    """What a checkpoint's weights depend on: resuming or evaluating under other values cannot work."""
    from hira.adapters.params import method_params

    return {"method": cfg.method.name, "model": cfg.model.name, "method_params": method_params(cfg.method),
            "target_modules": list(cfg.method.get("target_modules") or [])}


def resume_identity(cfg) -> dict:
    """What exact resume also needs unchanged: the data order and how it is cut into steps."""
    return {**adapter_identity(cfg), "data_seed": cfg.data_seed, "global_batch_size": cfg.train.global_batch_size}


def check_compatible(ckpt: Path, cfg, resuming: bool = False) -> None:
    """A one-line error when ckpt was trained with another method, model, rank or targets than cfg (and, when
    resuming, another data order or global batch)."""
    saved, wanted = trainer_state(ckpt), (resume_identity if resuming else adapter_identity)(cfg)
    diffs = [f"{key}: checkpoint {saved[key]} vs config {value}" for key, value in wanted.items()
             if key in saved and saved[key] != value]
    if diffs:
        raise UserError(f"{ckpt} was trained with different settings ({'; '.join(diffs)}); use the run's own "
                        f"settings or a new run_dir")


def load_adapter(model, ckpt: Path, cfg=None) -> None:
    """Load a checkpoint's adapter weights, first checking it matches cfg when given."""
    if cfg is not None:
        check_compatible(ckpt, cfg)
    load_trainable_state_dict(model, load_file(str(Path(ckpt) / ADAPTER_FILE)))


def resume_point(ckpt_root: Path, mode) -> Path | None:
    """The checkpoint to continue from: the latest complete one for resume=auto, none for resume=false
    (the schema, hira/config/schema.py, lets no other mode through).

    resume=false refuses a run_dir that already holds checkpoints rather than silently mixing two runs in it.
    """
    found = list_checkpoints(ckpt_root)
    if mode is False and found:
        raise UserError(f"resume=false but run_dir {Path(ckpt_root).parent} already has checkpoints "
                        f"({found[-1].name} latest); use resume=auto to continue it or pass a new run_dir=")
    return found[-1] if found else None


def check_world_size(ckpt: Path, world: int) -> None:
    saved = trainer_state(ckpt).get("world_size", world)
    if saved != world:
        raise UserError(f"{ckpt} was written by {saved} ranks but this launch has {world}: the DeepSpeed optimizer "
                        f"state is saved per rank, so exact resume needs {saved} ranks (or start a new run_dir)")


def restore(engine, ckpt: Path) -> dict:
    """Load weights, optimizer, scheduler and this rank's RNG state from ckpt.

    Returns the trainer state updated with this rank's own saved values (rank_state of save_checkpoint).
    """
    load_path, _ = engine.load_checkpoint(str(ckpt), tag="engine", load_module_strict=False)
    if load_path is None:
        raise UserError(f"{ckpt}: the DeepSpeed engine state could not be loaded; start a new run_dir")
    saved = torch.load(Path(ckpt) / f"rng_rank{distributed.rank()}.pt", weights_only=False)
    set_rng_state(saved)
    return {**trainer_state(ckpt), **{k: v for k, v in saved.items() if k not in ("python", "numpy", "torch")}}

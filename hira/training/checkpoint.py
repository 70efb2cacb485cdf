"""Checkpoints: <run_dir>/checkpoints/step_<N>/ written to a temp dir and renamed into place; `best` names one.

A checkpoint holds the trainable weights (adapter.safetensors, loadable by a single process), the DeepSpeed
engine state (optimizer, scheduler) for exact resume, per-rank RNG states, the trainer state and the config.
A step_<N> folder exists only once complete (rename is atomic), so a kill during a save leaves the previous
checkpoints and the `best` marker untouched; rotation renames a folder away before deleting it for the same reason.

manifest.json, written last inside the rename, holds every other file's size and SHA-256: a file damaged after
the save (a disk fault, a truncated copy between file systems) is found before anything loads it. Resume falls
back past a damaged newest checkpoint (moved aside to damaged_step_<N>; hira/training/resume.py); eval and the update
analysis refuse one.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from hira.files import read_json, sha256, write_text_atomic
from hira.run_dir import CONFIG_FILE, STEP_DIR, best_marker, read_best_marker

ADAPTER_FILE, STATE_FILE = "adapter.safetensors", "trainer_state.json"  # and CONFIG_FILE, the run's config.yaml
MANIFEST_FILE = "manifest.json"
TMP_PREFIX, TRASH_PREFIX, DAMAGED_PREFIX = ".tmp_", ".del_", "damaged_"

log = logging.getLogger(__name__)


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
    if distributed.is_main():
        save_file(weights, str(tmp / ADAPTER_FILE))
        # the key tells a checkpoint whose manifest went missing from one written before manifests existed
        (tmp / STATE_FILE).write_text(json.dumps({**trainer_state, "manifest": MANIFEST_FILE}, indent=1))
        (tmp / CONFIG_FILE).write_text(config_yaml)
    distributed.barrier()  # every rank's files are in tmp before the manifest lists them
    write_manifest(tmp)
    if distributed.is_main():
        remove_dir(final)
        os.rename(tmp, final)
    distributed.barrier()
    return final


# --- the manifest: each file's size and digest, checked before a checkpoint is loaded ------------------------

def checkpoint_files(folder: Path) -> list[str]:
    """Every file under folder but the manifest, as sorted relative POSIX paths."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.is_file() and p.name != MANIFEST_FILE)


def describe_files(folder: Path, names: list[str]) -> dict:
    return {name: {"size": (Path(folder) / name).stat().st_size, "sha256": sha256(Path(folder) / name)}
            for name in names}


def listing_digest(files: dict) -> str:
    """SHA-256 of the manifest's own listing: a flipped byte in manifest.json shows as damage to it."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


def write_manifest(folder: Path) -> None:
    """manifest.json in folder (called by every rank). Each rank digests a share of the files, since a full
    fine-tune's optimizer state runs to tens of GB; rank 0 lists them and writes the manifest."""
    names = distributed.broadcast_object(checkpoint_files(folder) if distributed.is_main() else None)
    shares = distributed.gather_objects(describe_files(folder, names[distributed.rank()::distributed.world_size()]))
    if distributed.is_main():
        described = {name: entry for share in shares for name, entry in share.items()}
        files = {name: described[name] for name in names}  # in listing order
        (Path(folder) / MANIFEST_FILE).write_text(json.dumps({"files": files, "sha256": listing_digest(files)},
                                                             indent=1))


def weights_digest(ckpt: Path) -> str | None:
    """The checkpoint's manifest digest, the identity of its weights (None for one written before manifests)."""
    return (read_json(Path(ckpt) / MANIFEST_FILE) or {}).get("sha256")


def written_before_manifests(ckpt: Path) -> bool:
    """A checkpoint from before manifests existed (its trainer state does not announce one)."""
    return not (Path(ckpt) / MANIFEST_FILE).exists() and "manifest" not in (read_json(Path(ckpt) / STATE_FILE) or {})


def damage(ckpt: Path) -> str | None:
    """What is wrong with ckpt's files, in a few words (which file; expected and found size or digest), or None
    when every file matches its manifest. A checkpoint written before manifests has nothing to check: None."""
    ckpt = Path(ckpt)
    if written_before_manifests(ckpt):
        return None
    manifest = read_json(ckpt / MANIFEST_FILE)
    if manifest is None:
        return f"{MANIFEST_FILE} is {'unreadable' if (ckpt / MANIFEST_FILE).exists() else 'missing'}"
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("sha256") != listing_digest(files):
        return f"{MANIFEST_FILE} does not match its own digest"
    for name, want in files.items():  # sizes first: a missing or truncated file shows without reading any
        path = ckpt / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != want["size"]:
            return f"{name}: expected {want['size']} bytes, found {path.stat().st_size}"
    for name, want in files.items():
        found = sha256(ckpt / name)
        if found != want["sha256"]:
            return f"{name}: expected sha256 {want['sha256'][:16]}..., found {found[:16]}..."
    return None


def verify(ckpt: Path) -> str | None:
    """damage(ckpt), with a one-line note when ckpt predates manifests and so loads unverified."""
    if written_before_manifests(ckpt):
        log.warning("%s was written before checkpoints had manifests: loading it unverified", ckpt)
    return damage(ckpt)


def check_intact(ckpt: Path) -> None:
    """A one-line UserError naming the damaged file of ckpt, before anything loads it."""
    problem = verify(ckpt)
    if problem:
        raise UserError(f"checkpoint {ckpt} is damaged ({problem}); it cannot be loaded: pick another checkpoint "
                        f"(checkpoints=step_<N>) or retrain that step")


def set_aside(ckpt: Path) -> Path:
    """Move a damaged checkpoint out of the step_<N> names (kept for inspection, never loaded or rotated)."""
    aside = ckpt.with_name(DAMAGED_PREFIX + ckpt.name)
    remove_dir(aside)  # a copy of the same step damaged before
    os.rename(ckpt, aside)
    return aside


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
    """Complete checkpoints (renamed into place), oldest first; damage() tells whether their files are intact."""
    root = Path(ckpt_root)
    found = [p for p in root.glob("step_*") if STEP_DIR.fullmatch(p.name) and p.is_dir()] \
        if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def best_checkpoint(ckpt_root: Path) -> Path:
    name = read_best_marker(ckpt_root)
    if name is None:
        raise UserError(f"no best-checkpoint marker at {best_marker(ckpt_root)}; has this run reached its first "
                        f"evaluation?")
    return Path(ckpt_root) / name


def trainer_state(ckpt: Path) -> dict:
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def adapter_identity(cfg) -> dict:
    """What a checkpoint's weights depend on: resuming or evaluating under other values cannot work."""
    from hira.adapters.params import method_params

    return {"method": cfg.method.name, "model": cfg.model.name, "method_params": method_params(cfg.method),
            "target_modules": list(cfg.method.get("target_modules") or [])}


def check_compatible(ckpt: Path, cfg, wanted: dict | None = None) -> None:
    """A one-line error when ckpt was trained with another method, model, rank or targets than cfg (or other values
    of `wanted`, what it must match: resume checks more, hira/training/resume.py)."""
    saved, wanted = trainer_state(ckpt), adapter_identity(cfg) if wanted is None else wanted
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

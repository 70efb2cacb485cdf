"""Resume: which checkpoint a run continues, whether this command may continue it, and restoring its state.

A run folder with a checkpoint is continued (resume=auto or strict) only under the settings it trained with: the
run's config.yaml is compared with the command's (hira/config/settings.py). A changed result key or seed is
refused in one line before anything is written (train.py's check phase refuses it first, hira/config/check.py
check_run_folder). A changed neutral key (logging, placement, keep_last, ...) is allowed: the "resume" event in
metrics.jsonl and resumes.json record it, and config.yaml is left as the run trained with it.

resume=auto moves a damaged newest checkpoint aside and continues the newest intact one as if the others had never
been written; resume=strict stops there; resume=false refuses a run_dir that already holds checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hira import distributed
from hira.config.settings import resume_changes
from hira.errors import UserError
from hira.files import write_json_atomic
from hira.run_dir import RunDir, best_marker
from hira.training import checkpoint
from hira.training.runlog import truncate_after
from hira.training.state import LoopState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run continues, and the neutral keys this command changed: {key: [old, new]}."""
    checkpoint: Path
    changed: dict = field(default_factory=dict)


def on_rank0(decide):
    """decide() run by rank 0 and its outcome given to every rank; its UserError is raised on every rank, so none
    waits for the others forever."""
    outcome = None
    if distributed.is_main():
        try:
            outcome = decide()
        except UserError as e:
            outcome = e
    outcome = distributed.broadcast_object(outcome)
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


def start_or_resume(cfg, run: RunDir) -> ResumePoint | None:
    """The checkpoint this run continues (None for a fresh start), checked against the config on every rank.

    Nothing is written before the checks pass; then the leftovers of a killed save go, and metrics.jsonl keeps the
    events up to the checkpoint (a fresh start redoes them all)."""
    changed = on_rank0(lambda: changed_settings(cfg, run))
    ckpt = on_rank0(lambda: resume_point(run.checkpoints, cfg.resume))
    if ckpt is not None:
        checkpoint.check_compatible(ckpt, cfg, resume_identity(cfg))
        check_world_size(ckpt, distributed.world_size())
        if distributed.is_main():  # a kill during a save or rotation leaves temp folders; redone events go too
            checkpoint.clean_partial(run.checkpoints)
            truncate_after(run.metrics, checkpoint.trainer_state(ckpt)["step"])
    elif distributed.is_main() and run.metrics.exists():  # all its events are redone from the start
        run.metrics.unlink()
    distributed.barrier()
    return None if ckpt is None else ResumePoint(ckpt, changed)


def changed_settings(cfg, run: RunDir) -> dict:
    """The neutral keys cfg changes against the run's config.yaml ({} for a new run); a changed result key or seed
    is a UserError (hira/config/settings.py resume_changes)."""
    if cfg.resume is False or not run.config.is_file() or not checkpoint.list_checkpoints(run.checkpoints):
        return {}
    return resume_changes(cfg.run_dir, run.load_config(), cfg)


def record_resume(run: RunDir, step: int, ckpt_name: str, changed: dict) -> None:
    """Append this resume to resumes.json when it changed a neutral key (rank 0)."""
    if changed and distributed.is_main():
        resumes = run.read_resumes()
        resumes.append({"step": step, "checkpoint": ckpt_name, "changed": changed})
        write_json_atomic(run.resumes, {"resumes": resumes})


def resume_point(ckpt_root: Path, mode) -> Path | None:
    """The checkpoint to continue from (rank 0 decides): the newest intact one for resume=auto, the newest one if
    intact for resume=strict, none for resume=false (the schema, hira/config/schema.py, lets no other mode through).

    resume=auto moves damaged newer checkpoints aside and puts `best` back as it was when the one it continues was
    saved: the run goes on as if they had never been written. resume=false refuses a run_dir that already holds
    checkpoints rather than silently mixing two runs in it.
    """
    found = checkpoint.list_checkpoints(ckpt_root)
    if mode is False and found:
        raise UserError(f"resume=false but run_dir {Path(ckpt_root).parent} already has checkpoints "
                        f"({found[-1].name} latest); use resume=auto to continue it or pass a new run_dir=")
    intact, moved = None, False
    while found and intact is None:
        newest = found.pop()
        problem = checkpoint.verify(newest)
        if problem is None:
            intact = newest
        elif mode == "strict":
            raise UserError(f"checkpoint {newest} is damaged ({problem}); resume=strict stops here (resume=auto "
                            f"falls back to the newest intact checkpoint)")
        else:
            moved = True
            log.warning("checkpoint %s is damaged (%s): moved to %s; falling back to %s", newest, problem,
                        checkpoint.set_aside(newest).name, found[-1].name if found else "a fresh start")
    if moved:
        restore_best_marker(Path(ckpt_root), intact)
    return intact


def restore_best_marker(ckpt_root: Path, ckpt: Path | None) -> None:
    """`best` as it was when ckpt was saved (none before any checkpoint, or if that one has since been rotated)."""
    best_step = checkpoint.trainer_state(ckpt)["best_step"] if ckpt is not None else None
    if best_step is not None and (ckpt_root / checkpoint.step_name(best_step)).is_dir():
        checkpoint.mark_best(ckpt_root, best_step)
    else:
        best_marker(ckpt_root).unlink(missing_ok=True)


def check_world_size(ckpt: Path, world: int) -> None:
    saved = checkpoint.trainer_state(ckpt).get("world_size", world)
    if saved != world:
        raise UserError(f"{ckpt} was written by {saved} ranks but this launch has {world}: the DeepSpeed optimizer "
                        f"state is saved per rank, so exact resume needs {saved} ranks (or start a new run_dir)")


def resume_identity(cfg) -> dict:
    """What a checkpoint's weights depend on, and what exact resume also needs unchanged: the data order and how
    it is cut into steps (trainer_state.json holds it; config.yaml's full comparison comes first)."""
    return {**checkpoint.adapter_identity(cfg), "data_seed": cfg.data_seed,
            "global_batch_size": cfg.train.global_batch_size}


def load_state(engine, ckpt: Path) -> dict:
    """Load weights, optimizer, scheduler and this rank's RNG state from ckpt.

    Returns the trainer state updated with this rank's own saved values (rank_state of save_checkpoint).
    """
    load_path, _ = engine.load_checkpoint(str(ckpt), tag="engine", load_module_strict=False)
    if load_path is None:
        raise UserError(f"{ckpt}: the DeepSpeed engine state could not be loaded; start a new run_dir")
    saved = torch.load(Path(ckpt) / f"rng_rank{distributed.rank()}.pt", weights_only=False)
    checkpoint.set_rng_state(saved)
    return {**checkpoint.trainer_state(ckpt), **{k: v for k, v in saved.items() if k not in ("python", "numpy", "torch")}}


def restore(engine, ckpt: Path) -> LoopState:
    """Continue from ckpt: weights, optimizer, RNG and the loop's state as it was saved."""
    return LoopState.from_state(load_state(engine, ckpt), ckpt.name)


def build_trainer_state(cfg, state: LoopState, schedule, val_loss: float) -> dict:
    """What a checkpoint's trainer_state.json holds (save_checkpoint writes it, checkpoint.trainer_state reads it
    back): the loop's state, this checkpoint's validation loss and what resuming checks. schedule: the loop's
    Schedule (its steps_per_epoch)."""
    epoch, step_in_epoch = divmod(state.step, schedule.steps_per_epoch)  # where the next step's batch comes from
    shared = state.to_state()  # step, best_step, best_val_loss, then the cost totals
    # each key once, in the order checkpoints have always had
    return {"step": shared.pop("step"), "epoch": epoch, "step_in_epoch": step_in_epoch, "val_loss": val_loss,
            "best_step": shared.pop("best_step"), "best_val_loss": shared.pop("best_val_loss"),
            "world_size": distributed.world_size(), "seed": cfg.seed, **shared, **resume_identity(cfg)}

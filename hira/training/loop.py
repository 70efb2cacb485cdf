"""The training loop: one code path through the DeepSpeed engine, from one CPU process to ZeRO-3 on many nodes."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from hira.adapters import on_step, param_groups
from hira.config.check import check_train_config
from hira.data.tasks import load_run_inputs
from hira.data.tokenize import tokenized_splits
from hira.errors import UserError
from hira.models.loading import load_adapted_model
from hira import distributed
from hira.run_dir import RunDir
from hira.training import batches, checkpoint, engine_config, guard
from hira.training.cost import RunCost
from hira.training.runlog import open_metrics, truncate_after

log = logging.getLogger(__name__)


@dataclass
class Schedule:
    steps_per_epoch: int
    total_steps: int
    accumulation: int

    @classmethod
    def from_config(cls, cfg, n_train: int, world: int) -> "Schedule":
        per_epoch = batches.steps_per_epoch(n_train, cfg.train.global_batch_size)
        if per_epoch == 0:
            raise UserError(f"{n_train} training examples do not fill one global batch of "
                            f"train.global_batch_size={cfg.train.global_batch_size}")
        total = per_epoch * cfg.train.epochs
        if cfg.train.max_steps > 0:
            total = min(total, cfg.train.max_steps)
        accumulation = engine_config.accumulation_steps(cfg.train.global_batch_size, cfg.hardware.micro_batch_size,
                                                        world)
        return cls(per_epoch, total, accumulation)


@dataclass
class BestSoFar:
    step: int = -1
    val_loss: float = math.inf


@dataclass
class LoopState:
    """What the loop carries from step to step, and a checkpoint carries across a restart, as one unit."""

    step: int = 0                                  # steps done; the loop goes on with step + 1
    best: BestSoFar = field(default_factory=BestSoFar)
    running: list = field(default_factory=list)    # this rank's losses since the last train log
    last_good: str | None = None                   # the newest checkpoint, named when a non-finite value stops
    cost: RunCost = field(default_factory=RunCost)

    def record_validation(self, step: int, val_loss: float) -> None:
        if val_loss < self.best.val_loss:
            self.best = BestSoFar(step, val_loss)

    def to_state(self) -> dict:
        """The fields every rank shares, under the keys trainer_state.json has always used."""
        return {"step": self.step, "best_step": self.best.step, "best_val_loss": self.best.val_loss,
                **self.cost.totals()}

    def rank_state(self) -> dict:
        """This rank's own fields, saved beside its RNG state: the unlogged losses differ between ranks."""
        return {"running": self.running}

    @classmethod
    def from_state(cls, state: dict, checkpoint_name: str) -> "LoopState":
        """Continue from a checkpoint's trainer state, this rank's own fields merged in (checkpoint.restore)."""
        return cls(state["step"], BestSoFar(state["best_step"], state["best_val_loss"]), state.get("running", []),
                   checkpoint_name, RunCost.resumed(state))


def build_engine(cfg, model, schedule: Schedule):
    """The DeepSpeed engine and its guarded optimizer (which refuses non-finite steps)."""
    import deepspeed

    if cfg.train.gradient_checkpointing:  # recompute activations in backward; non-reentrant works with frozen inputs
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # each trainable tensor at train.lr times its method's lr_scale (LoRA+'s B matrices: lr_ratio times)
    optimizer = guard.GuardedAdamW(param_groups(model, cfg.train.lr), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                   betas=tuple(cfg.train.adam_betas))
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.train.warmup_steps, schedule.total_steps)
    ds_config = engine_config.deepspeed_config(cfg.hardware.ds_config, cfg.hardware.micro_batch_size,
                                               schedule.accumulation, cfg.train.grad_clip)
    if ds_config["zero_optimization"].get("stage", 0) == 3:
        engine_config.register_base_weights_for_zero3(model)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine, optimizer


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def validation_loss(engine, encoded_val: list, collate, batch_size: int) -> float:
    """Token-weighted mean loss over the validation examples (each rank scores its share, then all-reduce)."""
    engine.eval()
    rank, world = distributed.rank(), distributed.world_size()
    totals = torch.zeros(2, dtype=torch.float64)
    shards = [encoded_val[i:i + batch_size] for i in range(0, len(encoded_val), batch_size)]
    for shard in shards[rank::world]:
        batch = to_device(collate(shard), engine.device)
        n_tokens = (batch["labels"][:, 1:] != -100).sum().item()
        loss = engine(**batch).loss.item()  # every rank runs every forward: ZeRO-3 gathers weights collectively
        if n_tokens:  # a batch whose responses were all truncated away has loss 0/0
            totals += torch.tensor([loss * n_tokens, n_tokens], dtype=torch.float64)
    if world > 1:
        totals = totals.to(engine.device)
        torch.distributed.all_reduce(totals)
    engine.train()
    return (totals[0] / totals[1]).item()


def full_grads_norm(engine) -> float | None:
    """‖g‖₂ over the trainable gradients when each rank holds them whole and reduced (ZeRO stage 0 at the
    accumulation boundary, before DeepSpeed clips them); None when ZeRO has partitioned them away."""
    grads = [p.grad for p in engine.module.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return None
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])).item()


def pre_clip_grad_norm(engine, own_norm: float | None) -> float | None:
    """The step's global gradient norm before clipping. ZeRO's optimizers compute it across the partitions
    (an all-reduce of partial norms) and the engine reports it; for a client optimizer on stage 0 the engine
    reports None, and the norm taken before engine.step() stands in."""
    reported = engine.get_global_grad_norm()
    return float(reported) if reported is not None else own_norm


def train_step(engine, optimizer, cfg, schedule: Schedule, step: int, train_set: list, collate,
               grouping: tuple) -> tuple[list[float], float | None]:
    """One optimizer step over this rank's micro batches of global batch `step`; returns their losses and the
    step's pre-clip gradient norm.

    `grouping` is epoch_order's (lengths or None, global batch, mega batch) for length-grouped batching."""
    epoch, step_in_epoch = divmod(step - 1, schedule.steps_per_epoch)
    order = batches.epoch_order(len(train_set), cfg.data_seed, epoch, *grouping)
    optimizer.begin_step()
    losses, own_norm = [], None
    for ids in batches.micro_batches_for_rank(order, step_in_epoch, cfg.train.global_batch_size,
                                              cfg.hardware.micro_batch_size, distributed.rank(),
                                              distributed.world_size()):
        loss = engine(**to_device(collate([train_set[i] for i in ids]), engine.device)).loss
        optimizer.note_loss(loss)
        engine.backward(loss)
        if engine.is_gradient_accumulation_boundary():  # gradients are complete; engine.step() clips them
            own_norm = full_grads_norm(engine)
        engine.step()
        losses.append(loss.item())
    return losses, pre_clip_grad_norm(engine, own_norm)


def batch_grouping(cfg, train_set: list) -> tuple[tuple, float]:
    """epoch_order's grouping arguments (data.group_by_length) and the padding share they give in epoch 0."""
    lengths = tuple(len(e["input_ids"]) for e in train_set)
    grouping = (lengths if cfg.data.group_by_length else None, cfg.train.global_batch_size, cfg.data.mega_batch)
    padding = batches.padding_fraction(batches.epoch_order(len(train_set), cfg.data_seed, 0, *grouping), lengths,
                                       cfg.train.global_batch_size, cfg.hardware.micro_batch_size)
    log.info("padding: %.1f%% of training tokens (data.group_by_length=%s)", 100 * padding, cfg.data.group_by_length)
    return grouping, padding


def resume_point(cfg, run: RunDir) -> Path | None:
    """checkpoint.resume_point, decided by rank 0 (it may move damaged checkpoints aside) and given to every rank;
    its UserError is raised on every rank, so none waits for the others forever."""
    outcome = None
    if distributed.is_main():
        try:
            outcome = checkpoint.resume_point(run.checkpoints, cfg.resume)
        except UserError as e:
            outcome = e
    outcome = distributed.broadcast_object(outcome)
    if isinstance(outcome, UserError):
        raise outcome
    return outcome


def start_or_resume(cfg, run: RunDir):
    """The checkpoint this run continues (None for a fresh start), checked against the config on every rank."""
    ckpt = resume_point(cfg, run)
    if ckpt is not None:
        checkpoint.check_compatible(ckpt, cfg, resuming=True)
        checkpoint.check_world_size(ckpt, distributed.world_size())
        if distributed.is_main():  # a kill during a save or rotation leaves temp folders; redone events go too
            checkpoint.clean_partial(run.checkpoints)
            truncate_after(run.metrics, checkpoint.trainer_state(ckpt)["step"])
    elif distributed.is_main() and run.metrics.exists():  # all its events are redone from the start
        run.metrics.unlink()
    distributed.barrier()
    return ckpt


def restore(engine, ckpt: Path) -> LoopState:
    """Continue from ckpt: weights, optimizer, RNG and the loop's state as it was saved."""
    return LoopState.from_state(checkpoint.restore(engine, ckpt), ckpt.name)


def trainer_state(cfg, state: LoopState, schedule: Schedule, val_loss: float) -> dict:
    """trainer_state.json: the loop's state, this checkpoint's validation loss and what resuming checks."""
    epoch, step_in_epoch = divmod(state.step, schedule.steps_per_epoch)  # where the next step's batch comes from
    shared = state.to_state()  # step, best_step, best_val_loss, then the cost totals
    # each key once, in the order checkpoints have always had
    return {"step": shared.pop("step"), "epoch": epoch, "step_in_epoch": step_in_epoch, "val_loss": val_loss,
            "best_step": shared.pop("best_step"), "best_val_loss": shared.pop("best_val_loss"),
            "world_size": distributed.world_size(), "seed": cfg.seed, **shared, **checkpoint.resume_identity(cfg)}


def save(cfg, engine, ckpt_root: Path, schedule: Schedule, state: LoopState, val_loss: float,
         config_yaml: str) -> None:
    """Checkpoint step_<N> (N = state.step) with all resume needs, move `best`, rotate; state.last_good names it."""
    step = state.step
    checkpoint.save_checkpoint(engine, ckpt_root, step, trainer_state(cfg, state, schedule, val_loss), config_yaml,
                               rank_state=state.rank_state())
    if distributed.is_main():
        if state.best.step == step:
            checkpoint.mark_best(ckpt_root, step)
        checkpoint.rotate(ckpt_root, cfg.train.keep_last)
    state.last_good = checkpoint.step_name(step)


def train(cfg) -> Path:
    """Fine-tune cfg.method on cfg.task; returns the run directory (checkpoints, metrics.jsonl, config.yaml).

    With resume=auto an existing run_dir is continued from its latest checkpoint exactly as if never stopped.
    """
    check_train_config(cfg)  # every key and input path, before anything is read or written
    data = load_run_inputs(cfg)  # training, validation and test files: a broken one fails before the model loads
    distributed.init_distributed(cfg.hardware.device)
    if cfg.hardware.torch_threads:
        torch.set_num_threads(cfg.hardware.torch_threads)
    run_dir = Path(distributed.broadcast_object(cfg.run_dir))  # ranks resolve ${now:} a moment apart
    run = RunDir(run_dir)
    ckpt_root = run.checkpoints
    main = distributed.is_main()
    cfg.run_dir = str(run_dir)
    resume_from = start_or_resume(cfg, run)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        run.config.write_text(config_yaml)
    metrics = open_metrics(cfg, run_dir, enabled=main)  # a missing wandb fails here, before any loading

    model, tokenizer = load_adapted_model(cfg, cfg.hardware.device)
    train_set, val_set, n_trunc = tokenized_splits(tokenizer, data, cfg.task)  # cached: a rerun skips tokenizing
    schedule = Schedule.from_config(cfg, len(train_set), distributed.world_size())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("%s on %s/%s: %d train (%d truncated at %d tokens), %d val; %d steps; trainable %d (%.4f%%)",
             cfg.method.name, cfg.model.name, cfg.task.name, len(train_set), n_trunc, cfg.task.cutoff_len,
             len(val_set), schedule.total_steps, n_trainable, 100 * n_trainable / n_total)

    grouping, padding = batch_grouping(cfg, train_set)
    engine, optimizer = build_engine(cfg, model, schedule)
    collate = batches.make_collator(tokenizer)
    if resume_from is None:
        state = LoopState()
        metrics.write("start", trainable_params=n_trainable, total_params=n_total, total_steps=schedule.total_steps,
                      train_examples=len(train_set), val_examples=len(val_set), truncated=n_trunc,
                      seed=cfg.seed, data_seed=cfg.data_seed, padding_fraction=round(padding, 4))
    else:
        state = restore(engine, resume_from)
        metrics.write("resume", step=state.step, checkpoint=state.last_good, total_steps=schedule.total_steps)
        log.info("resuming %s from %s", run_dir, state.last_good)
    engine.train()
    bar = tqdm(total=schedule.total_steps, initial=state.step, desc="train", disable=not main, dynamic_ncols=True)
    for step in range(state.step + 1, schedule.total_steps + 1):
        with state.cost.clocked():
            losses, grad_norm = train_step(engine, optimizer, cfg, schedule, step, train_set, collate, grouping)
        if optimizer.skipped:  # the guard kept this step's update out of the weights
            metrics.write("nonfinite", step=step, loss=_mean_or_none(losses), action=cfg.train.on_nonfinite)
            if cfg.train.on_nonfinite == "stop":
                bar.close()
                raise guard.nonfinite_error(step, "loss or gradient norm", state.last_good, run_dir)
        else:
            state.running.extend(losses)
        on_step(engine.module, step)  # per-step adapter hooks (LoRA-Dash's phase switch), before any checkpoint
        state.step = step
        bar.update(1)
        if step % cfg.train.log_steps == 0 or step == schedule.total_steps:
            running = state.running
            train_loss = distributed.mean_across_ranks(sum(running), len(running)) if running else None
            running.clear()
            bar.set_postfix(loss=f"{train_loss:.4f}" if train_loss is not None else "skipped")
            metrics.write("train", step=step, epoch=round(step / schedule.steps_per_epoch, 4), loss=train_loss,
                          lr=engine.get_lr()[0], grad_norm=grad_norm)
        if step % cfg.train.eval_steps == 0 or step == schedule.total_steps:
            with state.cost.clocked():
                val_loss = validation_loss(engine, val_set, collate, cfg.train.eval_batch_size)
            if not math.isfinite(val_loss):  # the weights themselves broke: no skipping past that, keep the last good
                metrics.write("nonfinite", step=step, val_loss=val_loss, action="stop")
                bar.close()
                raise guard.nonfinite_error(step, "validation loss", state.last_good, run_dir)
            state.record_validation(step, val_loss)
            save(cfg, engine, ckpt_root, schedule, state, val_loss, config_yaml)
            best = state.best
            metrics.write("eval", step=step, val_loss=val_loss, best_step=best.step, best_val_loss=best.val_loss)
            if main:
                bar.write(f"step {step}: val_loss {val_loss:.4f} (best {best.val_loss:.4f} at step {best.step})")
    bar.close()
    # train_time_s / peak_memory_gb: the whole run's (summed / max over every process that trained it)
    metrics.write("end", step=schedule.total_steps, best_step=state.best.step, **state.cost.end_fields())
    metrics.close()
    return run_dir


def _mean_or_none(values: list[float]):
    return sum(values) / len(values) if values else None

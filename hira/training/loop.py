"""The training loop: one code path through the DeepSpeed engine, from one CPU process to ZeRO-3 on many nodes."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from hira.adapters import on_step, param_groups
from hira.config.check import check_train_config
from hira.config.handed_on import check_unless_handed_on
from hira.data.tasks import load_run_inputs
from hira.data.tokenize import tokenized_splits
from hira.errors import UserError
from hira.models.loading import load_adapted_model
from hira import distributed
from hira.run_dir import RunDir
from hira.training import batches, checkpoint, engine_config, guard
from hira.training.lr_schedule import linear_warmup_decay
from hira.training.resume import ResumePoint, build_trainer_state, record_resume, restore, start_or_resume
from hira.training.runlog import open_metrics
from hira.training.state import LoopState

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


def build_engine(cfg, model, schedule: Schedule):
    """The DeepSpeed engine and its guarded optimizer (which refuses non-finite steps)."""
    import deepspeed

    if cfg.train.gradient_checkpointing:  # recompute activations in backward; non-reentrant works with frozen inputs
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # each trainable tensor at train.lr times its method's lr_scale (LoRA+'s B matrices: lr_ratio times)
    optimizer = guard.GuardedAdamW(param_groups(model, cfg.train.lr), lr=cfg.train.lr,
                                   weight_decay=cfg.train.weight_decay, betas=tuple(cfg.train.adam_betas))
    scheduler = linear_warmup_decay(optimizer, cfg.train.warmup_steps, schedule.total_steps)
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


@dataclass
class TrainBatches:
    """Which examples each optimizer step trains on: every epoch's order (shuffled by data_seed, grouped by length
    with data.group_by_length) cut into global batches, and this rank's micro batches of each."""

    examples: list
    collate: Callable
    steps_per_epoch: int
    data_seed: int
    global_batch: int
    micro_batch: int
    group_by_length: bool
    mega_batch: int

    @classmethod
    def from_config(cls, cfg, examples: list, collate, schedule: Schedule) -> "TrainBatches":
        return cls(examples, collate, schedule.steps_per_epoch, cfg.data_seed, cfg.train.global_batch_size,
                   cfg.hardware.micro_batch_size, cfg.data.group_by_length, cfg.data.mega_batch)

    @functools.cached_property
    def lengths(self) -> tuple[int, ...]:
        return tuple(len(e["input_ids"]) for e in self.examples)

    def epoch_order(self, epoch: int) -> list[int]:
        return batches.epoch_order(len(self.examples), self.data_seed, epoch,
                                   self.lengths if self.group_by_length else None, self.global_batch, self.mega_batch)

    def padding_fraction(self) -> float:
        """The share of pad tokens in epoch 0's micro batches."""
        return batches.padding_fraction(self.epoch_order(0), self.lengths, self.global_batch, self.micro_batch)

    def tokens_for_step(self, step: int) -> int:
        """The non-pad input tokens that global batch `step` trains, over every rank (the collator only pads)."""
        epoch, step_in_epoch = divmod(step - 1, self.steps_per_epoch)
        ids = self.epoch_order(epoch)[step_in_epoch * self.global_batch:(step_in_epoch + 1) * self.global_batch]
        return sum(self.lengths[i] for i in ids)

    def for_step(self, step: int, device) -> Iterator[dict]:
        """This rank's micro batches of global batch `step` (1-based), collated onto `device`."""
        epoch, step_in_epoch = divmod(step - 1, self.steps_per_epoch)
        for ids in batches.micro_batches_for_rank(self.epoch_order(epoch), step_in_epoch, self.global_batch,
                                                  self.micro_batch, distributed.rank(), distributed.world_size()):
            yield to_device(self.collate([self.examples[i] for i in ids]), device)


def train_step(engine, optimizer, micro_batches: Iterable[dict]) -> tuple[list[float], float | None]:
    """One optimizer step over this rank's micro batches; returns their losses and the step's pre-clip gradient
    norm."""
    optimizer.begin_step()
    losses, own_norm = [], None
    for batch in micro_batches:
        loss = engine(**batch).loss
        optimizer.note_loss(loss)
        engine.backward(loss)
        if engine.is_gradient_accumulation_boundary():  # gradients are complete; engine.step() clips them
            own_norm = full_grads_norm(engine)
        engine.step()
        losses.append(loss.item())
    return losses, pre_clip_grad_norm(engine, own_norm)


def save(cfg, engine, ckpt_root: Path, schedule: Schedule, state: LoopState, val_loss: float,
         config_yaml: str) -> None:
    """Checkpoint step_<N> (N = state.step) with all resume needs, move `best`, rotate; state.last_good names it."""
    step = state.step
    checkpoint.save_checkpoint(engine, ckpt_root, step, build_trainer_state(cfg, state, schedule, val_loss),
                               config_yaml, rank_state=state.rank_state())
    if distributed.is_main():
        if state.best.step == step:
            checkpoint.mark_best(ckpt_root, step)
        checkpoint.rotate(ckpt_root, cfg.train.keep_last)
    state.last_good = checkpoint.step_name(step)


def train(cfg) -> Path:
    """Fine-tune cfg.method on cfg.task; returns the run directory (checkpoints, metrics.jsonl, config.yaml).

    With resume=auto an existing run_dir is continued from its latest checkpoint exactly as if never stopped.
    """
    # every key and input path, before anything is read or written (train.py's check phase did, for its config)
    check_unless_handed_on(cfg, "train", check_train_config)
    data = load_run_inputs(cfg)  # training, validation and test files: a broken one fails before the model loads
    run = start_processes(cfg)
    resume_from = start_or_resume(cfg, run)
    config_yaml, metrics = open_run_records(cfg, run, resume_from is not None)
    loop = build_loop(cfg, data, run, config_yaml, metrics)
    loop.start(resume_from)
    loop.run()
    return run.path


def start_processes(cfg) -> RunDir:
    """Join the distributed job (one process or many) and agree on the run directory."""
    distributed.init_distributed(cfg.hardware.device)
    if cfg.hardware.torch_threads:
        torch.set_num_threads(cfg.hardware.torch_threads)
    run_dir = Path(distributed.broadcast_object(cfg.run_dir))  # ranks resolve ${now:} a moment apart
    cfg.run_dir = str(run_dir)
    return RunDir(run_dir)


def open_run_records(cfg, run: RunDir, resuming: bool):
    """config.yaml written (rank 0) and metrics.jsonl opened; (the config's yaml, the metrics writer). A resumed
    run's config.yaml stays as it was: the settings the run trained with (a changed neutral key is in
    resumes.json), and each new checkpoint gets the same copy."""
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if distributed.is_main():
        if resuming and run.config.is_file():
            config_yaml = run.config.read_text()
        else:
            run.checkpoints.mkdir(parents=True, exist_ok=True)
            run.config.write_text(config_yaml)
    return config_yaml, open_metrics(cfg, run.path, enabled=distributed.is_main())  # a missing wandb fails here


def build_loop(cfg, data, run: RunDir, config_yaml: str, metrics) -> "Loop":
    """The model with its method, the tokenized splits, the schedule and the DeepSpeed engine."""
    model, tokenizer = load_adapted_model(cfg, cfg.hardware.device)
    train_set, val_set, n_trunc = tokenized_splits(tokenizer, data, cfg.task)  # cached: a rerun skips tokenizing
    schedule = Schedule.from_config(cfg, len(train_set), distributed.world_size())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("%s on %s/%s: %d train (%d truncated at %d tokens), %d val; %d steps; trainable %d (%.4f%%)",
             cfg.method.name, cfg.model.name, cfg.task.name, len(train_set), n_trunc, cfg.task.cutoff_len,
             len(val_set), schedule.total_steps, n_trainable, 100 * n_trainable / n_total)
    collate = batches.make_collator(tokenizer)
    train_batches = TrainBatches.from_config(cfg, train_set, collate, schedule)
    padding = train_batches.padding_fraction()
    log.info("padding: %.1f%% of training tokens (data.group_by_length=%s)", 100 * padding, cfg.data.group_by_length)
    engine, optimizer = build_engine(cfg, model, schedule)
    start_fields = dict(trainable_params=n_trainable, total_params=n_total, total_steps=schedule.total_steps,
                        train_examples=len(train_set), val_examples=len(val_set), truncated=n_trunc, seed=cfg.seed,
                        data_seed=cfg.data_seed, padding_fraction=round(padding, 4))
    return Loop(cfg, engine, optimizer, schedule, train_batches, val_set, run, config_yaml, metrics, start_fields)


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@dataclass
class Loop:
    """The training steps and what they share: the engine and its guarded optimizer, the batches, the validation
    set, the run's records and the loop's state."""

    cfg: Any
    engine: Any
    optimizer: guard.GuardedAdamW
    schedule: Schedule
    batches: TrainBatches
    val_set: list
    run_dir: RunDir
    config_yaml: str
    metrics: Any
    start_fields: dict  # the "start" event's fields
    state: LoopState = field(default_factory=LoopState)
    grad_norm: float | None = None  # the last step's, logged with the next train event
    bar: Any = None  # the progress bar, while run() runs

    def start(self, resume_from: ResumePoint | None) -> None:
        """A fresh state, or the one restored from resume_from, and the event that says which (with the neutral
        keys this command changed, also appended to resumes.json)."""
        if resume_from is None:
            self.metrics.write("start", **self.start_fields)
        else:
            self.state = restore(self.engine, resume_from.checkpoint)
            changed = resume_from.changed
            self.metrics.write("resume", step=self.state.step, checkpoint=self.state.last_good,
                               total_steps=self.schedule.total_steps, changed=changed)
            record_resume(self.run_dir, self.state.step, self.state.last_good, changed)
            log.info("resuming %s from %s%s", self.run_dir.path, self.state.last_good,
                     f" (changed: {', '.join(changed)})" if changed else "")

    def run(self) -> None:
        total = self.schedule.total_steps
        self.engine.train()
        self.bar = tqdm(total=total, initial=self.state.step, desc="train", disable=not distributed.is_main(),
                        dynamic_ncols=True)
        try:
            for step in range(self.state.step + 1, total + 1):
                self.step(step)
                if due(step, self.cfg.train.log_steps, total):
                    self.log_train(step)
                if due(step, self.cfg.train.eval_steps, total):
                    self.validate_and_save(step)
        finally:
            self.bar.close()
        # train_time_s, train_tokens / peak_memory_gb: the whole run's (summed / max over every process that trained it)
        self.metrics.write("end", step=total, best_step=self.state.best.step, **self.state.cost.end_fields())
        self.metrics.close()

    def step(self, step: int) -> None:
        """One optimizer step; a non-finite one is skipped or stops the run (train.on_nonfinite)."""
        state = self.state
        with state.cost.clocked():
            losses, self.grad_norm = train_step(self.engine, self.optimizer,
                                                self.batches.for_step(step, self.engine.device))
        state.cost.count_tokens(self.batches.tokens_for_step(step))
        if self.optimizer.skipped:  # the guard kept this step's update out of the weights
            action = self.cfg.train.on_nonfinite
            self.metrics.write("nonfinite", step=step, loss=_mean_or_none(losses), action=action)
            if action == "stop":
                raise guard.nonfinite_error(step, "loss or gradient norm", state.last_good, self.run_dir.path)
        else:
            state.running.extend(losses)
        on_step(self.engine.module, step)  # per-step adapter hooks (LoRA-Dash's phase switch), before any checkpoint
        state.step = step
        self.bar.update(1)

    def log_train(self, step: int) -> None:
        """The mean training loss across ranks since the last log, the learning rate and the gradient norm."""
        running = self.state.running
        train_loss = distributed.mean_across_ranks(sum(running), len(running)) if running else None
        running.clear()
        self.bar.set_postfix(loss=f"{train_loss:.4f}" if train_loss is not None else "skipped")
        self.metrics.write("train", step=step, epoch=round(step / self.schedule.steps_per_epoch, 4), loss=train_loss,
                           lr=self.engine.get_lr()[0], grad_norm=self.grad_norm)

    def validate_and_save(self, step: int) -> None:
        """The validation loss, then a checkpoint; a non-finite loss stops the run at the last good checkpoint."""
        state = self.state
        with state.cost.clocked():
            val_loss = validation_loss(self.engine, self.val_set, self.batches.collate, self.cfg.train.eval_batch_size)
        if not math.isfinite(val_loss):  # the weights themselves broke: no skipping past that, keep the last good
            self.metrics.write("nonfinite", step=step, val_loss=val_loss, action="stop")
            raise guard.nonfinite_error(step, "validation loss", state.last_good, self.run_dir.path)
        state.record_validation(step, val_loss)
        save(self.cfg, self.engine, self.run_dir.checkpoints, self.schedule, state, val_loss, self.config_yaml)
        best = state.best
        self.metrics.write("eval", step=step, val_loss=val_loss, best_step=best.step, best_val_loss=best.val_loss)
        if distributed.is_main():
            self.bar.write(f"step {step}: val_loss {val_loss:.4f} (best {best.val_loss:.4f} at step {best.step})")


def _mean_or_none(values: list[float]):
    return sum(values) / len(values) if values else None

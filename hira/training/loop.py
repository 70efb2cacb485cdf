"""The training loop: one code path through the DeepSpeed engine, from one CPU process to ZeRO-3 on many nodes."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from hira.data.tasks import load_task
from hira.data.cache import encode_records_cached
from hira.errors import UserError
from hira.models.loading import check_model_path, load_adapted_model
from hira.training import batches, checkpoint, distributed
from hira.training.runlog import MetricsLog

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
        accumulation = distributed.accumulation_steps(cfg.train.global_batch_size, cfg.hardware.micro_batch_size, world)
        return cls(per_epoch, total, accumulation)


@dataclass
class BestSoFar:
    step: int = -1
    val_loss: float = math.inf


def build_engine(cfg, model, schedule: Schedule):
    import deepspeed

    if cfg.train.gradient_checkpointing:  # recompute activations in backward; non-reentrant works with frozen inputs
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                                  betas=tuple(cfg.train.adam_betas))
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.train.warmup_steps, schedule.total_steps)
    ds_config = distributed.deepspeed_config(cfg.hardware.ds_config, cfg.hardware.micro_batch_size,
                                             schedule.accumulation, cfg.train.grad_clip)
    if ds_config["zero_optimization"].get("stage", 0) == 3:
        distributed.register_base_weights_for_zero3(model)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine


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
        n_tokens = (batch["labels"][:, 1:] != -100).sum()
        totals += torch.tensor([engine(**batch).loss.item() * n_tokens.item(), n_tokens.item()], dtype=torch.float64)
    if world > 1:
        totals = totals.to(engine.device)
        torch.distributed.all_reduce(totals)
    engine.train()
    return (totals[0] / totals[1]).item()


def train(cfg) -> Path:
    """Fine-tune cfg.method on cfg.task; returns the run directory (checkpoints, metrics.jsonl, config.yaml)."""
    check_model_path(cfg.model)  # a missing 8B folder fails here, before any data work
    distributed.init_distributed(cfg.hardware.device)
    if cfg.hardware.torch_threads:
        torch.set_num_threads(cfg.hardware.torch_threads)
    run_dir = Path(distributed.broadcast_object(cfg.run_dir))  # ranks resolve ${now:} a moment apart
    ckpt_root = run_dir / "checkpoints"
    main = distributed.is_main()
    cfg.run_dir = str(run_dir)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if main:
        ckpt_root.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_yaml)

    model, tokenizer = load_adapted_model(cfg, cfg.hardware.device)
    data = load_task(cfg.task, with_tests=False)
    cache = cfg.data.tokenized_cache
    train_set, n_trunc = encode_records_cached(tokenizer, data.train, cfg.task.cutoff_len, cfg.task.loss_on, cache)
    val_set, _ = encode_records_cached(tokenizer, data.val, cfg.task.cutoff_len, cfg.task.loss_on, cache)
    schedule = Schedule.from_config(cfg, len(train_set), distributed.world_size())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_total = sum(p.numel() for p in model.parameters())
    log.info("%s on %s/%s: %d train (%d truncated at %d tokens), %d val; %d steps; trainable %d (%.4f%%)",
             cfg.method.name, cfg.model.name, cfg.task.name, len(train_set), n_trunc, cfg.task.cutoff_len,
             len(val_set), schedule.total_steps, n_trainable, 100 * n_trainable / n_total)

    lengths = tuple(len(e["input_ids"]) for e in train_set)
    grouping = (lengths if cfg.data.group_by_length else None, cfg.train.global_batch_size, cfg.data.mega_batch)
    padding = batches.padding_fraction(batches.epoch_order(len(train_set), cfg.data_seed, 0, *grouping), lengths,
                                       cfg.train.global_batch_size, cfg.hardware.micro_batch_size)
    log.info("padding: %.1f%% of training tokens (data.group_by_length=%s)", 100 * padding, cfg.data.group_by_length)
    engine = build_engine(cfg, model, schedule)
    collate = batches.make_collator(tokenizer)
    metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=main)
    metrics.write("start", trainable_params=n_trainable, total_params=n_total, total_steps=schedule.total_steps,
                  train_examples=len(train_set), val_examples=len(val_set), truncated=n_trunc,
                  padding_fraction=round(padding, 4))
    best = BestSoFar()
    engine.train()
    bar = tqdm(total=schedule.total_steps, desc="train", disable=not main, dynamic_ncols=True)
    start, running = time.time(), []
    for step in range(1, schedule.total_steps + 1):
        epoch, step_in_epoch = divmod(step - 1, schedule.steps_per_epoch)
        order = batches.epoch_order(len(train_set), cfg.data_seed, epoch, *grouping)
        for ids in batches.micro_batches_for_rank(order, step_in_epoch, cfg.train.global_batch_size,
                                                  cfg.hardware.micro_batch_size, distributed.rank(),
                                                  distributed.world_size()):
            loss = engine(**to_device(collate([train_set[i] for i in ids]), engine.device)).loss
            engine.backward(loss)
            engine.step()
            running.append(loss.item())
        bar.update(1)
        if step % cfg.train.log_steps == 0 or step == schedule.total_steps:
            train_loss = distributed.mean_across_ranks(sum(running), len(running))
            running.clear()
            bar.set_postfix(loss=f"{train_loss:.4f}")
            metrics.write("train", step=step, epoch=round(step / schedule.steps_per_epoch, 4), loss=train_loss,
                          lr=engine.get_lr()[0], grad_norm=_float(engine.get_global_grad_norm()))
        if step % cfg.train.eval_steps == 0 or step == schedule.total_steps:
            val_loss = validation_loss(engine, val_set, collate, cfg.train.eval_batch_size)
            if val_loss < best.val_loss:
                best = BestSoFar(step, val_loss)
            state = {"step": step, "epoch": epoch, "val_loss": val_loss, "best_step": best.step,
                     "best_val_loss": best.val_loss, "method": cfg.method.name, "model": cfg.model.name}
            checkpoint.save_checkpoint(engine, ckpt_root, step, state, config_yaml)
            if main and best.step == step:
                checkpoint.mark_best(ckpt_root, step)
            metrics.write("eval", step=step, val_loss=val_loss, best_step=best.step, best_val_loss=best.val_loss)
            if main:
                bar.write(f"step {step}: val_loss {val_loss:.4f} (best {best.val_loss:.4f} at step {best.step})")
    bar.close()
    metrics.write("end", step=schedule.total_steps, train_time_s=round(time.time() - start, 2), best_step=best.step,
                  peak_memory_gb=_peak_memory_gb())
    return run_dir


def _float(x):
    return None if x is None else float(x)


def _peak_memory_gb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux

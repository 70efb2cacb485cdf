"""The paper's learning-rate schedule: linear warmup from 0 over `warmup` steps, then linear decay to 0 at the last
step. It is transformers' get_linear_schedule_with_warmup, step for step (tests/test_lr_schedule.py holds it to
that); it is written here because importing transformers.optimization imports peft, about 2.7 s at every start of
train.py on a CPU."""

from __future__ import annotations

import functools

from torch.optim.lr_scheduler import LambdaLR


def linear_factor(step: int, warmup: int, total: int) -> float:
    """The learning rate at `step` as a fraction of the peak."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def linear_warmup_decay(optimizer, warmup: int, total: int) -> LambdaLR:
    """Every parameter group's rate scaled by linear_factor (a partial, as transformers', so a checkpoint's
    scheduler state loads into either)."""
    return LambdaLR(optimizer, functools.partial(linear_factor, warmup=warmup, total=total))

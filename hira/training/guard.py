"""The NaN/inf guard: an AdamW that refuses a step whose loss or gradients are not finite.

The check runs inside optimizer.step(), after DeepSpeed has reduced (and clipped) the gradients and before any
weight changes, so a bad step never reaches the weights or the Adam moments, whatever the ZeRO stage.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from hira.errors import UserError

class NonFiniteError(UserError):
    """Training produced a NaN/inf loss or gradient (usually a learning rate that is too high)."""


class GuardedAdamW(torch.optim.AdamW):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.begin_step()

    def begin_step(self) -> None:
        self.bad_loss, self.skipped = False, False

    def note_loss(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            self.bad_loss = True

    def step(self, closure=None):
        bad = torch.tensor(float(self.bad_loss or not self._grads_finite()))
        if dist.is_initialized() and dist.get_world_size() > 1:  # every rank must take the same decision
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        self.skipped = self.skipped or bool(bad)
        # DeepSpeed's single-process path reads `overflow` to also hold the LR schedule on a dropped step.
        self.overflow = self.skipped
        if not self.skipped:
            return super().step(closure)

    def _grads_finite(self) -> bool:
        return all(torch.isfinite(p.grad).all() for group in self.param_groups for p in group["params"]
                   if p.grad is not None)


def nonfinite_error(step: int, what: str, last_good: str | None, run_dir) -> NonFiniteError:
    where = (f"the last good checkpoint is {last_good} (rerun with run_dir={run_dir} to resume from it)"
             if last_good else "no checkpoint was saved yet")
    return NonFiniteError(f"step {step}: non-finite {what}, training stopped; {where}; lower the learning rate "
                          f"(train.lr) or set train.on_nonfinite=skip to drop such steps")

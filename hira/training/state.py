"""The training loop's state: what it carries from step to step, and a checkpoint carries across a restart.

Its own module so that the loop (hira/training/loop.py) and resume (hira/training/resume.py), which restores it,
both use it without importing each other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hira.training.cost import RunCost


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
        """Continue from a checkpoint's trainer state, this rank's own fields merged in (resume.load_state)."""
        return cls(state["step"], BestSoFar(state["best_step"], state["best_val_loss"]), state.get("running", []),
                   checkpoint_name, RunCost.resumed(state))

"""What a run costs, over all its processes: training time (summed) and peak memory (the maximum).

A run stopped and resumed is trained by several processes ("segments"). Each checkpoint carries the run's totals
up to it, so a resumed process continues the sum from the checkpoint it restores, and a rerun of a finished run
(which trains no step) adds nothing. The clock runs only during training steps and validation passes, and the
process's peak memory is read at the end of each of them: checkpoint writes depend on the disk, and keeping them
out makes a checkpoint's totals exactly what its process had counted, so the run's "end" event, and a rerun's,
report the same totals as the last checkpoint. Work that a killed process did after its last checkpoint is redone
by the next one and counted once.
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass

import torch


def process_peak_memory_gb() -> float:
    """This process's peak: torch.cuda.max_memory_allocated on GPU, the max resident set size on CPU."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


@dataclass
class RunCost:
    earlier_time_s: float = 0.0       # the segments before this process (from the restored checkpoint)
    earlier_peak_gb: float = 0.0
    segment_time_s: float = 0.0       # this process's training time so far
    segment_peak_gb: float = 0.0      # this process's peak, as read after its last training step or validation

    @classmethod
    def resumed(cls, trainer_state: dict) -> "RunCost":
        """Continue the totals a checkpoint carries (checkpoints written before they existed carry none)."""
        return cls(trainer_state.get("train_time_s", 0.0), trainer_state.get("peak_memory_gb", 0.0))

    @contextlib.contextmanager
    def clocked(self):
        """Count the enclosed work as training time."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.segment_time_s += time.perf_counter() - started
            self.segment_peak_gb = process_peak_memory_gb()  # never falls: a process's peak only grows

    def totals(self) -> dict:
        """The run's totals so far, as checkpoints and the "end" event record them."""
        return {"train_time_s": self.earlier_time_s + self.segment_time_s,
                "peak_memory_gb": max(self.earlier_peak_gb, self.segment_peak_gb)}

    def end_fields(self) -> dict:
        """The "end" event's cost fields: the run's totals and this process's own share."""
        totals = self.totals()
        return {"train_time_s": round(totals["train_time_s"], 2), "peak_memory_gb": totals["peak_memory_gb"],
                "segment_time_s": round(self.segment_time_s, 2), "segment_peak_memory_gb": self.segment_peak_gb}

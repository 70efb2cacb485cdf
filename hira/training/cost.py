"""What a run costs, over all its processes: training time and training tokens (summed) and peak memory (the
maximum); and cost(run_dir), the cost a finished run folder records.

A run stopped and resumed is trained by several processes ("segments"). Each checkpoint carries the run's totals
up to it, so a resumed process continues the sum from the checkpoint it restores, and a rerun of a finished run
(which trains no step) adds nothing. The clock runs only during training steps and validation passes, and the
process's peak memory is read at the end of each of them: checkpoint writes depend on the disk, and keeping them
out makes a checkpoint's totals exactly what its process had counted, so the run's "end" event, and a rerun's,
report the same totals as the last checkpoint. Work that a killed process did after its last checkpoint is redone
by the next one and counted once. The training tokens are the non-pad input tokens of every trained micro batch,
summed over the ranks: each step's global batch, which every rank knows (the loop's TrainBatches.tokens_for_step).
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import dataclass

import torch

from hira.run_dir import RunDir
from hira.training.checkpoint import ADAPTER_FILE


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
    earlier_tokens: int = 0
    segment_tokens: int = 0           # the training tokens of this process's steps, over every rank

    @classmethod
    def resumed(cls, trainer_state: dict) -> "RunCost":
        """Continue the totals a checkpoint carries (checkpoints written before they existed carry none)."""
        return cls(trainer_state.get("train_time_s", 0.0), trainer_state.get("peak_memory_gb", 0.0),
                   earlier_tokens=trainer_state.get("train_tokens", 0))

    def count_tokens(self, n: int) -> None:
        self.segment_tokens += n

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
                "peak_memory_gb": max(self.earlier_peak_gb, self.segment_peak_gb),
                "train_tokens": self.earlier_tokens + self.segment_tokens}

    def end_fields(self) -> dict:
        """The "end" event's cost fields: the run's totals and this process's own share."""
        totals = self.totals()
        return {"train_time_s": round(totals["train_time_s"], 2), "peak_memory_gb": totals["peak_memory_gb"],
                "segment_time_s": round(self.segment_time_s, 2), "segment_peak_memory_gb": self.segment_peak_gb,
                "train_tokens": totals["train_tokens"],
                "tokens_per_s": tokens_per_s(totals["train_tokens"], totals["train_time_s"])}


def tokens_per_s(tokens: int | None, seconds: float | None) -> float | None:
    """Training tokens per second of training time (its steps and validation passes); None without either."""
    return round(tokens / seconds, 1) if tokens is not None and seconds else None


def cost(run_dir) -> dict:
    """The cost part of a run's result record, from what its folder holds: the "start" event's parameter counts,
    the best checkpoint's adapter file (what is scored and shipped) and the "end" event's totals. A field the folder
    lacks is None: a run not finished, or written before the field was recorded."""
    run = RunDir(run_dir)
    start = next(iter(run.events("start")), {})
    end = (run.events("end") or [{}])[-1]
    trainable, total = start.get("trainable_params"), start.get("total_params")
    adapter = best_adapter_file(run)
    return {"trainable_params": trainable, "total_params": total,
            "trainable_percent": 100 * trainable / total if trainable is not None and total else None,
            "adapter_file": str(adapter.relative_to(run.path)) if adapter else None,
            "adapter_bytes": adapter.stat().st_size if adapter else None,
            "peak_memory_gb": end.get("peak_memory_gb"), "train_time_s": end.get("train_time_s"),
            "train_tokens": end.get("train_tokens"), "tokens_per_s": end.get("tokens_per_s")}


def best_adapter_file(run: RunDir):
    """The best checkpoint's adapter file, or None before the run's first validation."""
    name = run.best_name()
    path = run.checkpoints / name / ADAPTER_FILE if name else None
    return path if path is not None and path.is_file() else None

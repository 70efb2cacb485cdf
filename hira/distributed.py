"""Process group and rank helpers, for one CPU process or many ranks under the deepspeed launcher.

The ground floor: every layer (data caching, model building, adapters, training) asks here which rank it is and
waits for the others, so nothing below the training loop has to import it.
"""

from __future__ import annotations

import contextlib
import os
import socket

import torch.distributed as dist


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(device: str) -> None:
    """Join the launcher's process group, or make a one-rank group (DeepSpeed needs one even in a single process)."""
    import deepspeed

    if "RANK" not in os.environ:  # plain `python train.py`: without these DeepSpeed tries MPI discovery
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    if os.environ["WORLD_SIZE"] == "1":
        # DeepSpeed JIT-builds a shared-memory all-reduce for CPU ranks (~1 min); one process never uses it.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl", verbose=False)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized() and world_size() > 1:
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's value of obj on every rank (e.g. the run directory, whose timestamp each rank resolves itself)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_across_ranks(total: float, count: int) -> float:
    """Mean of per-rank sums: the loss of the whole global batch, not just rank 0's share of it."""
    if world_size() > 1:
        import torch

        t = torch.tensor([total, float(count)], dtype=torch.float64)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / count


def gathered(params):
    """Context in which ZeRO-3 partitioned params hold their full values (a no-op for unpartitioned ones)."""
    params = [p for p in params if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)

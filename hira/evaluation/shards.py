"""Data-parallel scoring: under the deepspeed launcher or torchrun every rank decodes a shard of each subset's
questions, and rank 0 gathers the outputs back into the subset's order.

Decoding is batch-invariant (each question's tokens do not depend on which others share its batch), so the gathered
outputs, and the predictions and scores.json rank 0 writes from them, are those of one process.
"""

from __future__ import annotations

import os

import torch.distributed as dist

from hira import distributed
from hira.errors import UserError


def join_ranks(device: str) -> None:
    """Join the launcher's process group (gloo on CPU, NCCL on GPUs); nothing to do for one process or a group
    training already joined."""
    ranks = distributed.launched_ranks()
    if ranks > 1 and not dist.is_initialized():
        try:
            distributed.init_distributed(device)
        except (RuntimeError, ValueError, OSError) as e:
            raise UserError(f"cannot start {ranks} scoring ranks (rank {os.environ.get('RANK')}, "
                            f"MASTER_ADDR={os.environ.get('MASTER_ADDR')}, MASTER_PORT="
                            f"{os.environ.get('MASTER_PORT')}): {e}") from e


def rank_device(device: str) -> str:
    """This rank's device: a bare "cuda" becomes the rank's own GPU (LOCAL_RANK)."""
    if device == "cuda" and distributed.launched_ranks() > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def shard(n: int, rank: int, world: int) -> list[int]:
    """Rank `rank`'s share of n questions: every world-th, so every rank gets the subset's mix of lengths."""
    return list(range(rank, n, world))


def announce_shard(sizes: list[int]) -> None:
    """Under several ranks, one line from each on stdout (ranks other than 0 log only errors, so a log line would
    not show theirs): its share of the subsets' questions, e.g. "rank 1 of 2 scores 8 of 24 questions in 8 subsets"."""
    world, rank = distributed.world_size(), distributed.rank()
    if world > 1:
        mine = sum(len(shard(n, rank, world)) for n in sizes)
        print(f"rank {rank} of {world} scores {mine} of {sum(sizes)} questions in {len(sizes)} subsets", flush=True)


def decode_sharded(decode, n: int, what: str) -> list | None:
    """decode(indices) -> outputs, run on this rank's shard of n questions; all n outputs in order on rank 0 (None on
    the others). A rank whose decode raised makes every rank raise one error that names it."""
    world, rank = distributed.world_size(), distributed.rank()
    if world == 1:
        return decode(list(range(n)))
    try:
        mine = ("ok", decode(shard(n, rank, world)))
    except Exception as e:  # noqa: BLE001 (reported with the rank, on every rank)
        mine = ("error", f"{type(e).__name__}: {e}")
    everyone = distributed.gather_objects(mine)
    failed = [(r, message) for r, (status, message) in enumerate(everyone) if status == "error"]
    if failed:
        raise UserError("; ".join(f"scoring {what} failed on rank {r}: {message}" for r, message in failed))
    if rank != 0:
        return None
    outputs = [None] * n
    for r, (_, shard_outputs) in enumerate(everyone):
        for i, output in zip(shard(n, r, world), shard_outputs):
            outputs[i] = output
    return outputs

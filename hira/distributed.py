"""Process group and rank helpers, for one CPU process or many ranks under the deepspeed launcher.

The ground floor: every layer (data caching, model building, adapters, training) asks here which rank it is and
waits for the others, so nothing below the training loop has to import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket

import torch.distributed as dist


def strip_launcher_args(argv: list[str]) -> list[str]:
    """sys.argv for Hydra under the deepspeed launcher: its --local_rank flag dropped (ranks read LOCAL_RANK from the
    environment), and ranks other than 0 writing no Hydra folder or log (rank 0 writes the run's files)."""
    argv = [a for a in argv if not a.startswith("--local_rank")]
    if int(os.environ.get("RANK", "0")) > 0:
        argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra.run.dir=."]
    return argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# DeepSpeed warnings about choices this project makes on purpose (matched by their text, so any other stays).
EXPECTED_WARNINGS = ("ZeRO with an untested optimizer",)  # torch AdamW, zero_allow_untested_optimizer in our config


def drop_expected_warnings(record: logging.LogRecord) -> bool:
    return not any(text in record.getMessage() for text in EXPECTED_WARNINGS)


@contextlib.contextmanager
def warnings_and_errors_only():
    """Hide INFO and DEBUG records from every logger in the block (warnings and errors still show)."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def import_deepspeed_quietly():
    """Import DeepSpeed without the messages a user cannot act on, in one place for every run:

    - "Setting accelerator to CPU ...": DeepSpeed's accelerator detection warns when it falls back to the CPU; on a
      machine without CUDA we name the CPU accelerator ourselves (a DS_ACCELERATOR the user set is kept).
    - the `gcc ... test.c` lines: DeepSpeed's op-compatibility probe (the async_io builder test-links libaio) echoes
      its compiler commands at INFO on first access to deepspeed.ops.__compatible_ops__; we trigger it here with
      INFO records off. Its result is cached, so later accesses do not probe again.
    - ZeRO's "untested optimizer" warning (EXPECTED_WARNINGS): filtered on DeepSpeed's logger.
    """
    import torch

    if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
    import deepspeed
    from deepspeed.utils import logger as ds_logger

    if drop_expected_warnings not in ds_logger.filters:
        ds_logger.addFilter(drop_expected_warnings)
    with warnings_and_errors_only():
        deepspeed.ops.__compatible_ops__  # noqa: B018 (runs and caches the probe)
    return deepspeed


def init_distributed(device: str) -> None:
    """Join the launcher's process group, or make a one-rank group (DeepSpeed needs one even in a single process)."""
    deepspeed = import_deepspeed_quietly()

    if "RANK" not in os.environ:  # plain `python train.py`: without these DeepSpeed tries MPI discovery
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    if launched_ranks() == 1:
        # DeepSpeed JIT-builds a shared-memory all-reduce for CPU ranks (~1 min); one process never uses it.
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo" if device == "cpu" else "nccl", verbose=False)


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def launched_ranks() -> int:
    """The number of ranks the launcher (deepspeed, torchrun, submitit) started: its WORLD_SIZE, 1 when started
    directly. Known before the process group is joined (the check phase, the scoring shards); after, world_size()."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def world_size() -> int:
    """The size of the process group this process joined; 1 before it joins one."""
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


def gather_objects(obj) -> list:
    """Every rank's value of obj, in rank order, on every rank."""
    if world_size() == 1:
        return [obj]
    box = [None] * world_size()
    dist.all_gather_object(box, obj)
    return box


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

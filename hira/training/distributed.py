"""Process-group setup and the DeepSpeed config, for one CPU process or many ranks under the launcher."""

from __future__ import annotations

import contextlib
import json
import os
import socket

import torch.distributed as dist

from hira.errors import UserError


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


def accumulation_steps(global_batch: int, micro_batch: int, world: int) -> int:
    if global_batch % (micro_batch * world):
        raise UserError(f"train.global_batch_size={global_batch} is not divisible by hardware.micro_batch_size="
                        f"{micro_batch} × {world} ranks; pick a micro batch that divides {global_batch // world}")
    return global_batch // (micro_batch * world)


def deepspeed_config(path: str, micro_batch: int, accumulation: int, grad_clip: float) -> dict:
    """The JSON file named by hardware.ds_config with its "auto" values filled from the Hydra config."""
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise UserError(f"hardware.ds_config={path} not found; the configs live in ds_configs/") from None
    filled = {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": accumulation,
              "gradient_clipping": grad_clip}
    for key, value in filled.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    config.pop("train_batch_size", None)  # implied by the two above and the world size
    config.setdefault("zero_allow_untested_optimizer", True)  # torch AdamW; DeepSpeed's fused Adam needs CUDA
    return config


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


def register_base_weights_for_zero3(model) -> None:
    """ZeRO-3 gathers a module's own parameters before its forward; adapters also read base_layer.weight."""
    from deepspeed.runtime.zero.partition_parameters import register_external_parameter

    from hira.adapters import adapter_layers

    for layer in adapter_layers(model).values():
        for param in layer.base_layer.parameters(recurse=False):
            register_external_parameter(layer, param)


def gathered(params):
    """Context in which ZeRO-3 partitioned params hold their full values (a no-op for unpartitioned ones)."""
    params = [p for p in params if hasattr(p, "ds_id")]
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)

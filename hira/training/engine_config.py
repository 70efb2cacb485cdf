"""The DeepSpeed engine's settings: gradient accumulation, the filled-in JSON config, ZeRO-3 external weights."""

from __future__ import annotations

import json

from hira.config.check import check_batch_split
from hira.errors import UserError


def accumulation_steps(global_batch: int, micro_batch: int, world: int) -> int:
    check_batch_split(global_batch, micro_batch, world)  # the launch's real world size, which the check phase guessed
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


def register_base_weights_for_zero3(model) -> None:
    """ZeRO-3 gathers a module's own parameters before its forward; adapters also read base_layer.weight."""
    from deepspeed.runtime.zero.partition_parameters import register_external_parameter

    from hira.adapters import adapter_layers

    for layer in adapter_layers(model).values():
        for param in layer.base_layer.parameters(recurse=False):
            register_external_parameter(layer, param)

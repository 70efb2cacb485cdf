"""Full fine-tuning: every base weight trains (an 8B model needs ZeRO-3, hardware=a100_zero3).

A model-level method: nothing is injected; checkpoints hold the full weights (the "trainable" set is the model).
"""

from __future__ import annotations

from torch import nn

from hira.adapters.base import AdapterConfigError, register_model_method


@register_model_method("full")
def full(model: nn.Module, target_modules) -> nn.Module:
    if target_modules:
        raise AdapterConfigError("method=full trains every weight: set method.target_modules=[]")
    model.requires_grad_(True)
    return model

"""LoRA+ (Hayou et al., 2024): LoRA whose B matrices learn λ = lr_ratio times faster than its A matrices.

With A and B at one learning rate, LoRA's feature learning is inefficient at large width; LoRA+ sets η_B = λ·η_A
(the paper recommends λ = 16, the default here). The adapter, its forward, merge and peft export are LoRA's: only
the optimizer's parameter groups differ, through the lr_scale hook (train.lr is A's rate).
"""

from __future__ import annotations

from torch import nn

from hira.adapters.base import AdapterConfigError, register
from hira.adapters.lora import LoRALinear


@register("lora_plus")
class LoRAPlusLinear(LoRALinear):
    peft_tensors = LoRALinear.peft_tensors  # a peft LoRA adapter: LoRA+ changes only how it is trained

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0,
                 lr_ratio: float = 16.0):
        super().__init__(base_layer, r, alpha, dropout)
        if not lr_ratio > 0:
            raise AdapterConfigError(f"method.params.lr_ratio={lr_ratio} must be positive (η_B / η_A; LoRA+ uses 16)")
        self.lr_ratio = lr_ratio

    def lr_scale(self, name: str) -> float:
        return self.lr_ratio if name == "lora_B" else 1.0

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lr_ratio={self.lr_ratio:g}"

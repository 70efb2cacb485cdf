"""LoRA (Hu et al., 2022): ΔW = (α/r)·B·A with dropout on the adapter's input.

A ∈ R^{r×in} kaiming-uniform and B ∈ R^{out×r} zeros, as in peft, so training starts at the base model. The paper's
baseline (following DoRA's setup): r=32, α=64, dropout 0.05. The forward never forms ΔW: y = W0·x + s·B(A·drop(x)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, AdapterLinear, register


def check_rank(layer: AdapterLinear, r: int, name: str = "method.params.r") -> None:
    if not 0 < r <= min(layer.in_features, layer.out_features):
        raise AdapterConfigError(f"{name}={r} must be in 1..{min(layer.in_features, layer.out_features)} "
                                 f"for a {layer.out_features}×{layer.in_features} layer")


def low_rank_pair(layer: AdapterLinear, r: int) -> tuple[nn.Parameter, nn.Parameter]:
    """(A, B): A (r × in) kaiming-uniform as nn.Linear/peft initialise it, B (out × r) zeros; fp32."""
    device = layer.base_layer.weight.device
    a = nn.Parameter(torch.empty(r, layer.in_features, dtype=torch.float32, device=device))
    b = nn.Parameter(torch.zeros(layer.out_features, r, dtype=torch.float32, device=device))
    if r > 0:
        nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    return a, b


def make_dropout(p: float) -> nn.Module:
    if not 0 <= p < 1:
        raise AdapterConfigError(f"method.params.dropout={p} must be in [0, 1)")
    return nn.Dropout(p) if p > 0 else nn.Identity()


def dropout_p(layer: AdapterLinear) -> float:
    return layer.dropout.p if isinstance(layer.dropout, nn.Dropout) else 0.0


@register("lora")
class LoRALinear(AdapterLinear):
    peft_tensors = {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"}

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__(base_layer)
        check_rank(self, r)
        self.r, self.alpha = r, float(alpha if alpha is not None else r)
        self.scaling = self.alpha / r
        self.lora_A, self.lora_B = low_rank_pair(self, r)
        self.dropout = make_dropout(dropout)

    def lora_output(self, x: torch.Tensor) -> torch.Tensor:
        """s·B·A·x in fp32 for an (already dropped-out) input."""
        x = x.to(self.lora_A.dtype)
        return F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        return result + self.lora_output(self.dropout(x)).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    def peft_config(self, target_modules: list[str]):
        from peft import LoraConfig, TaskType

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=dropout_p(self), task_type=TaskType.CAUSAL_LM,
                          target_modules=target_modules)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha:g}"

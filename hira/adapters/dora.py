"""DoRA (Liu et al., 2024): weight-decomposed LoRA, W' = m ⊙ (W0 + s·BA) / ‖W0 + s·BA‖_row.

The magnitude m (one per output row) starts at ‖W0‖_row so training starts at the base model. As in the DoRA paper
(§4.3) and peft, the norm is treated as a constant (detached) in backward. With dropout active the base part is
recomputed on the dropped-out input, exactly as peft does:
    y = W0·x + (m/n − 1)·W0·drop(x) + (m/n)·s·B·A·drop(x).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import register
from hira.adapters.lora import LoRALinear


@register("dora")
class DoRALinear(LoRALinear):
    peft_tensors = {**LoRALinear.peft_tensors, "lora_magnitude": "lora_magnitude_vector"}

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__(base_layer, r, alpha, dropout)
        with torch.no_grad():
            self.lora_magnitude = nn.Parameter(self.weight_norm(super().delta_weight()))
        self._merge_norm = None  # the norm at merge time, needed to undo it (the merged W has row norms m)

    def peft_config(self, target_modules: list[str]):
        config = super().peft_config(target_modules)
        config.use_dora = True
        return config

    def weight_norm(self, lora_delta: torch.Tensor) -> torch.Tensor:
        """‖W0 + ΔW_lora‖ per output row (fp32)."""
        return torch.linalg.norm(self.base_layer.weight.float() + lora_delta, dim=1)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        norm = self.weight_norm(super().delta_weight().detach()).detach()
        scale = self.lora_magnitude / norm
        if isinstance(self.dropout, nn.Identity) or not self.training:
            xd = x
            base = result if self.base_layer.bias is None else result - self.base_layer.bias
        else:
            xd = self.dropout(x)
            base = F.linear(xd, self.base_layer.weight)
        extra = (scale - 1) * base.to(scale.dtype) + scale * self.lora_output(xd)
        return result + extra.to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        lora_delta = super().delta_weight()
        scale = (self.lora_magnitude / self.weight_norm(lora_delta)).unsqueeze(1)
        w0 = self.base_layer.weight.float()
        return scale * (w0 + lora_delta) - w0

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._merge_norm = self.weight_norm(super().delta_weight())
        super().merge()

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        # W' = (m/n)·(W0 + s·BA)  =>  W0 = W'·n/m − s·BA, with n the norm cached when merging
        return merged * (self._merge_norm / self.lora_magnitude).unsqueeze(1) - super().delta_weight()

"""HiRA: Hadamard high-rank adaptation, ΔW = W0 ⊙ (B·A).

The update inherits W0's rank structure, so ΔW can be high-rank although only r·(in+out) numbers train.
A is kaiming-uniform and B zero (training starts exactly at the base model); no dropout, no scaling.
By default the forward runs the fused op of hira.adapters.ops (one matmul, W' recomputed in backward instead of
stored); fused=False (`method.fused=false`) runs the plain autograd formula of AdapterLinear instead.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hira.adapters.base import AdapterLinear, AdapterConfigError, register
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS, hira_linear


@register("hira")
class HiRALinear(AdapterLinear):
    def __init__(self, base_layer: nn.Linear, r: int, fused: bool = True,
                 fused_chunk_elems: int | None = DEFAULT_CHUNK_ELEMS):
        super().__init__(base_layer)
        if not 0 < r <= min(self.in_features, self.out_features):
            raise AdapterConfigError(f"method.params.r={r} must be in 1..{min(self.in_features, self.out_features)} "
                                     f"for a {self.out_features}×{self.in_features} layer")
        self.r, self.fused, self.fused_chunk_elems = r, fused, fused_chunk_elems
        device = base_layer.weight.device
        self.hira_A = nn.Parameter(torch.empty(r, self.in_features, dtype=torch.float32, device=device))
        self.hira_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=torch.float32, device=device))
        nn.init.kaiming_uniform_(self.hira_A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        return self.base_layer.weight.float() * (self.hira_B @ self.hira_A)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return super().adapted_forward(x)
        # base_layer.weight is read here, inside this module's forward, so ZeRO-3 has gathered it
        return hira_linear(x, self.base_layer.weight, self.hira_A, self.hira_B, self.base_layer.bias,
                           chunk_elems=self.fused_chunk_elems)

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        # W' = W0 ⊙ (1 + BA)  =>  W0 = W' / (1 + BA)
        return merged / (1 + self.hira_B @ self.hira_A)

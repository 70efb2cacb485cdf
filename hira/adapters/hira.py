"""HiRA: Hadamard high-rank adaptation, ΔW = W0 ⊙ (B·A).

The update inherits W0's rank structure, so ΔW can be high-rank although only r·(in+out) numbers train.
A is kaiming-uniform and B zero (training starts exactly at the base model); no dropout, no scaling.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hira.adapters.base import AdapterLinear, AdapterConfigError, register


@register("hira")
class HiRALinear(AdapterLinear):
    def __init__(self, base_layer: nn.Linear, r: int):
        super().__init__(base_layer)
        if not 0 < r <= min(self.in_features, self.out_features):
            raise AdapterConfigError(f"method.r={r} must be in 1..{min(self.in_features, self.out_features)} "
                                     f"for a {self.out_features}×{self.in_features} layer")
        self.r = r
        device = base_layer.weight.device
        self.hira_A = nn.Parameter(torch.empty(r, self.in_features, dtype=torch.float32, device=device))
        self.hira_B = nn.Parameter(torch.zeros(self.out_features, r, dtype=torch.float32, device=device))
        nn.init.kaiming_uniform_(self.hira_A, a=math.sqrt(5))

    def delta_weight(self) -> torch.Tensor:
        return self.base_layer.weight.float() * (self.hira_B @ self.hira_A)

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        # W' = W0 ⊙ (1 + BA)  =>  W0 = W' / (1 + BA)
        return merged / (1 + self.hira_B @ self.hira_A)

"""HiLoRA (HiRA paper ablation, Table 6): ΔW = W0 ⊙ (B1·A1) + B2·A2, a HiRA part of rank r1 plus a LoRA part of
rank r2 (r1 + r2 = r; the paper's best split is r1=20, r2=12). Both A kaiming-uniform, both B zeros; no scaling.

r2=0 is exactly HiRA and r1=0 exactly LoRA with α=r and no dropout. The HiRA part runs hira.adapters.ops' fused
op (fused=False: the plain autograd formula); the LoRA part is two thin matmuls beside it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, AdapterLinear, register
from hira.adapters.lora import check_rank, low_rank_pair
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS, hira_linear


@register("hilora")
class HiLoRALinear(AdapterLinear):
    def __init__(self, base_layer: nn.Linear, r1: int = 20, r2: int = 12, fused: bool = True,
                 fused_chunk_elems: int | None = DEFAULT_CHUNK_ELEMS):
        super().__init__(base_layer)
        if r1 < 0 or r2 < 0 or r1 + r2 == 0:
            raise AdapterConfigError(f"method.params r1={r1}, r2={r2}: both must be ≥ 0 and not both 0")
        for name, r in (("method.params.r1", r1), ("method.params.r2", r2)):
            if r:
                check_rank(self, r, name)
        self.r1, self.r2 = r1, r2
        self.fused, self.fused_chunk_elems = fused, fused_chunk_elems
        if r1:
            self.hira_A, self.hira_B = low_rank_pair(self, r1)
        if r2:
            self.lora_A, self.lora_B = low_rank_pair(self, r2)

    def hadamard_factor(self) -> torch.Tensor | float:
        return self.hira_B @ self.hira_A if self.r1 else 0.0

    def lora_delta(self) -> torch.Tensor | float:
        return self.lora_B @ self.lora_A if self.r2 else 0.0

    def delta_weight(self) -> torch.Tensor:
        w0 = self.base_layer.weight.float()
        return w0 * self.hadamard_factor() + self.lora_delta()

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.fused and self.r1):
            return super().adapted_forward(x)
        out = hira_linear(x, self.base_layer.weight, self.hira_A, self.hira_B, self.base_layer.bias,
                          chunk_elems=self.fused_chunk_elems)
        if self.r2:
            out = out + F.linear(F.linear(x.to(self.lora_A.dtype), self.lora_A), self.lora_B).to(out.dtype)
        return out

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        # W' = W0 ⊙ (1 + B1A1) + B2A2  =>  W0 = (W' − B2A2) / (1 + B1A1)
        return (merged - self.lora_delta()) / (1 + self.hadamard_factor())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r1={self.r1}, r2={self.r2}"

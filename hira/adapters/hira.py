"""HiRA: Hadamard high-rank adaptation, ΔW = W0 ⊙ (B·A).

The update inherits W0's rank structure, so ΔW can be high-rank although only r·(in+out) numbers train.
A is kaiming-uniform and B zero (training starts exactly at the base model); no dropout, no scaling.
By default the forward runs the fused op of hira.adapters.ops (one matmul, W' recomputed in backward instead of
stored); fused=False (`method.fused=false`) runs the plain autograd formula of AdapterLinear instead.
"""

from __future__ import annotations

import torch
from torch import nn

from hira.adapters.base import AdapterLinear, register
from hira.adapters.lora import check_rank, low_rank_pair
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS, hira_linear


@register("hira")
class HiRALinear(AdapterLinear):
    peft_tensors = {"hira_A": "hira_A", "hira_B": "hira_B"}

    def __init__(self, base_layer: nn.Linear, r: int, fused: bool = True,
                 fused_chunk_elems: int | None = DEFAULT_CHUNK_ELEMS):
        super().__init__(base_layer)
        check_rank(self, r)
        self.r, self.fused, self.fused_chunk_elems = r, fused, fused_chunk_elems
        self.hira_A, self.hira_B = low_rank_pair(self, r)

    def delta_weight(self) -> torch.Tensor:
        return self.base_layer.weight.float() * (self.hira_B @ self.hira_A)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return super().adapted_forward(x)
        # base_layer.weight is read here, inside this module's forward, so ZeRO-3 has gathered it
        return hira_linear(x, self.base_layer.weight, self.hira_A, self.hira_B, self.base_layer.bias,
                           chunk_elems=self.fused_chunk_elems)

    def peft_config(self, target_modules: list[str]):
        from peft import HiraConfig, TaskType

        return HiraConfig(r=self.r, task_type=TaskType.CAUSAL_LM, target_modules=target_modules)

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        # W' = W0 ⊙ (1 + BA)  =>  W0 = W' / (1 + BA)
        return merged / (1 + self.hira_B @ self.hira_A)

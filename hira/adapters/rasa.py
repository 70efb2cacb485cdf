"""RaSA (He et al., 2025): rank-sharing LoRA. Each layer keeps r−k private ranks and contributes k ranks to a pool
shared by all layers of the same module type (q_proj, ...); each layer weights the whole pool with its own
trainable diagonal D_i (init 1):
    ΔW_i = (α/r)·(B_i·A_i + B_S·diag(d_i)·A_S),  A_S ∈ R^{L·k × in}, B_S ∈ R^{out × L·k},  k = max(r/8, 1).
A_i, A_S kaiming-uniform, B_i, B_S zeros. Trainable numbers per module type: L·r·(in+out) (exactly LoRA at rank r)
plus the L diagonals of L·k entries each.

The pool is one pair of Parameters registered in every layer of its group (like tied embeddings): the optimizer and
the saved weights see it once, under the first layer's name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, AdapterLinear, register
from hira.adapters.lora import check_rank, low_rank_pair, make_dropout


def shared_rank(r: int, k: int | None) -> int:
    return max(r // 8, 1) if k is None else k


@register("rasa")
class RaSALinear(AdapterLinear):
    computed_args = ("shared_A", "shared_B")  # the pool of its module type, from layer_kwargs

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0,
                 k: int | None = None, shared_A: nn.Parameter | None = None, shared_B: nn.Parameter | None = None):
        super().__init__(base_layer)
        check_rank(self, r)
        self.r, self.k = r, shared_rank(r, k)
        if not 0 < self.k <= r:
            raise AdapterConfigError(f"method.params.k={self.k} must be in 1..r={r}")
        if shared_A is None or shared_B is None:  # a layer on its own: a pool of its own k ranks
            shared_A, shared_B = low_rank_pair(self, self.k)
        self.alpha = float(alpha if alpha is not None else r)
        self.scaling = self.alpha / r
        self.lora_A, self.lora_B = low_rank_pair(self, r - self.k)
        self.rasa_shared_A, self.rasa_shared_B = shared_A, shared_B
        self.rasa_D = nn.Parameter(torch.ones(shared_A.shape[0], dtype=torch.float32, device=shared_A.device))
        self.dropout = make_dropout(dropout)

    @classmethod
    def layer_kwargs(cls, layers: dict[str, nn.Linear], r: int, k: int | None = None, **params) -> dict[str, dict]:
        """One pool per module type and shape, holding k ranks per layer of that type."""
        k = shared_rank(r, k)
        groups: dict[tuple, list[str]] = {}
        for name, layer in layers.items():
            groups.setdefault((name.rsplit(".", 1)[-1], layer.in_features, layer.out_features), []).append(name)
        kwargs = {}
        for (_, n_in, n_out), names in groups.items():
            device = layers[names[0]].weight.device
            a = nn.Parameter(torch.empty(k * len(names), n_in, dtype=torch.float32, device=device))
            b = nn.Parameter(torch.zeros(n_out, k * len(names), dtype=torch.float32, device=device))
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            kwargs.update({name: {"shared_A": a, "shared_B": b} for name in names})
        return kwargs

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, B) of the whole update, private ranks first: ΔW = s·B·A."""
        a = torch.cat([self.lora_A, self.rasa_D.unsqueeze(1) * self.rasa_shared_A])
        b = torch.cat([self.lora_B, self.rasa_shared_B], dim=1)
        return a, b

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        a, b = self.factors()
        h = self.dropout(x).to(a.dtype)
        return result + (F.linear(F.linear(h, a), b) * self.scaling).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        a, b = self.factors()
        return (b @ a) * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, k={self.k}, pool={self.rasa_shared_A.shape[0]}"

"""HiRA-rand (HiRA paper ablation, Table 4): ΔW = R ⊙ (B·A) with a fixed random R ~ U[0, 1] in place of W0.

R is regenerated from (method.params.rand_seed, the layer's module name) whenever the adapter is built, so it is
never saved and is identical after reloading a checkpoint. The forward runs hira.adapters.ops' fused op with
mask R (fused=False: the plain autograd formula). It is kept in the base weight's dtype (bf16 for the 8B
models: 2 bytes per adapted weight instead of 4). A kaiming-uniform, B zeros; no dropout, no scaling.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

from hira.adapters.base import AdapterLinear, register
from hira.adapters.lora import check_rank, low_rank_pair
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS, hira_linear


def random_mask(shape: tuple[int, int], seed: int, name: str, dtype, device) -> torch.Tensor:
    """U[0,1) of `shape`, a function of (seed, name) only."""
    if torch.device(device).type == "meta":
        return torch.empty(shape, dtype=dtype, device="meta")
    generator = torch.Generator(device="cpu").manual_seed(zlib.crc32(f"{seed}:{name}".encode()))  # CPU seeds are 32-bit
    return torch.rand(shape, generator=generator).to(device=device, dtype=dtype)


@register("hira_rand")
class HiRARandLinear(AdapterLinear):
    computed_args = ("layer_name",)  # R's seed, from layer_kwargs

    def __init__(self, base_layer: nn.Linear, r: int, rand_seed: int = 0, layer_name: str = "", fused: bool = True,
                 fused_chunk_elems: int | None = DEFAULT_CHUNK_ELEMS):
        super().__init__(base_layer)
        check_rank(self, r)
        self.r, self.rand_seed, self.layer_name = r, rand_seed, layer_name
        self.fused, self.fused_chunk_elems = fused, fused_chunk_elems
        weight = base_layer.weight
        self.register_buffer("hira_R", random_mask(tuple(weight.shape), rand_seed, layer_name, weight.dtype,
                                                   weight.device), persistent=False)
        self.hira_A, self.hira_B = low_rank_pair(self, r)

    @classmethod
    def layer_kwargs(cls, layers: dict[str, nn.Linear], **params) -> dict[str, dict]:
        return {name: {"layer_name": name} for name in layers}

    def delta_weight(self) -> torch.Tensor:
        return self.hira_R.float() * (self.hira_B @ self.hira_A)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return super().adapted_forward(x)
        return hira_linear(x, self.base_layer.weight, self.hira_A, self.hira_B, self.base_layer.bias,
                           mask=self.hira_R, chunk_elems=self.fused_chunk_elems)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, rand_seed={self.rand_seed}"

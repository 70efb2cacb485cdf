"""MoRA (Jiang et al., 2024): a square trainable M ∈ R^{r̂×r̂} between a parameter-free input compression and
output decompression, r̂ = ⌊√((in+out)·r) + ½⌋ (even for type 6) so M has about as many numbers as LoRA at rank r.

x is extended cyclically to a multiple of r̂ and cut into chunks of r̂ (x_j = x[(j·r̂ + i) mod in]):
- type 1 (sharing): the chunks are summed, M maps the sum, and the result is tiled to `out`:
      y_o = (M·Σ_j x_j)[o mod r̂]
- type 6 (RoPE): chunk j is rotated by RoPE at position j, M maps every chunk, the chunks are concatenated
  and cut (or tiled) to `out`:  y = concat_j(M·rot_j(x_j))[o mod (n·r̂)]
M starts at zero (training starts at the base model); no scaling; dropout on the input as for LoRA.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, AdapterLinear, register
from hira.adapters.lora import make_dropout

TYPES = (1, 6)


def mora_rank(in_features: int, out_features: int, r: int, mora_type: int) -> int:
    r_hat = int(math.sqrt((in_features + out_features) * r) + 0.5)
    return r_hat // 2 * 2 if mora_type == 6 else r_hat


def rope_tables(n_chunks: int, r_hat: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = 1.0 / (10000 ** (torch.arange(0, r_hat, 2, dtype=torch.float32, device=device) / r_hat))
    freqs = torch.outer(torch.arange(n_chunks, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


@register("mora")
class MoRALinear(AdapterLinear):
    def __init__(self, base_layer: nn.Linear, r: int, mora_type: int = 6, dropout: float = 0.0):
        super().__init__(base_layer)
        if mora_type not in TYPES:
            raise AdapterConfigError(f"method.params.mora_type={mora_type}: implemented types are {TYPES}")
        if r <= 0:
            raise AdapterConfigError(f"method.params.r={r} must be positive")
        self.r, self.mora_type = r, mora_type
        self.r_hat = mora_rank(self.in_features, self.out_features, r, mora_type)
        self.n_chunks = math.ceil(self.in_features / self.r_hat)
        device = base_layer.weight.device
        self.mora_M = nn.Parameter(torch.zeros(self.r_hat, self.r_hat, dtype=torch.float32, device=device))
        self.dropout = make_dropout(dropout)
        self.register_buffer("in_index", torch.arange(self.n_chunks * self.r_hat, device=device) % self.in_features,
                             persistent=False)
        width = self.r_hat if mora_type == 1 else self.n_chunks * self.r_hat
        self.register_buffer("out_index", torch.arange(self.out_features, device=device) % width, persistent=False)
        if mora_type == 6:
            cos, sin = rope_tables(self.n_chunks, self.r_hat, device)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def mora_update(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's output for input x (…, in) in fp32: decompress(M · compress(x))."""
        x = x.to(self.mora_M.dtype)
        chunks = x[..., self.in_index].unflatten(-1, (self.n_chunks, self.r_hat))
        if self.mora_type == 1:
            out = F.linear(chunks.sum(dim=-2), self.mora_M)
        else:
            half = self.r_hat // 2
            rotated = torch.cat((-chunks[..., half:], chunks[..., :half]), dim=-1)
            out = F.linear(chunks * self.rope_cos + rotated * self.rope_sin, self.mora_M).flatten(-2)
        return out[..., self.out_index]

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        return result + self.mora_update(self.dropout(x)).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        eye = torch.eye(self.in_features, dtype=self.mora_M.dtype, device=self.mora_M.device)
        return self.mora_update(eye).T  # column j is the update's response to the unit input e_j

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, type={self.mora_type}, r_hat={self.r_hat}"

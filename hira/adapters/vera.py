"""VeRA (Kopiczko et al., 2024): ΔW = Λ_b·B·Λ_d·A with A, B frozen random and shared, only d and b trained.

A (r × max_in) and B (max_out × r) are drawn once from `projection_seed` (kaiming-uniform, the same generator
calls as peft's VeraConfig(projection_prng_key=seed)), shared by every adapted layer and sliced to each layer's
shape, so layers of the same shape share identical matrices. They are regenerated from the seed, never saved.
d ∈ R^r starts at d_initial (0.1) and b ∈ R^out at 0, so training starts at the base model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, AdapterLinear, register
from hira.adapters.lora import dropout_p, make_dropout


def kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """U(−b, b) with b = √3·√2/√fan_in, fan_in = shape[1]: peft's VeRA projection initialisation."""
    bound = math.sqrt(3.0) * math.sqrt(2) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def shared_projections(r: int, max_in: int, max_out: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    if torch.device(device).type == "meta":  # parameter counting: no values needed
        return torch.empty(r, max_in, device="meta"), torch.empty(max_out, r, device="meta")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    a = kaiming_uniform((r, max_in), generator)
    b = kaiming_uniform((max_out, r), generator)
    return a.to(device), b.to(device)


@register("vera")
class VeRALinear(AdapterLinear):
    computed_args = ("vera_A", "vera_B")  # the projections shared by all layers, from layer_kwargs
    # peft regenerates the frozen projections from projection_prng_key, the seed ours were drawn from
    peft_tensors = {"vera_lambda_d": "vera_lambda_d", "vera_lambda_b": "vera_lambda_b"}

    def __init__(self, base_layer: nn.Linear, r: int, d_initial: float = 0.1, dropout: float = 0.0,
                 projection_seed: int = 0, vera_A: torch.Tensor | None = None, vera_B: torch.Tensor | None = None):
        super().__init__(base_layer)
        if r <= 0:  # unlike LoRA, r may exceed the layer's dimensions: A and B are random, not learned
            raise AdapterConfigError(f"method.params.r={r} must be positive")
        if vera_A is None or vera_B is None:  # a layer built on its own: projections of exactly its shape
            vera_A, vera_B = shared_projections(r, self.in_features, self.out_features, projection_seed,
                                                base_layer.weight.device)
        self.r, self.projection_seed, self.d_initial = r, projection_seed, d_initial
        self.register_buffer("vera_A", vera_A, persistent=False)
        self.register_buffer("vera_B", vera_B, persistent=False)
        device = base_layer.weight.device
        self.vera_lambda_d = nn.Parameter(torch.full((r,), float(d_initial), device=device))
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features, device=device))
        self.dropout = make_dropout(dropout)

    @classmethod
    def layer_kwargs(cls, layers: dict[str, nn.Linear], r: int, projection_seed: int = 0, **params) -> dict[str, dict]:
        if not layers:
            return {}
        first = next(iter(layers.values()))
        a, b = shared_projections(r, max(m.in_features for m in layers.values()),
                                  max(m.out_features for m in layers.values()), projection_seed, first.weight.device)
        return {name: {"vera_A": a, "vera_B": b} for name in layers}

    def projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vera_A[:, : self.in_features], self.vera_B[: self.out_features, :]

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        a, b = self.projections()
        h = self.dropout(x).to(self.vera_lambda_d.dtype)
        update = self.vera_lambda_b * F.linear(self.vera_lambda_d * F.linear(h, a), b)
        return result + update.to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        a, b = self.projections()
        return (self.vera_lambda_b.unsqueeze(1) * b) @ (self.vera_lambda_d.unsqueeze(1) * a)

    def peft_config(self, target_modules: list[str]):
        from peft import TaskType, VeraConfig

        return VeraConfig(r=self.r, projection_prng_key=self.projection_seed, save_projection=False,
                          vera_dropout=dropout_p(self), d_initial=self.d_initial, task_type=TaskType.CAUSAL_LM,
                          target_modules=target_modules)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}"

"""Shared adapter machinery: the AdapterLinear base class, the method registry, inject / merge / export.

A method is one subclass of AdapterLinear in its own file, registered under its config name. It owns its
trainable parameters (kept in fp32 whatever the base dtype) and says what its dense update ΔW is; the base
class provides the unmerged forward, merge/unmerge and the trainable-only state dict.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hira.errors import UserError

METHODS: dict[str, type["AdapterLinear"]] = {}


class AdapterConfigError(UserError):
    """A method, target module or rank that cannot be applied to this model."""


def register(name: str):
    def wrap(cls):
        METHODS[name] = cls
        cls.method = name
        return cls
    return wrap


class AdapterLinear(nn.Module):
    """Wraps a frozen nn.Linear; subclasses define delta_weight() and may override adapted_forward()."""

    method = "base"

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The dense update ΔW (out × in, fp32) this adapter adds to the base weight."""
        raise NotImplementedError

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        """x·(W0 + ΔW)ᵀ + bias with the adapter unmerged; one matmul on the updated weight."""
        w0 = self.base_layer.weight
        weight = w0 + self.delta_weight().to(w0.dtype)
        return F.linear(x, weight, self.base_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return self.base_layer(x)
        return self.adapted_forward(x)

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            w0 = self.base_layer.weight
            w0.copy_((w0.float() + self.delta_weight()).to(w0.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.merged = False  # delta_weight() of some methods reads W0, so recover it from W' = W0 + ΔW(W0)
            w = self.base_layer.weight
            w.copy_(self.unmerged_weight(w.float()).to(w.dtype))

    def unmerged_weight(self, merged: torch.Tensor) -> torch.Tensor:
        """W0 given the merged weight; additive updates just subtract ΔW (multiplicative ones override)."""
        return merged - self.delta_weight()

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, merged={self.merged}"


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLinear)}


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct short names (q_proj, ...) of the linear layers a method could target."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def apply(model: nn.Module, method: str, target_modules, **params) -> nn.Module:
    """Freeze the model and wrap every linear layer whose short name is in target_modules with `method`."""
    if method not in METHODS:
        raise AdapterConfigError(f"unknown method {method!r}; valid: {', '.join(sorted(METHODS))}")
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    missing = set(targets) - set(linear_module_names(model))
    if missing:
        raise AdapterConfigError(f"method.target_modules: {', '.join(sorted(missing))} not in the model; "
                                 f"its linear layers are {', '.join(linear_module_names(model))}")
    model.requires_grad_(False)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, METHODS[method](child, **params))
    return model


def merge(model: nn.Module) -> nn.Module:
    for layer in adapter_layers(model).values():
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    for layer in adapter_layers(model).values():
        layer.unmerge()
    return model


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train (the adapters), detached and contiguous for safetensors."""
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights saved by trainable_state_dict; the key sets must match exactly."""
    params = dict(model.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected)[:3], sorted(expected - set(state))[:3]
        raise AdapterConfigError(f"adapter weights do not fit this model/method: unexpected {extra}, missing {missing}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)

"""Shared adapter machinery: the AdapterLinear base class, the method registry, inject / merge / export.

A method is one subclass of AdapterLinear in its own file, registered under its config name. It owns its
trainable parameters (kept in fp32 whatever the base dtype) and says what its dense update ΔW is; the base
class provides the unmerged forward, merge/unmerge and the trainable-only state dict. Optional hooks:
`layer_kwargs` (constructor arguments computed from all targeted layers at once: VeRA's shared projections,
RaSA's shared rank pool), `state_buffers` (non-trainable state saved with the trainable weights: LoRA-Dash's
directions), `on_step` (called after every optimizer step: LoRA-Dash's phase switch), `lr_scale` (a factor on
the learning rate of one of the layer's tensors: LoRA+'s B; `param_groups` turns it into the optimizer's groups)
and `peft_tensors` with `peft_config` (the peft adapter it equals, for export_peft).

Methods that are not linear wrappers (prompt tuning, P-tuning, full fine-tuning) register a model-level
function with `register_model_method` instead: it receives the whole model and returns the model to train.

A method's parameters are declared once, by its constructor's (or model-level function's) typed signature after
the layer (or the model and target modules); arguments its `layer_kwargs` computes are listed in `computed_args`.
`params_model` derives the method's pydantic model from that signature; `apply`, and the config's check
(hira/config/schema.py Method), validate the parameters against it before anything touches the model.
"""

from __future__ import annotations

import inspect
import types
import typing
from typing import Callable

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from torch import nn

from hira.errors import UserError

METHODS: dict[str, type["AdapterLinear"]] = {}
MODEL_METHODS: dict[str, Callable[..., nn.Module]] = {}  # name -> fn(model, target_modules, **params) -> model


# Options of the fused Hadamard op sit beside params in the method config (method.fused=false), not under them.
OP_OPTIONS = ("fused", "fused_chunk_elems")


class AdapterConfigError(UserError):
    """A method, target module or rank that cannot be applied to this model."""


def register(name: str):
    def wrap(cls):
        METHODS[name] = cls
        cls.method = name
        return cls
    return wrap


def register_model_method(name: str):
    """Register fn(model, target_modules, **params) -> model for a method that is not a linear-layer wrapper."""
    def wrap(fn):
        MODEL_METHODS[name] = fn
        return fn
    return wrap


def all_methods() -> list[str]:
    return sorted({*METHODS, *MODEL_METHODS})


class AdapterLinear(nn.Module):
    """Wraps a frozen nn.Linear; subclasses define delta_weight() and may override adapted_forward()."""

    method = "base"
    state_buffers: tuple[str, ...] = ()  # buffers saved and loaded with the trainable weights
    computed_args: tuple[str, ...] = ()  # constructor arguments layer_kwargs supplies: not config keys
    # our tensor -> peft's saved name, for a method whose update is a peft adapter's; a subclass inherits the export
    # only by declaring it in its own body (LoRA-Dash subclasses LoRA but is not a peft LoRA): see exportable()
    peft_tensors: dict[str, str] = {}

    def __init__(self, base_layer: nn.Linear):
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.merged = False

    @classmethod
    def layer_kwargs(cls, layers: dict[str, nn.Linear], **params) -> dict[str, dict]:
        """Extra constructor arguments per layer name, computed once from all targeted layers (default: none)."""
        return {}

    def on_step(self, step: int) -> None:
        """Called after optimizer step `step` (1-based) of training; a no-op unless a method has phases."""

    def lr_scale(self, name: str) -> float:
        """The factor on the learning rate of this layer's own parameter `name` (1: the run's train.lr)."""
        return 1.0

    def peft_config(self, target_modules: list[str]):
        """The peft config of the adapter this layer equals (methods that declare peft_tensors)."""
        raise NotImplementedError(f"{self.method} has no peft equivalent")

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


def config_key(name: str) -> str:
    """Parameter `name` as a user writes it: method.params.r, or method.fused for the op options beside params."""
    return f"method.{name}" if name in OP_OPTIONS else f"method.params.{name}"


def declared_params(method: str) -> dict[str, inspect.Parameter]:
    """The method's parameters by name, their annotations resolved to types; default `inspect.Parameter.empty`
    marks a required one."""
    if method in MODEL_METHODS:
        fn, computed = MODEL_METHODS[method], ()
    else:
        fn, computed = METHODS[method].__init__, METHODS[method].computed_args
    hints = typing.get_type_hints(fn)
    after_the_layer = list(inspect.signature(fn).parameters.values())[2:]  # (self, base_layer) or (model, targets)
    return {p.name: p.replace(annotation=hints.get(p.name, p.annotation))
            for p in after_the_layer if p.name not in computed}


def type_name(annotation) -> str:
    """int, float or null, ... as a config value's type reads in an error message."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        names = [type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(names + ["null"] * (type(None) in typing.get_args(annotation)))
    return getattr(annotation, "__name__", str(annotation))


def params_model(method: str) -> type[BaseModel]:
    """The method's parameters as a pydantic model derived from its signature (declared_params): strict types (an
    int is a valid float, a bool is no number), no undeclared key, the required ones required."""
    fields = {name: (p.annotation, ... if p.default is p.empty else p.default)
              for name, p in declared_params(method).items()}
    return create_model(f"{method}_params", __config__=ConfigDict(extra="forbid", strict=True), **fields)


def valid_keys(declared: dict[str, inspect.Parameter]) -> str:
    keys = [f"{config_key(name)} ({type_name(p.annotation)}{', required' if p.default is p.empty else ''})"
            for name, p in declared.items()]
    return ", ".join(keys) or "none (this method takes no parameters)"


def param_errors(method: str, params: dict) -> list[dict]:
    """pydantic's errors for the given parameters, an unknown key first (a typo also leaves its key missing)."""
    try:
        params_model(method).model_validate(params)
    except ValidationError as e:
        return sorted(e.errors(), key=lambda error: {"extra_forbidden": 0, "missing": 2}.get(error["type"], 1))
    return []


def param_error(method: str, error: dict, params: dict, declared: dict[str, inspect.Parameter]) -> AdapterConfigError:
    """One line naming the method, the config key, the value and what is valid."""
    name = str(error["loc"][0])
    if name not in declared:
        problem = f"unknown key {config_key(name)}={params[name]!r}"
    elif error["type"] == "missing":
        problem = f"{config_key(name)} is required"
    else:
        problem = f"{config_key(name)}={params[name]!r} is not of type {type_name(declared[name].annotation)}"
    return AdapterConfigError(f"method={method}: {problem}; valid keys: {valid_keys(declared)}")


def check_param(method: str, name: str, value, declared: dict[str, inspect.Parameter]) -> None:
    """One parameter alone (the others may be given elsewhere): unknown, or not of its declared type."""
    errors = [error for error in param_errors(method, {name: value}) if error["type"] != "missing"]
    if errors:
        raise param_error(method, errors[0], {name: value}, declared)


def check_params(method: str, params: dict) -> None:
    """Every given parameter declared by `method` and of its type, and every required one given."""
    errors = param_errors(method, params)
    if errors:
        raise param_error(method, errors[0], params, declared_params(method))


def apply(model: nn.Module, method: str, target_modules, **params) -> nn.Module:
    """Freeze the model and wrap every linear layer whose short name is in target_modules with `method`.

    Returns the model to train: the same object for linear-wrapper methods, possibly a wrapper (peft's prompt
    learning models) for model-level ones, so callers must use the return value.
    """
    if method not in METHODS and method not in MODEL_METHODS:
        raise AdapterConfigError(f"unknown method {method!r}; valid: {', '.join(all_methods())}")
    check_params(method, params)
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules or [])
    missing = set(targets) - set(linear_module_names(model))
    if missing:
        raise AdapterConfigError(f"method.target_modules: {', '.join(sorted(missing))} not in the model; "
                                 f"its linear layers are {', '.join(linear_module_names(model))}")
    if method in MODEL_METHODS:
        return MODEL_METHODS[method](model, targets, **params)
    model.requires_grad_(False)
    found = {f"{name}.{child_name}" if name else child_name: (module, child_name, child)
             for name, module in model.named_modules() for child_name, child in module.named_children()
             if child_name in targets and isinstance(child, nn.Linear)}
    cls = METHODS[method]
    extra = cls.layer_kwargs({name: child for name, (_, _, child) in found.items()}, **params)
    for name, (module, child_name, child) in found.items():
        setattr(module, child_name, cls(child, **params, **extra.get(name, {})).train(child.training))
    return model


def on_step(model: nn.Module, step: int) -> None:
    """Tell every adapter layer that optimizer step `step` finished (the training loop calls this)."""
    for layer in adapter_layers(model).values():
        layer.on_step(step)


def param_groups(model: nn.Module, lr: float) -> list[dict]:
    """The optimizer's parameter groups: every trainable parameter at lr × its adapter layer's lr_scale, one group
    per factor, the factor-1 group first (the loop logs the first group's rate as the run's)."""
    scale = {id(p): layer.lr_scale(name) for layer in adapter_layers(model).values()
             for name, p in layer.named_parameters(recurse=False)}
    groups: dict[float, list] = {1.0: []}
    for p in model.parameters():  # each shared tensor once (RaSA's pool is registered in every layer)
        if p.requires_grad:
            groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    return [{"params": params, "lr": lr * factor} for factor, params in groups.items() if params]


def exportable(cls: type[AdapterLinear]) -> bool:
    return "peft_tensors" in vars(cls)


def merge(model: nn.Module) -> nn.Module:
    for layer in adapter_layers(model).values():
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    for layer in adapter_layers(model).values():
        layer.unmerge()
    return model


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every adapter and put its plain nn.Linear back: a model `save_pretrained` writes as an ordinary one."""
    for name, layer in adapter_layers(model).items():
        layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.base_layer)
    return model


def adapter_state_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The non-trainable adapter state (each layer's `state_buffers`) that must travel with the weights."""
    return {f"{name}.{b}": getattr(layer, b) for name, layer in adapter_layers(model).items()
            for b in layer.state_buffers}


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train (the adapters) plus adapter state buffers, detached and contiguous."""
    state = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    state.update({n: b.detach().contiguous() for n, b in adapter_state_buffers(model).items()})
    return state


def load_trainable_state_dict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load adapter weights saved by trainable_state_dict; the key sets must match exactly."""
    params = dict(model.named_parameters())
    targets = {n: p for n, p in params.items() if p.requires_grad}
    targets.update(adapter_state_buffers(model))
    if set(state) != set(targets):
        extra, missing = sorted(set(state) - set(targets))[:3], sorted(set(targets) - set(state))[:3]
        raise AdapterConfigError(f"adapter weights do not fit this model/method: unexpected {extra}, missing {missing}")
    with torch.no_grad():
        for name, tensor in state.items():
            targets[name].copy_(tensor)

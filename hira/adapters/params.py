"""From a Hydra `method` config to `apply(...)`: the method's parameters and the options beside them."""

from __future__ import annotations

from omegaconf import OmegaConf

from hira.adapters.base import OP_OPTIONS, apply


def method_params(method_cfg) -> dict:
    """method.params as a plain dict ({} for methods without any); method_cfg a config or a plain mapping."""
    params = method_cfg.get("params") or {}
    return OmegaConf.to_container(params, resolve=True) if OmegaConf.is_config(params) else dict(params)


def method_arguments(method_cfg) -> dict:
    """The keyword arguments the method is applied with: its params and the op options beside them."""
    params = method_params(method_cfg)
    params.update({k: method_cfg[k] for k in OP_OPTIONS if k in method_cfg})
    return params


def apply_method(model, method_cfg):
    """`apply` with everything the method config holds: name, target modules, params and op options."""
    return apply(model, method_cfg.name, list(method_cfg.get("target_modules") or []), **method_arguments(method_cfg))

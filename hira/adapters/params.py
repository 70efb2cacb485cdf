"""From a Hydra `method` config to `apply(...)`: the method's parameters and the options beside them."""

from __future__ import annotations

from omegaconf import OmegaConf

# Options of the fused Hadamard op sit beside params (method.fused=false) for the methods that have them.
OP_OPTIONS = ("fused", "fused_chunk_elems")


def method_params(method_cfg) -> dict:
    """method.params as a plain dict ({} for methods without any)."""
    return OmegaConf.to_container(method_cfg.params, resolve=True) if method_cfg.get("params") else {}


def apply_method(model, method_cfg):
    """`apply` with everything the method config holds: name, target modules, params and op options."""
    from hira.adapters.base import apply

    params = method_params(method_cfg)
    params.update({k: method_cfg[k] for k in OP_OPTIONS if k in method_cfg})
    return apply(model, method_cfg.name, list(method_cfg.get("target_modules") or []), **params)

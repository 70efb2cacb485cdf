"""From a Hydra `method` config to `apply(...)`: the method's parameters and the options beside them, and the
command line's method overrides checked against the method's declaration before Hydra composes anything."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from hira.adapters.base import OP_OPTIONS, all_methods, apply, check_param, declared_params
from hira.checkout import CONFIG_DIR


def method_params(method_cfg) -> dict:
    """method.params as a plain dict ({} for methods without any)."""
    return OmegaConf.to_container(method_cfg.params, resolve=True) if method_cfg.get("params") else {}


def apply_method(model, method_cfg):
    """`apply` with everything the method config holds: name, target modules, params and op options."""
    params = method_params(method_cfg)
    params.update({k: method_cfg[k] for k in OP_OPTIONS if k in method_cfg})
    return apply(model, method_cfg.name, list(method_cfg.get("target_modules") or []), **params)


def methods_chosen(args: list[str], config_dir: Path = CONFIG_DIR) -> list[str]:
    """The method(s) a train.py command line runs: method=a,b or else train.yaml's default; [] when an experiment
    or arm may pick it (those configs are Hydra's to compose)."""
    keys = {arg.partition("=")[0].lstrip("+~") for arg in args}
    if keys & {"experiment", "arm"}:
        return []
    chosen = [arg.partition("=")[2].split(",") for arg in args if arg.partition("=")[0].lstrip("+~") == "method"]
    if chosen:
        return [m for m in chosen[-1] if m in all_methods()]  # an unknown name is check_group_choices' to report
    defaults = OmegaConf.load(Path(config_dir) / "train.yaml").defaults
    return [entry.method for entry in defaults if OmegaConf.is_dict(entry) and "method" in entry]


def parsed_override(arg: str):
    """Hydra's parse of one `key=value` argument (the value typed as Hydra types it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([arg])[0]


def check_method_overrides(args: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """method.params.KEY=VALUE (and method.fused=...) on the command line: a key the chosen method declares and a
    value of its type. Hydra itself would answer an unknown key with a many-line struct error, and a wrong type
    would fail only after the base model has loaded."""
    prefixes = ("method.params.", *(f"method.{option}=" for option in OP_OPTIONS))
    overrides = [arg for arg in args if arg.lstrip("+~").startswith(prefixes)]
    methods = methods_chosen(args, config_dir) if overrides else []
    for method in methods:
        declared = declared_params(method)
        for arg in overrides:
            override = parsed_override(arg.lstrip("+"))
            name = override.key_or_group.rpartition(".")[2]
            if override.is_delete() or (override.is_sweep_override() and name in declared):
                continue  # a sweep's values are checked by apply in each job; a deleted required key there too
            value = arg.partition("=")[2] if override.is_sweep_override() else override.value()
            check_param(method, name, value, declared)

"""Adapter methods; importing a method's module registers it under its config name."""

from hira.adapters import hira  # noqa: F401  (registers "hira")
from hira.adapters.base import (METHODS, AdapterConfigError, AdapterLinear, adapter_layers, apply,
                                load_trainable_state_dict, merge, trainable_state_dict, unmerge)

__all__ = ["METHODS", "AdapterConfigError", "AdapterLinear", "adapter_layers", "apply", "load_trainable_state_dict",
           "merge", "trainable_state_dict", "unmerge"]

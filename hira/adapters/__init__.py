"""Adapter methods; importing a method's module registers it under its config name."""

from hira.adapters import (dora, full, hilora, hira, hira_rand, lora, lora_dash, lora_plus, mora, prompt,  # noqa: F401
                           rasa, vera)
from hira.adapters.base import (METHODS, MODEL_METHODS, AdapterConfigError, AdapterLinear, adapter_layers,
                                adapter_state_buffers, all_methods, apply, load_trainable_state_dict, merge,
                                merge_and_unload, on_step, param_groups, trainable_state_dict, unmerge)
from hira.adapters.export import export_peft

__all__ = ["METHODS", "MODEL_METHODS", "AdapterConfigError", "AdapterLinear", "adapter_layers", "adapter_state_buffers",
           "all_methods", "apply", "export_peft", "load_trainable_state_dict", "merge", "merge_and_unload", "on_step",
           "param_groups", "trainable_state_dict", "unmerge"]

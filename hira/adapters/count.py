"""Trainable parameters of a method on a model, counted on the meta device (no weights, no memory); the command
is hira-count-params (hira/commands/count_params.py).

The percentage is trainable / (base + method) parameters, the convention behind the paper's Params (%) column
(LoRA r=32 on Llama-3-8B: 56,623,104 / (8,030,261,248 + 56,623,104) = 0.7002 %). The architecture comes from
model.path/config.json when the weights are there, else from the published configs below, so the paper's models
can be counted on a machine without them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hira.errors import UserError
from hira.adapters.params import method_params

# The published config.json architecture fields of the paper's base models (by hub id).
ARCHITECTURES = {
    "meta-llama/Meta-Llama-3-8B": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                       max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False),
    "meta-llama/Llama-2-7b-hf": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                     max_position_embeddings=4096, tie_word_embeddings=False),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                                num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                                max_position_embeddings=8192, rope_theta=100000.0,
                                                tie_word_embeddings=True),
}

# The paper's Params (%) column (Table 1, Llama-3-8B): (model, method, r) -> %.
PAPER_PERCENT = {("llama3_8b", "lora", 32): 0.7002, ("llama3_8b", "dora", 32): 0.7002,
                 ("llama3_8b", "hira", 32): 0.7002, ("llama3_8b", "hira", 16): 0.3513,
                 ("llama3_8b", "mora", 32): 0.6997}


@dataclass
class Count:
    trainable: int
    total: int  # base + method parameters, each shared tensor once
    base: int  # the model's parameters before the method was applied

    @property
    def percent(self) -> float:
        """The paper's convention: % of base + method parameters."""
        return 100 * self.trainable / self.total

    @property
    def percent_of_base(self) -> float:
        return 100 * self.trainable / self.base


def model_config(model_cfg):
    """The transformers config of model_cfg: from its folder if present, else the published architecture."""
    from pathlib import Path

    from transformers import AutoConfig, LlamaConfig

    path = Path(model_cfg.path).expanduser()
    if (path / "config.json").is_file():
        return AutoConfig.from_pretrained(path)
    if model_cfg.get("hub_id") in ARCHITECTURES:
        return LlamaConfig(**ARCHITECTURES[model_cfg.hub_id])
    raise UserError(f"model {model_cfg.name}: no config.json in model.path={model_cfg.path} and no known architecture"
                    f" (known: {', '.join(ARCHITECTURES)}); build or download the model first")


def count(model_config_obj, method: str, target_modules, **params) -> Count:
    """Build the model on the meta device, apply the method, count."""
    from transformers import AutoModelForCausalLM

    from hira.adapters import apply

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config_obj)
        base = sum(p.numel() for p in model.parameters())
        model = apply(model, method, target_modules, **params)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Count(trainable, sum(p.numel() for p in model.parameters()), base)


def count_from_config(cfg) -> Count:
    return count(model_config(cfg.model), cfg.method.name, list(cfg.method.get("target_modules") or []),
                 **method_params(cfg.method))


def paper_percent(cfg) -> float | None:
    return PAPER_PERCENT.get((cfg.model.name, cfg.method.name, method_params(cfg.method).get("r")))

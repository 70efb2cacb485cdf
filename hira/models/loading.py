"""Loading base causal LMs from local folders only: nothing here ever reaches for a model hub."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hira.adapters.params import method_params  # noqa: F401  (its home is hira.adapters; old importers)
from hira.errors import UserError

# Set before transformers is imported anywhere: a missing folder must fail at once, not hang on a hub request.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFound(UserError):
    pass


def check_model_path(model_cfg) -> Path:
    """The local model folder, or a one-line error telling the user what to download and where to point it."""
    path = Path(model_cfg.path).expanduser().resolve()
    if (path / "config.json").is_file():
        return path
    if model_cfg.get("tiny"):
        return path  # built on first use
    raise ModelNotFound(
        f"model {model_cfg.name}: no weights at model.path={model_cfg.path} (looked in {path}); download "
        f"{model_cfg.hub_id} (e.g. `huggingface-cli download {model_cfg.hub_id} --local-dir {model_cfg.path}`) "
        f"and pass model.path=<folder with config.json>")


def load_base_model(model_cfg, device: str = "cpu"):
    """(model, tokenizer) from model.path; the tiny default model is built there first if missing."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_path(model_cfg)
    if model_cfg.get("tiny") and not (path / "config.json").is_file():
        from hira.models.tiny import build_tiny_model
        from hira import distributed

        if distributed.is_main():  # the other ranks wait for rank 0's build instead of racing it
            build_tiny_model(path, model_cfg.tiny)
        distributed.barrier()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:  # Llama tokenizers ship without one
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[model_cfg.dtype]).to(device)
    return model, tokenizer


def load_adapted_model(cfg, device: str = "cpu"):
    """Base model with cfg.method injected; cfg.seed fixes the adapter initialization."""
    from hira.adapters.params import apply_method

    model, tokenizer = load_base_model(cfg.model, device)
    torch.manual_seed(cfg.seed)
    return apply_method(model, cfg.method), tokenizer

"""Loading base causal LMs from local folders only: nothing here ever reaches for a model hub.

A model config names `path` (the folder loaded) and, for models the project can make itself, `cache_path`
(where it is built on first use: the tiny default, or SmolLM2 converted from its registry wheel). Building
happens only into cache_path; an explicit `model.path=` that holds no model is an error, never a new folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hira.errors import UserError

# HF_HUB_OFFLINE is set once, in hira/__init__.py (imported before this module): a missing folder must fail at
# once, not hang on a hub request.
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelNotFound(UserError):
    pass


BUILT_MODELS = ("tiny", "gguf_wheel")  # the settings keys of the models the project makes itself (builder below)


def can_build(model_cfg) -> bool:
    """Whether the project knows how to make this model (without importing the builder: checks stay fast)."""
    return any(model_cfg.get(name) for name in BUILT_MODELS)


def builder(model_cfg):
    """fn(path, settings) that makes this model on first use, with its settings; None for downloaded models."""
    if model_cfg.get("tiny"):
        from hira.models.tiny import build_tiny_model

        return build_tiny_model, model_cfg.tiny
    if model_cfg.get("gguf_wheel"):
        from hira.models.gguf_wheel import build_from_gguf_wheel

        return build_from_gguf_wheel, model_cfg.gguf_wheel
    return None


def builds_into(model_cfg, path: Path) -> bool:
    """True when `path` is the model's own cache folder and the project knows how to build it there."""
    cache = model_cfg.get("cache_path")
    return can_build(model_cfg) and cache is not None and Path(cache).expanduser().resolve() == path


def check_model_path(model_cfg) -> Path:
    """The local model folder, or a one-line error telling the user what to download and where to point it."""
    if not model_cfg.get("path"):
        raise ModelNotFound(f"model {model_cfg.name}: set model.path=<a local Hugging Face causal LM folder with "
                            f"config.json> (e.g. the output of `hf download <hub id> --local-dir DIR`)")
    path = Path(model_cfg.path).expanduser().resolve()
    if (path / "config.json").is_file() or builds_into(model_cfg, path):
        return path
    hint = (f"download {model_cfg.hub_id} (e.g. `hf download {model_cfg.hub_id} --local-dir {model_cfg.path}`) and "
            if model_cfg.get("hub_id") else "")
    default = (f"; leave model.path unset to build the default into {model_cfg.cache_path}"
               if can_build(model_cfg) and model_cfg.get("cache_path") else "")
    raise ModelNotFound(f"model {model_cfg.name}: no weights at model.path={model_cfg.path} (looked in {path}); "
                        f"{hint}pass model.path=<folder with config.json>{default}")


def ensure_model(model_cfg) -> Path:
    """check_model_path, then build the model into its cache folder if it is not there yet (rank 0 builds)."""
    from hira import distributed

    path = check_model_path(model_cfg)
    if not (path / "config.json").is_file():
        build, settings = builder(model_cfg)
        if distributed.is_main():  # the other ranks wait for rank 0's build instead of racing it
            build(path, settings)
        distributed.barrier()
    return path


UNBUILT_VOCAB = 2**16  # the tiny base's vocabulary before its tokenizer is built: large, so no lm_head check is
                      # stricter than the real one (the real size is checked again when the model loads)


def architecture(model_cfg):
    """The model's transformers config, read without loading a weight: its config.json, or the tiny base's settings
    before it is built; None for a model converted on first use (its shape is known once it is)."""
    path = Path(model_cfg.path).expanduser()
    if (path / "config.json").is_file():
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(path)
    if model_cfg.get("tiny"):
        from hira.models.tiny import tiny_config

        return tiny_config(model_cfg.tiny, UNBUILT_VOCAB)
    return None


def skeleton(model_cfg):
    """The model with every layer at its shape and no weights (on the meta device: nothing allocated), or None
    when its architecture is not known yet (architecture())."""
    from transformers import AutoModelForCausalLM

    config = architecture(model_cfg)
    if config is None:
        return None
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def load_tokenizer(path: Path):
    """The folder's tokenizer, with a pad token: the EOS token where it has none (Llama's), so no embedding grows."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_base_model(model_cfg, device: str = "cpu"):
    """(model, tokenizer) from model.path; models the project builds are built into cache_path first if missing."""
    from transformers import AutoModelForCausalLM

    path = ensure_model(model_cfg)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[model_cfg.dtype]).to(device)
    if model.config.pad_token_id is None:  # generate() warns and guesses otherwise
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_adapted_model(cfg, device: str = "cpu"):
    """Base model with cfg.method injected; cfg.seed fixes the adapter initialization."""
    from hira.adapters.params import apply_method

    model, tokenizer = load_base_model(cfg.model, device)
    torch.manual_seed(cfg.seed)
    return apply_method(model, cfg.method), tokenizer

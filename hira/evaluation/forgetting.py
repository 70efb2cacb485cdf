"""Forgetting: how much fine-tuning raised the model's loss on text it was not tuned on.

eval.forgetting_text=FILE names the text; without it the tiny model is measured on its world's pretraining
sentences (hira/data/synthetic_world.py), generated the same way every time, and other models are not measured.
The measure is the mean token cross-entropy (nats per predicted token) of the whole text, read as one token
stream cut into windows, for the base model and for the tuned one; the result record keeps both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from hira.adapters import merge
from hira.data import synthetic_world
from hira.models.loading import load_adapted_model, load_base_model
from hira.training.checkpoint import load_adapter

WINDOW = 256  # tokens per forward pass (capped by the model's positions)
TINY_TEXT = "tiny world pretraining sentences"  # what the record names the tiny model's default text


def forgetting_text(path: str | None, model_name: str) -> tuple[str, str] | None:
    """(name, text) to measure: the file given, else the tiny model's pretraining sentences, else None."""
    if path:
        return str(path), Path(path).expanduser().read_text()
    if model_name == "tiny":
        return TINY_TEXT, "\n".join(synthetic_world.pretraining_sentences(synthetic_world.World.build()))
    return None


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@torch.no_grad()
def mean_token_cross_entropy(model, tokenizer, text: str, window: int = WINDOW) -> tuple[float, int]:
    """(mean cross-entropy in nats over every predicted token, tokens predicted) of text as one token stream in
    windows of `window` tokens (each window predicts all its tokens but its first)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    positions = getattr(model.config, "max_position_embeddings", None) or window
    window = max(2, min(window, positions))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = torch.tensor([ids[start:start + window]], device=device)
        if chunk.shape[1] < 2:
            continue
        # the last len(chunk) positions: prompt tuning and P-tuning put virtual tokens before the input
        logits = model(input_ids=chunk).logits[0, -chunk.shape[1]:-1].float()
        total += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        count += chunk.shape[1] - 1
    model.train(was_training)
    return (total / count if count else float("nan")), count


def measure(name: str, text: str, base, tuned, tokenizer, checkpoint: str | None) -> dict:
    """Forgetting of models in memory (a scoring-only run: tuned is base for the untuned model)."""
    base_ce, tokens = mean_token_cross_entropy(base, tokenizer, text)
    tuned_ce = base_ce if tuned is base else mean_token_cross_entropy(tuned, tokenizer, text)[0]
    return entry(name, text, tokens, checkpoint, base_ce, tuned_ce)


def measure_checkpoint(run_cfg, ckpt: Path, device: str, name: str, text: str) -> dict:
    """Forgetting of a training run's checkpoint: the base model, then the checkpoint's weights merged into it
    (one model in memory at a time)."""
    base, tokenizer = load_base_model(run_cfg.model, device)
    base_ce, tokens = mean_token_cross_entropy(base, tokenizer, text)
    del base
    tuned, tokenizer = load_adapted_model(run_cfg, device)
    load_adapter(tuned, ckpt, run_cfg)
    merge(tuned)
    tuned_ce = mean_token_cross_entropy(tuned, tokenizer, text)[0]
    return entry(name, text, tokens, Path(ckpt).name, base_ce, tuned_ce)


def entry(name: str, text: str, tokens: int, checkpoint: str | None, base_ce: float, tuned_ce: float) -> dict:
    """The record's forgetting entry: the text's name and hash, and both models' cross-entropy on it."""
    return {"text": name, "sha256": text_sha256(text), "tokens": tokens, "checkpoint": checkpoint,
            "base_cross_entropy": base_ce, "tuned_cross_entropy": tuned_ce, "increase": tuned_ce - base_ce}


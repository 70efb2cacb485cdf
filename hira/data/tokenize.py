"""Alpaca-formatted records -> token ids and loss labels."""

from __future__ import annotations

from hira.data.templates import alpaca_prompt
from hira.errors import UserError

IGNORE_INDEX = -100


def encode_example(tokenizer, record: dict, cutoff_len: int, loss_on: str = "response") -> dict:
    """Prompt + output + EOS, truncated to cutoff_len; with loss_on=response the prompt is masked out of the loss."""
    if loss_on not in ("response", "full"):
        raise UserError(f"task.loss_on={loss_on!r}; valid: response, full")
    prompt = alpaca_prompt(record["instruction"], record.get("input", ""))
    prompt_ids = tokenizer(prompt)["input_ids"]
    full_ids = tokenizer(prompt + record["output"])["input_ids"] + [tokenizer.eos_token_id]
    ids = full_ids[:cutoff_len]
    labels = list(ids)
    if loss_on == "response":
        n_prompt = min(len(prompt_ids), len(ids))
        labels[:n_prompt] = [IGNORE_INDEX] * n_prompt
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "truncated": len(full_ids) > cutoff_len}


def encode_records(tokenizer, records: list, cutoff_len: int, loss_on: str) -> tuple[list, int]:
    """Encoded examples and how many were truncated."""
    encoded = [encode_example(tokenizer, r, cutoff_len, loss_on) for r in records]
    n_truncated = sum(e.pop("truncated") for e in encoded)
    return encoded, n_truncated

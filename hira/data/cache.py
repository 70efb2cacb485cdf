"""Pre-tokenized cache: encode a task's records once per tokenizer/cutoff/template, reuse them on later runs.

Tokenizing the 170k commonsense examples takes about a minute per run and per rank. The key hashes everything
the encoding depends on: the records, cutoff_len, loss_on, the tokenizer's full definition and the source of
the code that builds prompts and labels, so a change to any of them misses the cache instead of reusing a
stale one. Files are written to a temp name and renamed, so ranks that miss at the same time do not collide.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path

import torch

from hira.data import templates, tokenize


def cache_key(tokenizer, records: list, cutoff_len: int, loss_on: str) -> str:
    digest = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    special = json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str)
    for part in (definition, special, inspect.getsource(tokenize), inspect.getsource(templates),
                 json.dumps([cutoff_len, loss_on, records], sort_keys=True)):
        digest.update(part.encode())
    return digest.hexdigest()[:24]


def encode_records_cached(tokenizer, records: list, cutoff_len: int, loss_on: str,
                          cache_dir: str | None) -> tuple[list, int]:
    """tokenize.encode_records, read from / written to cache_dir (None or "" turns the cache off)."""
    if not cache_dir:
        return tokenize.encode_records(tokenizer, records, cutoff_len, loss_on)
    path = Path(cache_dir) / f"{cache_key(tokenizer, records, cutoff_len, loss_on)}.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["encoded"], cached["truncated"]
    encoded, n_truncated = tokenize.encode_records(tokenizer, records, cutoff_len, loss_on)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"encoded": encoded, "truncated": n_truncated}, tmp)
    os.replace(tmp, path)
    return encoded, n_truncated

"""Alpaca-formatted records -> token ids and loss labels, cached on disk as HF datasets.

The cache lives in <task.data_dir>/.tokenized/<key> (or task.tokenized_dir), keyed by a hash of the tokenizer,
the training file (path, size, modification time) and every setting that changes the result, so a second run
with the same settings loads the token ids instead of tokenizing 170k-395k records again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from hira.data.templates import NO_INPUT, WITH_INPUT, alpaca_prompt

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
CACHE_VERSION = 2  # bump when the encoding below changes (2: prompt and response tokenized apart)


def encode_ids(prompt_ids: list, response_ids: list, eos_id: int, cutoff_len: int, loss_on: str) -> dict:
    """Prompt + response + EOS, truncated to cutoff_len; with loss_on=response the prompt is masked out of the loss
    (loss_on=full: every token; hira/config/schema.py lists the choices)."""
    full_ids = prompt_ids + response_ids + [eos_id]
    ids = full_ids[:cutoff_len]
    labels = list(ids)
    if loss_on == "response":
        n_prompt = min(len(prompt_ids), len(ids))
        labels[:n_prompt] = [IGNORE_INDEX] * n_prompt
    truncated = len(full_ids) > cutoff_len
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "truncated": truncated,
            "lost_response": truncated and all(label == IGNORE_INDEX for label in labels)}


def prompt_and_response_ids(tokenizer, prompts: list[str], responses: list[str]) -> tuple[list, list]:
    """Token ids of the prompts (with the tokenizer's BOS, if it adds one) and of the responses (no specials).

    Tokenized apart, not as one string: a BPE merge across the boundary ("\n" + " x" -> "\n " + "x") would put a
    response character into the last prompt token. Apart, the prompt ids are exactly those the model sees at
    generation time, and the loss mask covers the prompt tokens exactly.
    """
    prompt_ids = tokenizer(prompts)["input_ids"]
    response_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    return prompt_ids, response_ids


def encode_batch(tokenizer, batch: dict, cutoff_len: int, loss_on: str) -> dict:
    """Encoded training examples for a column batch (one tokenizer call per column: fast tokenizers batch in Rust)."""
    prompts = [alpaca_prompt(i, x) for i, x in zip(batch["instruction"], batch["input"])]
    prompt_ids, response_ids = prompt_and_response_ids(tokenizer, prompts, batch["output"])
    rows = [encode_ids(p, r, tokenizer.eos_token_id, cutoff_len, loss_on) for p, r in zip(prompt_ids, response_ids)]
    return {k: [r[k] for r in rows] for k in rows[0]}


def encode_example(tokenizer, record: dict, cutoff_len: int, loss_on: str = "response") -> dict:
    batch = {"instruction": [record["instruction"]], "input": [record.get("input", "")], "output": [record["output"]]}
    return {k: v[0] for k, v in encode_batch(tokenizer, batch, cutoff_len, loss_on).items()}


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str() + json.dumps(tokenizer.special_tokens_map, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()
    from datasets.fingerprint import Hasher

    return Hasher.hash(tokenizer)


def cache_key(tokenizer, train_file: Path, task_cfg) -> str:
    stat = Path(train_file).stat()
    settings = {"tokenizer": tokenizer_fingerprint(tokenizer), "eos": tokenizer.eos_token_id,
                "file": [str(Path(train_file).resolve()), stat.st_size, stat.st_mtime_ns],
                "cutoff_len": task_cfg.cutoff_len, "loss_on": task_cfg.loss_on, "val_size": task_cfg.val_size,
                "split_seed": task_cfg.split_seed, "train_limit": task_cfg.get("train_limit"),
                "templates": [NO_INPUT, WITH_INPUT], "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir(task_cfg, key: str) -> Path:
    root = task_cfg.get("tokenized_dir") or Path(task_cfg.data_dir) / ".tokenized"
    return Path(root) / key


def build_cache(tokenizer, data, task_cfg, path: Path) -> None:
    """Tokenize train and val into a DatasetDict saved at `path` (written beside it, then renamed)."""
    from datasets import Dataset, DatasetDict

    def encode(records, desc):
        ds = Dataset.from_list([{k: r[k] for k in ("instruction", "input", "output")} for r in records])
        return ds.map(lambda b: encode_batch(tokenizer, b, task_cfg.cutoff_len, task_cfg.loss_on), batched=True,
                      remove_columns=ds.column_names, desc=desc)

    splits = DatasetDict({"train": encode(data.train, "tokenize train"), "val": encode(data.val, "tokenize val")})
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    splits.save_to_disk(str(tmp))
    try:
        tmp.rename(path)
    except OSError:  # another process finished the same cache first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def truncation_summary(train) -> tuple[int, str]:
    """(number truncated, a log line that also counts the examples truncation left without loss tokens)."""
    truncated, lost = sum(train["truncated"]), sum(train["lost_response"])
    return truncated, (f"{truncated} of {len(train)} training examples truncated "
                       f"({lost} of them lost every response token: raise task.cutoff_len if that is many)")


def tokenized_splits(tokenizer, data, task_cfg):
    """(train dataset, val examples as a list, number of truncated train examples), tokenized once per setting.

    Rank 0 tokenizes and saves; the other ranks wait and load the same files.
    """
    from datasets import load_from_disk

    from hira import distributed

    path = cache_dir(task_cfg, cache_key(tokenizer, data.train_file, task_cfg))
    cached = (path / "dataset_dict.json").is_file()
    if not cached and distributed.is_main():
        build_cache(tokenizer, data, task_cfg, path)
    distributed.barrier()
    if not (path / "dataset_dict.json").is_file():  # a node that does not share rank 0's disk builds its own
        build_cache(tokenizer, data, task_cfg, path)
    log.info("tokenized data %s %s", "loaded from cache" if cached else "cached in", path)
    splits = load_from_disk(str(path))
    n_truncated, summary = truncation_summary(splits["train"])
    log.info("cutoff_len=%d: %s", task_cfg.cutoff_len, summary)
    train, val = (splits[name].remove_columns(["truncated", "lost_response"]) for name in ("train", "val"))
    return train, list(val), n_truncated

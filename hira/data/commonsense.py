"""LLM-Adapters commonsense data: the training pool, the authors' validation split and the eight test sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hira.errors import UserError

SUBSETS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
# LLM-Adapters' folder names for the subsets whose canonical name here differs.
ALIASES = {"social_i_qa": "siqa", "ARC-Easy": "arc_e", "ARC-Challenge": "arc_c", "openbookqa": "obqa"}
FOLDERS = {v: k for k, v in ALIASES.items()}
REQUIRED_KEYS = ("instruction", "input", "output", "answer")


class DataError(UserError):
    """Bad or missing data, with a message that says which file and what to do."""


def canonical_subset(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in SUBSETS:
        raise DataError(f"unknown commonsense subset {name!r}; valid: {', '.join(SUBSETS)} "
                        f"(or LLM-Adapters names {', '.join(ALIASES)})")
    return name


def load_records(path: Path, task: str, prepare_hint: str) -> list[dict]:
    """A JSON list of LLM-Adapters records, each checked for the four keys."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task {task}: data file {path} not found; {prepare_hint}")
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty JSON list of records")
    for i, rec in enumerate(records):
        missing = [k for k in REQUIRED_KEYS if not isinstance(rec, dict) or k not in rec]
        if missing:
            raise DataError(f"{path}: record {i} lacks key(s) {', '.join(missing)} (need {', '.join(REQUIRED_KEYS)})")
    return records


def split_train_val(records: list, val_size: int, seed: int) -> tuple[list, list]:
    """The authors' split: random.seed(seed); random.shuffle(records); the last val_size are validation."""
    if val_size >= len(records):
        raise DataError(f"val_size={val_size} leaves no training data out of {len(records)} records")
    shuffled = list(records)
    random.seed(seed)
    random.shuffle(shuffled)
    return shuffled[:-val_size], shuffled[-val_size:]


def test_file(test_dir: Path, subset: str) -> Path:
    """<test_dir>/<subset>/test.json, under the canonical name or LLM-Adapters' folder name."""
    for folder in (subset, FOLDERS.get(subset, subset)):
        path = Path(test_dir) / folder / "test.json"
        if path.is_file():
            return path
    return Path(test_dir) / FOLDERS.get(subset, subset) / "test.json"

"""LLM-Adapters commonsense data: the training pool, the authors' validation split and the eight test sets."""

from __future__ import annotations

import random
from pathlib import Path

from hira.data.records import DataError

SUBSETS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
# LLM-Adapters' folder names for the subsets whose canonical name here differs.
ALIASES = {"social_i_qa": "siqa", "ARC-Easy": "arc_e", "ARC-Challenge": "arc_c", "openbookqa": "obqa"}
FOLDERS = {v: k for k, v in ALIASES.items()}
TEST_SUBSETS = SUBSETS
TRAIN_FILE = "commonsense_170k.json"


def prepare_hint(kind: str) -> str:
    return ("run `python scripts/prepare_data.py commonsense --src <LLM-Adapters folder with ft-training_set/ and "
            "dataset/>`")


def canonical_subset(name: str) -> str:
    name = ALIASES.get(name, name)
    if name not in SUBSETS:
        raise DataError(f"unknown commonsense subset {name!r}; valid: {', '.join(SUBSETS)} "
                        f"(or LLM-Adapters names {', '.join(ALIASES)})")
    return name


def split_train_val(records: list, val_size: int, seed: int) -> tuple[list, list]:
    """The authors' split: random.seed(seed); random.shuffle(records); the last val_size are validation."""
    if val_size < 1:
        raise DataError(f"task.val_size={val_size}: the validation loss needs at least 1 held-out example")
    if val_size >= len(records):
        raise DataError(f"val_size={val_size} leaves no training data out of {len(records)} records")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)  # the same order as random.seed(seed); random.shuffle(), minus the side effect
    return shuffled[:-val_size], shuffled[-val_size:]


def test_file(test_dir: Path, subset: str) -> Path:
    """<test_dir>/<subset>/test.json, under the canonical name or LLM-Adapters' folder name."""
    for folder in (subset, FOLDERS.get(subset, subset)):
        path = Path(test_dir) / folder / "test.json"
        if path.is_file():
            return path
    return Path(test_dir) / FOLDERS.get(subset, subset) / "test.json"

"""The prepared layout every task format shares: LLM-Adapters records in <data_dir>/<train file> and
<data_dir>/<subset>/test.json; the training file split into train/validation at load time; and the count lines a
prepare command reports."""

from __future__ import annotations

import random
from pathlib import Path

from hira.data.records import DataError


def split_train_val(records: list, val_size: int, seed: int) -> tuple[list, list]:
    """The authors' split: random.seed(seed); random.shuffle(records); the last val_size are validation."""
    if val_size < 1:
        raise DataError(f"task.val_size={val_size}: the validation loss needs at least 1 held-out example")
    if val_size >= len(records):
        raise DataError(f"val_size={val_size} leaves no training data out of {len(records)} records")
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)  # the same order as random.seed(seed); random.shuffle(), minus the side effect
    return shuffled[:-val_size], shuffled[-val_size:]


def test_file(test_dir: Path, subset: str, folders: dict | None = None) -> Path:
    """<test_dir>/<subset>/test.json, under the canonical name or its other folder name (`folders`: canonical ->
    folder, e.g. LLM-Adapters' social_i_qa for siqa); a missing file is named by its folder name."""
    folder = (folders or {}).get(subset, subset)
    for name in (subset, folder):
        path = Path(test_dir) / name / "test.json"
        if path.is_file():
            return path
    return Path(test_dir) / folder / "test.json"


def count(n: int, what: str) -> str:
    return f"{n:,} {what}"


def single(srcs: list, task: str) -> Path:
    """The one --src path a prepare command takes."""
    if len(srcs) != 1:
        raise DataError(f"{task}: --src takes one path, got {len(srcs)}")
    return Path(srcs[0])

"""Task data as the training loop and the evaluator see it: training/validation records and test sets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from hira.data import commonsense, synthetic


@dataclass
class TaskData:
    train: list
    val: list
    tests: dict = field(default_factory=dict)  # subset -> records


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def ensure_synthetic_files(task_cfg) -> None:
    """Write the synthetic task in LLM-Adapters layout into task.data_dir, once."""
    data_dir = Path(task_cfg.data_dir)
    if (data_dir / task_cfg.train_file).is_file():
        return
    train, tests = synthetic.make_splits(task_cfg.synthetic.train_per_subset, task_cfg.synthetic.test_per_subset,
                                         seed=task_cfg.synthetic.seed)
    for subset, records in tests.items():
        write_json_atomic(commonsense.test_file(data_dir, subset), records)
    write_json_atomic(data_dir / task_cfg.train_file, train)


def prepare_hint(task_cfg) -> str:
    if task_cfg.get("synthetic"):
        return "it is generated on first use; delete the folder to regenerate it"
    return (f"run `python scripts/prepare_data.py {task_cfg.name} --src <downloaded data>` "
            f"or set task.data_dir= to the folder that holds it")


def load_task(task_cfg, with_tests: bool = True) -> TaskData:
    if task_cfg.get("synthetic"):
        ensure_synthetic_files(task_cfg)
    data_dir, hint = Path(task_cfg.data_dir), prepare_hint(task_cfg)
    records = commonsense.load_records(data_dir / task_cfg.train_file, task_cfg.name, hint)
    train, val = commonsense.split_train_val(records, task_cfg.val_size, task_cfg.split_seed)
    tests = {}
    if with_tests:
        for subset in task_cfg.test_subsets:
            subset = commonsense.canonical_subset(subset)
            tests[subset] = commonsense.load_records(commonsense.test_file(data_dir, subset), task_cfg.name, hint)
    return TaskData(train, val, tests)

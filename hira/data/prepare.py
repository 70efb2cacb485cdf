"""Downloaded task files -> the prepared layout every task config reads: LLM-Adapters records in
<dest>/<train file> and <dest>/<subset>/test.json. Each function returns the lines of a count report."""

from __future__ import annotations

from pathlib import Path

from hira.data import commonsense, convai2, metamath
from hira.data.records import DataError, load_records
from hira.files import write_json_atomic

# The folder under data/ that each prepare command writes (gsm8k is MetaMath's test set).
TASK_FOLDERS = {"commonsense": "commonsense", "metamath": "metamath", "gsm8k": "metamath", "convai2": "convai2"}
COMMONSENSE_TRAIN = commonsense.TRAIN_FILE


def count(n: int, what: str) -> str:
    return f"{n:,} {what}"


def find_commonsense_sources(srcs: list) -> tuple[Path, dict]:
    """The training file and the eight test files among the given files and LLM-Adapters folders."""
    train, tests = None, {}
    for src in map(Path, srcs):
        if src.is_file():
            train = src
            continue
        if not src.is_dir():
            raise DataError(f"--src {src}: no such file or folder")
        for candidate in (src / COMMONSENSE_TRAIN, src / "ft-training_set" / COMMONSENSE_TRAIN):
            train = candidate if candidate.is_file() else train
        for base in (src, src / "dataset"):
            for subset in commonsense.SUBSETS:
                if (path := commonsense.test_file(base, subset)).is_file():
                    tests.setdefault(subset, path)
    if train is None:
        raise DataError(f"commonsense: no {COMMONSENSE_TRAIN} in --src {' '.join(map(str, srcs))}; pass the file "
                        f"itself or LLM-Adapters' folder holding ft-training_set/{COMMONSENSE_TRAIN}")
    missing = [commonsense.FOLDERS.get(s, s) for s in commonsense.SUBSETS if s not in tests]
    if missing:
        raise DataError(f"commonsense: no <subset>/test.json for {', '.join(missing)} under --src; pass "
                        f"LLM-Adapters' dataset/ folder")
    return train, tests


def prepare_commonsense(srcs: list, dest: Path, val_size: int = 120, seed: int = 58) -> list[str]:
    train_path, test_paths = find_commonsense_sources(srcs)
    records = load_records(train_path, "commonsense", "check the downloaded file")
    write_json_atomic(Path(dest) / COMMONSENSE_TRAIN, records)  # split at load time, so val_size stays a setting
    split = (f"{len(records) - val_size:,} train / {val_size} validation (random.seed({seed}), shuffle, last {val_size})"
             if len(records) > val_size else f"fewer than task.val_size={val_size}: lower it to train on this file")
    lines = [f"{COMMONSENSE_TRAIN}: {count(len(records), 'records')} -> {split}"]
    for subset, path in test_paths.items():
        tests = load_records(path, "commonsense", "check the downloaded file")
        write_json_atomic(commonsense.test_file(dest, subset), tests)
        lines.append(f"{subset}: {count(len(tests), 'test records')}")
    return lines


def prepare_metamath(srcs: list, dest: Path) -> list[str]:
    records = metamath.metamath_records(single(srcs, "metamath"))
    write_json_atomic(Path(dest) / metamath.TRAIN_FILE, records)
    return [f"{metamath.TRAIN_FILE}: {count(len(records), 'MetaMathQA training records')}"]


def prepare_gsm8k(srcs: list, dest: Path) -> list[str]:
    records = metamath.gsm8k_records(single(srcs, "gsm8k"))
    write_json_atomic(metamath.test_path(dest), records)
    return [f"gsm8k/test.json: {count(len(records), 'test records')}"]


def prepare_convai2(srcs: list, dest: Path) -> list[str]:
    src, lines = single(srcs, "convai2"), []
    for split, out in (("train", Path(dest) / convai2.TRAIN_FILE), ("test", convai2.test_path(dest))):
        path = convai2.split_file(src, split)
        dialogues = convai2.parse_self_original(path)
        records = convai2.dialogue_records(dialogues)
        write_json_atomic(out, records)
        lines.append(f"{split} ({path.name}): {count(len(dialogues), 'dialogues')}, "
                     f"{count(len(records), 'utterances')}")
    return lines


def single(srcs: list, task: str) -> Path:
    if len(srcs) != 1:
        raise DataError(f"{task}: --src takes one path, got {len(srcs)}")
    return Path(srcs[0])


PREPARERS = {"commonsense": prepare_commonsense, "metamath": prepare_metamath, "gsm8k": prepare_gsm8k,
             "convai2": prepare_convai2}


def prepare(task: str, srcs: list, out: Path) -> tuple[Path, list[str]]:
    """(the folder written, count lines) for `prepare_data.py <task> --src ... --out <out>`."""
    if task not in PREPARERS:
        raise DataError(f"unknown task {task!r}; valid: {', '.join(PREPARERS)}")
    dest = Path(out) / TASK_FOLDERS[task]
    return dest, PREPARERS[task](srcs, dest)

"""LLM-Adapters commonsense data: the training pool (commonsense_170k.json, split into train/validation at load
time) and the eight multiple-choice test sets of the paper's Table 1."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hira.data import layout, synthetic_world
from hira.data.formats.base import Preparer, TaskFormat, count
from hira.data.records import DataError, load_records
from hira.files import write_json_atomic
from hira.scoring.scorers import ChoiceScorer

NAME = "commonsense"
SUBSETS = ("boolq", "piqa", "siqa", "hellaswag", "winogrande", "arc_e", "arc_c", "obqa")
# LLM-Adapters' folder names for the subsets whose canonical name here differs.
ALIASES = {"social_i_qa": "siqa", "ARC-Easy": "arc_e", "ARC-Challenge": "arc_c", "openbookqa": "obqa"}
FOLDERS = {v: k for k, v in ALIASES.items()}
TRAIN_FILE = "commonsense_170k.json"
# The answer labels each subset's questions offer; the first one found in a response is its answer.
LABELS = {
    "boolq": ("true", "false"),
    "piqa": ("solution1", "solution2"),
    "siqa": tuple(f"answer{i}" for i in range(1, 6)),
    "arc_e": tuple(f"answer{i}" for i in range(1, 6)),
    "arc_c": tuple(f"answer{i}" for i in range(1, 6)),
    "obqa": tuple(f"answer{i}" for i in range(1, 6)),
    "hellaswag": tuple(f"ending{i}" for i in range(1, 5)),
    "winogrande": ("option1", "option2"),
}
# The paper's Table 1 columns, in its order.
COLUMNS = (("boolq", "BoolQ"), ("piqa", "PIQA"), ("siqa", "SIQA"), ("arc_c", "ARC-c"), ("arc_e", "ARC-e"),
           ("obqa", "OBQA"), ("hellaswag", "HellaS"), ("winogrande", "WinoG"), ("average", "Avg."))


def find_sources(srcs: list) -> tuple[Path, dict]:
    """The training file and the eight test files among the given files and LLM-Adapters folders."""
    train, tests = None, {}
    for src in map(Path, srcs):
        if src.is_file():
            train = src
            continue
        if not src.is_dir():
            raise DataError(f"--src {src}: no such file or folder")
        for candidate in (src / TRAIN_FILE, src / "ft-training_set" / TRAIN_FILE):
            train = candidate if candidate.is_file() else train
        for base in (src, src / "dataset"):
            for subset in SUBSETS:
                if (path := layout.test_file(base, subset, FOLDERS)).is_file():
                    tests.setdefault(subset, path)
    if train is None:
        raise DataError(f"commonsense: no {TRAIN_FILE} in --src {' '.join(map(str, srcs))}; pass the file "
                        f"itself or LLM-Adapters' folder holding ft-training_set/{TRAIN_FILE}")
    missing = [FOLDERS.get(s, s) for s in SUBSETS if s not in tests]
    if missing:
        raise DataError(f"commonsense: no <subset>/test.json for {', '.join(missing)} under --src; pass "
                        f"LLM-Adapters' dataset/ folder")
    return train, tests


def prepare_commonsense(srcs: list, dest: Path, val_size: int = 120, seed: int = 58) -> list[str]:
    train_path, test_paths = find_sources(srcs)
    records = load_records(train_path, "commonsense", "check the downloaded file")
    write_json_atomic(Path(dest) / TRAIN_FILE, records)  # split at load time, so val_size stays a setting
    split = (f"{len(records) - val_size:,} train / {val_size} validation (random.seed({seed}), shuffle, last {val_size})"
             if len(records) > val_size else f"fewer than task.val_size={val_size}: lower it to train on this file")
    lines = [f"{TRAIN_FILE}: {layout.count(len(records), 'records')} -> {split}"]
    for subset, path in test_paths.items():
        tests = load_records(path, "commonsense", "check the downloaded file")
        write_json_atomic(layout.test_file(dest, subset, FOLDERS), tests)
        lines.append(f"{subset}: {layout.count(len(tests), 'test records')}")
    return lines


@dataclass(frozen=True)
class SyntheticPerSubset:
    """task.synthetic: training and test records per subset of the synthetic world."""
    train_per_subset: int = count(1)
    test_per_subset: int = count(1)
    seed: int = count(0)


def write_synthetic(data_dir: Path, syn) -> None:
    train, tests = synthetic_world.make_splits(syn.train_per_subset, syn.test_per_subset, seed=syn.seed)
    for subset, records in tests.items():
        write_json_atomic(layout.test_file(data_dir, subset, FOLDERS), records)
    write_json_atomic(Path(data_dir) / TRAIN_FILE, train)


FORMAT = TaskFormat(
    name=NAME, subsets=SUBSETS, aliases=ALIASES, train_file=TRAIN_FILE, folder=NAME,
    preparers=(Preparer(NAME, prepare_commonsense, "<LLM-Adapters folder with ft-training_set/ and dataset/>"),),
    write_synthetic=write_synthetic, synthetic_settings=SyntheticPerSubset, scorer=ChoiceScorer(LABELS),
    table="table1", title="Table 1: commonsense reasoning accuracy (%)", columns=COLUMNS,
)

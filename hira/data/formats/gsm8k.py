"""Math word problems (the paper's Table 3): trained on MetaMathQA, tested on GSM8K, scored by the final number.

The one format with two names: the format is `gsm8k` (task.format, after its test set and score) while its
training data, task configs and data folder are named after MetaMathQA (task=metamath, data/metamath,
`prepare_data.py metamath`); hira/data/metamath_reader.py parses both downloads.
"""

from __future__ import annotations

from pathlib import Path

from hira.data import layout, metamath_reader, synthetic_math_dialogue
from hira.data.formats.base import Preparer, SyntheticSizes, TaskFormat
from hira.files import write_json_atomic
from hira.scoring.scorers import NumberScorer

NAME = "gsm8k"
TRAINING_DATA = "metamath"  # the task configs', data folder's and training prepare command's name
SUBSETS = ("gsm8k",)
TRAIN_FILE = "train.json"


def test_path(out_dir: Path) -> Path:
    return layout.test_file(out_dir, "gsm8k")


def prepare_metamath(srcs: list, dest: Path) -> list[str]:
    records = metamath_reader.metamath_records(layout.single(srcs, "metamath"))
    write_json_atomic(Path(dest) / TRAIN_FILE, records)
    return [f"{TRAIN_FILE}: {layout.count(len(records), 'MetaMathQA training records')}"]


def prepare_gsm8k(srcs: list, dest: Path) -> list[str]:
    records = metamath_reader.gsm8k_records(layout.single(srcs, "gsm8k"))
    write_json_atomic(test_path(dest), records)
    return [f"gsm8k/test.json: {layout.count(len(records), 'test records')}"]


def write_synthetic(data_dir: Path, syn) -> None:
    data_dir = Path(data_dir)
    train, test = synthetic_math_dialogue.write_math_sources(data_dir / "raw", syn.train_size, syn.test_size, syn.seed)
    prepare_gsm8k([test], data_dir)
    prepare_metamath([train], data_dir)  # the training file last: its presence marks a finished write


FORMAT = TaskFormat(
    name=NAME, subsets=SUBSETS, train_file=TRAIN_FILE, folder=TRAINING_DATA,
    preparers=(Preparer(TRAINING_DATA, prepare_metamath, "MetaMathQA-395K.json", writes=("train",)),
               Preparer(NAME, prepare_gsm8k, "<gsm8k test.json or test.jsonl>", writes=("test",))),
    write_synthetic=write_synthetic, synthetic_settings=SyntheticSizes, scorer=NumberScorer(), table="table3",
    title="Table 3: GSM8K accuracy (%)",
    columns=(("gsm8k", "GSM8K"),),
)

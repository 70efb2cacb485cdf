"""What a task format is: everything the pipeline knows about one kind of task, in one object.

A format names its test subsets (and their other names), its files in the prepared layout, the prepare
commands that write them, the synthetic stand-in, its scorer (hira/scoring/scorers.py: how its answers are
read, judged, summarised and printed) and which columns of the paper's tables it fills. The formats are registered in hira/data/formats/__init__.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hira.data import layout
from hira.data.records import DataError
from hira.scoring.scorers import Scorer

PREPARE_COMMAND = "python scripts/prepare_data.py"
KINDS = ("train", "test")  # the files a prepare command writes


@dataclass(frozen=True)
class Preparer:
    """One `prepare_data.py <command> --src ...`: downloaded files -> the prepared layout under data/<folder>."""

    command: str
    run: Callable[..., list]  # (srcs, dest) -> the lines of a count report
    src: str  # what --src takes, as the "run `prepare_data.py ...`" hint shows it
    writes: tuple = KINDS  # which of the format's files it writes

    def hint(self) -> str:
        return f"run `{PREPARE_COMMAND} {self.command} --src {self.src}`"


def count(minimum: int):
    """A field of a format's synthetic settings: an integer >= minimum (the range hira/config checks it against)."""
    return field(metadata={"bounds": {"ge": minimum}})


@dataclass(frozen=True)
class SyntheticSizes:
    """task.synthetic of a stand-in sized in examples: how many to write for training and for the test set."""
    train_size: int = count(1)
    test_size: int = count(1)
    seed: int = count(0)


@dataclass(frozen=True)
class TaskFormat:
    name: str  # task.format in the task configs
    subsets: tuple  # the test subsets, canonical names, in the paper's order
    train_file: str  # the training file's name in the prepared folder (task.train_file)
    folder: str  # data/<folder>: where its prepare commands write
    preparers: tuple  # Preparer, ...: together they write the training file and every test subset
    write_synthetic: Callable  # (data_dir, task.synthetic) -> None: the CPU stand-in, in the real files' layout
    synthetic_settings: type  # the dataclass declaring task.synthetic's keys, their types and ranges
    scorer: Scorer  # how its answers are read, judged, summarised and printed (hira/scoring/scorers.py)
    table: str  # the paper's table its scores fill
    title: str  # that table's title
    columns: tuple  # ((score key, header), ...) of that table, in the paper's order
    aliases: dict = field(default_factory=dict)  # another name of a subset (a download's folder) -> canonical

    @property
    def folders(self) -> dict:
        """canonical subset -> the folder name the downloads use for it."""
        return {canonical: other for other, canonical in self.aliases.items()}

    def canonical_subset(self, subset: str) -> str:
        name = self.aliases.get(subset, subset)
        if name not in self.subsets:
            others = f" (or {', '.join(self.aliases)})" if self.aliases else ""
            raise DataError(f"task.test_subsets: {subset!r} is not a {self.name} test set; valid: "
                            f"{', '.join(self.subsets)}{others}")
        return name

    def test_file(self, data_dir: Path, subset: str) -> Path:
        return layout.test_file(data_dir, subset, self.folders)

    def preparer(self, kind: str = "train") -> Preparer:
        """The prepare command that writes the format's `kind` file (train | test)."""
        return next(p for p in self.preparers if kind in p.writes)

    def prepare_hint(self, kind: str = "train") -> str:
        return self.preparer(kind).hint()

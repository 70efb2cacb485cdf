"""The task-format registry: the one place that lists the formats.

A format (hira/data/formats/base.py: TaskFormat) holds everything the pipeline knows about one kind of task:
its test subsets and their other names, its files, its prepare commands, its synthetic stand-in, how its
answers are scored and its paper-table columns. Loading (hira/data/tasks.py), preparing
(hira/data/prepare.py), scoring (hira/evaluation) and the paper's tables (hira/paper/tables.py) all read it
from here. Adding a format (a module here defining FORMAT, its entry below, and the pieces beside it): docs/extending.md.
"""

from __future__ import annotations

from hira.data.formats import commonsense, convai2, gsm8k
from hira.data.formats.base import Preparer, TaskFormat
from hira.data.records import DataError

# task.format -> its TaskFormat. The order is the precedence when a run was scored on subsets of two formats:
# it belongs to the first one's table.
FORMATS: dict[str, TaskFormat] = {f.name: f for f in (commonsense.FORMAT, gsm8k.FORMAT, convai2.FORMAT)}

__all__ = ["FORMATS", "Preparer", "TaskFormat", "get_format", "subset_format", "canonical_subset",
           "all_subsets", "preparers"]


def get_format(name: str) -> TaskFormat:
    if name not in FORMATS:
        raise DataError(f"task.format={name!r}; valid: {', '.join(FORMATS)}")
    return FORMATS[name]


def canonical_subset(subset: str) -> str:
    """A test subset's canonical name (`social_i_qa` -> `siqa`); an unknown name comes back unchanged."""
    for fmt in FORMATS.values():
        if subset in fmt.aliases:
            return fmt.aliases[subset]
    return subset


def subset_format(subset: str) -> TaskFormat | None:
    """The format a test subset (canonical or other name) belongs to, or None."""
    subset = canonical_subset(subset)
    return next((fmt for fmt in FORMATS.values() if subset in fmt.subsets), None)


def all_subsets() -> list[str]:
    return [subset for fmt in FORMATS.values() for subset in fmt.subsets]


def preparers() -> dict[str, tuple[TaskFormat, Preparer]]:
    """`prepare_data.py <command>` -> (its format, its Preparer), for every format's prepare commands."""
    return {p.command: (fmt, p) for fmt in FORMATS.values() for p in fmt.preparers}

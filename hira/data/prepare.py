"""Downloaded task files -> the prepared layout every task config reads: LLM-Adapters records in
<dest>/<train file> and <dest>/<subset>/test.json. The prepare commands are the task formats' (their preparers,
hira/data/formats); each returns the lines of a count report."""

from __future__ import annotations

from pathlib import Path

from hira.data import formats
from hira.data.records import DataError

# `prepare_data.py <task>` -> its function (srcs, dest) -> count lines, and the folder under data/ it writes
# (the format's: gsm8k is MetaMath's test set, so it goes to data/metamath).
PREPARERS = {command: preparer.run for command, (_, preparer) in formats.preparers().items()}
TASK_FOLDERS = {command: fmt.folder for command, (fmt, _) in formats.preparers().items()}


def prepare(task: str, srcs: list, out: Path) -> tuple[Path, list[str]]:
    """(the folder written, count lines) for `prepare_data.py <task> --src ... --out <out>`."""
    if task not in PREPARERS:
        raise DataError(f"unknown task {task!r}; valid: {', '.join(PREPARERS)}")
    dest = Path(out) / TASK_FOLDERS[task]
    return dest, PREPARERS[task](srcs, dest)

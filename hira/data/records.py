"""Reading and writing the record files every task is prepared into: LLM-Adapters JSON lists of
{"instruction", "input", "output", "answer"}, with errors that name the file, the record and what to do."""

from __future__ import annotations

import json
from pathlib import Path

from hira.errors import UserError

REQUIRED_KEYS = ("instruction", "input", "output", "answer")


class DataError(UserError):
    """Bad or missing data, with a message that says which file and what to do."""


def read_json_list(path: Path) -> list:
    """A non-empty JSON list from `path`; a syntax error names the line."""
    try:
        records = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(records, list) or not records:
        raise DataError(f"{path}: expected a non-empty JSON list of records")
    return records


def check_keys(path: Path, where: str, rec, keys: tuple) -> None:
    """`where` is "record 12" or "line 12": whatever lets the user find the bad record."""
    missing = [k for k in keys if not isinstance(rec, dict) or k not in rec]
    if missing:
        raise DataError(f"{path}: {where} lacks key(s) {', '.join(missing)} (need {', '.join(keys)})")


def load_records(path: Path, task: str, prepare_hint: str) -> list[dict]:
    """A JSON list of LLM-Adapters records, each checked for the four keys."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"task {task}: data file {path} not found; {prepare_hint}")
    records = read_json_list(path)
    for i, rec in enumerate(records):
        check_keys(path, f"record {i}", rec, REQUIRED_KEYS)
    return records

"""Scoring that survives a kill: each rank appends its decoded outputs, batch by batch, to its own file beside the
subset's rows, and a rerun of the same scoring decodes only the questions no file holds.

    predictions/<setting>/<name>/settings.json              what the rows were made under (refused if it differs)
    predictions/<setting>/<name>/<subset>.rank<R>.partial.jsonl  {"i": question index, "output": ...} per line
    predictions/<setting>/<name>/<subset>.jsonl             the scored rows, written once every question is decoded

Outputs are keyed by question index, so a rerun on another number of ranks reads every rank's file. A last line
cut by the kill (no newline) is dropped and its question decoded again; any other unreadable line is refused.
When a subset is complete rank 0 writes its rows and deletes the partial files.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from hira.errors import UserError
from hira.files import read_json, write_json_atomic, write_text_atomic

SETTINGS_FILE = "settings.json"
KILL_AFTER = "HIRA_TEST_KILL_AFTER_BATCHES"  # tests: SIGKILL this process once it has appended this many batches
appended_batches = 0


def partial_file(folder: Path, subset: str, rank: int) -> Path:
    return Path(folder) / f"{subset}.rank{rank}.partial.jsonl"


def partial_files(folder: Path, subset: str) -> list[Path]:
    return sorted(Path(folder).glob(f"{subset}.rank*.partial.jsonl"))


def subset_file(folder: Path, subset: str) -> Path:
    return Path(folder) / f"{subset}.jsonl"


def check_settings(folder: Path, record: dict) -> None:
    """Refuse a folder whose rows were made under another record (setting, engine, checkpoint); write the record
    into a new folder. Rank 0 only."""
    file = Path(folder) / SETTINGS_FILE
    if file.is_file():
        stored = read_json(file)
        if stored != record:
            changed = [f"{k}: {(stored or {}).get(k)} -> {v}" for k, v in record.items() if (stored or {}).get(k) != v]
            raise UserError(f"{file} says its predictions were made under other settings ({'; '.join(changed)}); "
                            f"delete {folder} to rescore under these")
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_json_atomic(file, record)


def damaged(file: Path, line_no: int, why: str) -> UserError:
    return UserError(f"{file}:{line_no}: damaged prediction row ({why}); delete {file} to rescore its questions")


def read_partial(file: Path, n: int) -> tuple[dict[int, str], int | None]:
    """({question index: output}, the length to cut the file to when the kill cut its last row short, else None)."""
    data = file.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    outputs = {}
    for line_no, line in enumerate(complete.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise damaged(file, line_no, f"not JSON: {e.msg}") from None
        if not (isinstance(row, dict) and isinstance(row.get("i"), int) and 0 <= row["i"] < n
                and isinstance(row.get("output"), str)):
            raise damaged(file, line_no, f"not {{\"i\": 0..{n - 1}, \"output\": text}}")
        outputs.setdefault(row["i"], row["output"])
    return outputs, (len(complete) if len(complete) < len(data) else None)


def cut_short(file: Path, length: int) -> None:
    """Drop a row the kill cut short (its question is decoded again)."""
    with file.open("r+b") as f:
        f.truncate(length)


def read_subset_rows(file: Path, n: int, mode: str) -> dict[int, str]:
    """The outputs of a finished subset file (its rows hold them: the generation, or the chosen option)."""
    outputs = {}
    lines = file.read_text().splitlines()
    for line_no, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            outputs[line_no - 1] = row["prediction" if mode == "loglik" else "generation"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise damaged(file, line_no, f"{type(e).__name__}: {e}") from None
    if len(outputs) != n:
        raise UserError(f"{file} holds {len(outputs)} rows, this setting scores {n} questions; delete {file} to "
                        f"rescore it")
    return outputs


def kept_outputs(folder: Path, subset: str, n: int, mode: str) -> tuple[dict[int, str], list]:
    """Every output an earlier scoring of this subset wrote (all of a finished subset, or the partial files'), and
    the repairs to make once every file has been read: (file, length) of each last row cut short."""
    finished = subset_file(folder, subset)
    if finished.is_file():
        return read_subset_rows(finished, n, mode), []
    kept, repairs = {}, []
    for file in partial_files(folder, subset):
        outputs, cut = read_partial(file, n)
        for i, output in outputs.items():
            kept.setdefault(i, output)
        if cut is not None:
            repairs.append((file, cut))
    return kept, repairs


class Appender:
    """One rank's partial file of a subset, appended and flushed a batch at a time (a kill loses one batch)."""

    def __init__(self, folder: Path, subset: str, rank: int):
        self.file = partial_file(folder, subset, rank)

    def add(self, indices: list[int], outputs: list[str]) -> None:
        if not indices:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps({"i": i, "output": o}, ensure_ascii=False) + "\n" for i, o in zip(indices, outputs))
        with self.file.open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
        killed_for_a_test()


def killed_for_a_test() -> None:
    """A real kill at a chosen point, for tests of the resume (unset: nothing happens)."""
    global appended_batches
    appended_batches += 1
    if os.environ.get(KILL_AFTER) and appended_batches >= int(os.environ[KILL_AFTER]):
        os.kill(os.getpid(), signal.SIGKILL)


def finish_subset(folder: Path, subset: str, rows: list[dict]) -> None:
    """Write the subset's rows (atomically) and delete its partial files. Rank 0 only."""
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_text_atomic(subset_file(folder, subset), text)
    for file in partial_files(folder, subset):
        file.unlink()

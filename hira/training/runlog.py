"""metrics.jsonl: one JSON line per training log or evaluation event, written by rank 0 only."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled, self.start = Path(path), enabled, time.time()

    def write(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": event, **fields, "time_s": round(time.time() - self.start, 3)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def parse_lines(text: str) -> list[dict]:
    """Events of a metrics file; a line half-written when the process was killed is skipped."""
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def read_metrics(path: Path) -> list[dict]:
    path = Path(path)
    return parse_lines(path.read_text()) if path.is_file() else []


def truncate_after(path: Path, step: int) -> None:
    """Drop the events a resumed run will redo (those after `step`, and any "end"), replacing the file atomically."""
    kept = [e for e in read_metrics(path) if e.get("step", 0) <= step and e["event"] != "end"]
    tmp = Path(path).with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(e) + "\n" for e in kept))
    os.replace(tmp, path)

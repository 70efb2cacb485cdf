"""metrics.jsonl: one JSON line per training log or evaluation event, written by rank 0 only."""

from __future__ import annotations

import json
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


def read_metrics(path: Path) -> list[dict]:
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

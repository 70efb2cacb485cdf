"""Atomic file writes (a reader, or a run resumed after a kill, never sees half a file) and file digests.

Standard library only: benchmarks/gpu_check.py imports it before the project's requirements are installed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write beside `path` under a hidden temporary name, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1))


def read_json(path: str | Path, default=None):
    """The file's JSON value, or `default` when it is missing or not valid JSON (a marker written by an older
    version, or half a file from before writes were atomic)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (model files are hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

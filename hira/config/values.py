"""Checks of one config value beyond its type and range (schema.py's `checked(...)`, run by pydantic after the type).

Each returns None for a valid value, else what is wrong and what is valid; the caller puts `key=value: ` before it.
"""

from __future__ import annotations

import re
from pathlib import Path

DEVICE = re.compile(r"(cpu|cuda|mps|xpu)(:\d+)?")
CHECKPOINT = re.compile(r"best|all|step_\d+")


def existing_file(path: str) -> str | None:
    if Path(path).expanduser().is_file():
        return None
    return f"no such file (looked in {Path(path).expanduser().resolve()}); valid: a path to an existing file"


def pair(items) -> str | None:
    return None if len(items) == 2 else "valid: two numbers, [beta1,beta2]"


def device(name: str) -> str | None:
    return None if DEVICE.fullmatch(name) else "valid: cpu, cuda, cuda:N (a torch device)"


def checkpoint_choice(which: str) -> str | None:
    return None if CHECKPOINT.fullmatch(which) else "valid: best, all or step_<N>"


PEFT_CONFIG = "adapter_config.json"


def peft_folder(path: str) -> str | None:
    if (Path(path).expanduser() / PEFT_CONFIG).is_file():
        return None
    return (f"no {PEFT_CONFIG} there; valid: a folder written by peft's save_pretrained "
            f"(or hira.adapters.export_peft)")

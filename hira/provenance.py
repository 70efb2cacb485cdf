"""Where a run's numbers came from: the code's git commit (and whether the checkout had uncommitted changes), the
SHA-256 of every data file it read, the library versions and the hardware. Plain dicts, for a run's result record.

Ground floor, standard library and torch only: nothing here reads a run folder or a config beyond the device.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from hira import distributed
from hira.checkout import CHECKOUT
from hira.files import sha256

LIBRARIES = ("torch", "transformers", "peft", "deepspeed")


def git_state(checkout: str | Path = CHECKOUT) -> dict:
    """{"commit": the checked-out commit, "dirty": whether a tracked file differs from it}; both None when the
    folder is no git checkout or git cannot be run. Files git does not track (run outputs, caches) do not count."""
    commit = _git(checkout, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    changes = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if changes is None else bool(changes)}


def _git(checkout, *args) -> str | None:
    """git's stripped output, or None when it fails (not a checkout, no git, a broken repository)."""
    try:
        proc = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def file_hashes(files: dict[str, str | Path]) -> dict[str, dict]:
    """{role: {"path", "sha256"}} of each file (e.g. tasks.run_data_files: train, validation, test/<subset>)."""
    return {role: {"path": str(path), "sha256": sha256(path)} for role, path in files.items()}


def library_versions() -> dict[str, str | None]:
    """python's and each library's version (None for one not installed)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info(device: str = "cuda", world_size: int | None = None) -> dict:
    """The accelerator the run used (the CPU's name on device=cpu or without CUDA), how many this machine has, and
    the number of processes."""
    on_gpu = device != "cpu" and torch.cuda.is_available()
    return {"device": torch.cuda.get_device_name(0) if on_gpu else (platform.processor() or platform.machine()),
            "device_count": torch.cuda.device_count() if on_gpu else 1,
            "world_size": distributed.world_size() if world_size is None else world_size}


def provenance(cfg, data_files: dict[str, str | Path], world_size: int | None = None) -> dict:
    """The provenance part of a run's result record."""
    return {"git": git_state(), "data": file_hashes(data_files), "libraries": library_versions(),
            **device_info(cfg.hardware.device, world_size)}

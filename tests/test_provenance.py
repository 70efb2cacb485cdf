"""hira/provenance.py: where a run's numbers came from (the code's commit and dirty flag, the data files' hashes,
the library versions, the hardware), and hira/data/tasks.py's list of the data files a run reads."""

import hashlib
import platform
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import ROOT, common_overrides, compose_config

from hira import provenance
from hira.data import tasks


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git checkout with one committed file."""
    git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    git(tmp_path, "add", "code.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    return tmp_path


def test_the_commit_and_the_dirty_flag(repo):
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert provenance.git_state(repo) == {"commit": head.strip(), "dirty": False}
    (repo / "notes.txt").write_text("an untracked file: a run output, not a code change\n")
    assert provenance.git_state(repo)["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")  # a tracked file changed
    assert provenance.git_state(repo) == {"commit": head.strip(), "dirty": True}


def test_no_checkout_or_no_git_gives_none_and_never_fails(tmp_path, monkeypatch):
    assert provenance.git_state(tmp_path / "absent") == {"commit": None, "dirty": None}
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}  # a folder outside any checkout
    monkeypatch.setenv("PATH", "")  # git cannot be found
    assert provenance.git_state(ROOT) == {"commit": None, "dirty": None}


def test_file_hashes_are_the_files_sha256(tmp_path):
    files = {"train": tmp_path / "train.json", "test/boolq": tmp_path / "test.json"}
    files["train"].write_bytes(b"[1, 2]" * 100_000)
    files["test/boolq"].write_bytes(b"")
    assert provenance.file_hashes(files) == {
        role: {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for role, path in files.items()}


def test_library_versions_and_device():
    versions = provenance.library_versions()
    assert set(versions) == {"python", "torch", "transformers", "peft", "deepspeed"}
    assert versions["python"] == platform.python_version() and versions["torch"] == torch.__version__
    assert all(versions.values())  # all installed here
    assert provenance.device_info("cpu") == {"device": platform.processor() or platform.machine(),
                                             "device_count": 1, "world_size": 1}
    assert provenance.device_info("cpu", world_size=4)["world_size"] == 4


def run_config(workdir, *overrides):
    return compose_config([*common_overrides(workdir), *overrides])


def test_the_data_files_are_the_files_a_run_reads(workdir, monkeypatch):
    cfg = run_config(workdir)
    read = []
    load_records = tasks.load_records
    monkeypatch.setattr(tasks, "load_records", lambda path, *a: read.append(Path(path)) or load_records(path, *a))
    monkeypatch.setattr(tasks, "_TEST_CACHE", {})  # every test file read again
    data = tasks.load_run_inputs(cfg)
    files = tasks.run_data_files(cfg)
    assert set(read) == set(files.values())
    assert files["train"] == files["validation"] == data.train_file
    assert sorted(files) == sorted(["train", "validation", *(f"test/{s}" for s in data.tests)])
    assert tasks.run_data_files(run_config(workdir, "evaluate_after_training=false")) == \
        {"train": data.train_file, "validation": data.train_file}

    record = provenance.provenance(cfg, files)
    assert record["data"]["test/" + next(iter(data.tests))]["sha256"] == \
        hashlib.sha256(files["test/" + next(iter(data.tests))].read_bytes()).hexdigest()
    assert record["git"] == provenance.git_state(ROOT) and record["git"]["commit"]
    assert record["libraries"] == provenance.library_versions() and record["world_size"] == 1

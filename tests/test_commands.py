"""The console commands: every [project.scripts] entry is a main(argv=None) in the package that returns an exit
status, and every scripts/*.py is a thin wrapper of one, with no sys.path edits (the package is installed)."""

import ast
import importlib
import json
import subprocess
import sys
import tomllib

import pytest
from conftest import ROOT

ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
SCRIPTS = sorted(ROOT.glob("scripts/*.py"))


def entry_main(target: str):
    module, _, name = target.partition(":")
    return importlib.import_module(module), name


def test_each_command_is_a_main_in_the_package():
    assert set(ENTRY_POINTS) == {"hira-make-tables", "hira-compare", "hira-prepare-data", "hira-analyze-updates",
                                 "hira-count-params", "hira-bench-adapters", "hira-bench-eval", "hira-gpu-check",
                                 "hira-sweep-select"}
    for command, target in ENTRY_POINTS.items():
        module, name = entry_main(target)
        assert name == "main" and callable(module.main), command


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_script_calls_one_command_and_edits_no_path(script):
    source = script.read_text()
    imported = [node for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)]
    assert [(node.module, [a.name for a in node.names]) for node in imported] == [(imported[0].module, ["main"])]
    assert f"{imported[0].module}:main" in ENTRY_POINTS.values()
    assert "sys.path" not in source and len(source.splitlines()) <= 5


@pytest.mark.slow
@pytest.mark.parametrize("script", ["make_tables", "prepare_data", "compare"])
def test_a_script_runs_from_the_command_line(script):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and f"hira-{script.replace('_', '-')}" in proc.stdout, proc.stderr


@pytest.mark.slow
def test_gpu_check_imports_nothing_its_install_step_must_bring():
    # --install runs on a machine that has none of the requirements yet: only the standard library may load first
    probe = "import json, sys, benchmarks.gpu_check; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                                       cwd=ROOT).stdout)
    assert "hira" in loaded and not {"torch", "omegaconf", "hydra", "transformers", "deepspeed"} & set(loaded)


def test_gpu_check_main_returns_an_exit_status(tmp_path):
    from benchmarks.gpu_check import main

    status = main(["--device", "cpu", "--small", "--budget-s", "0", "--out", str(tmp_path / "check.json")])
    assert status == 1  # every section skipped: not a pass
    assert json.loads((tmp_path / "check.json").read_text())["sections"]["run"]["status"] == "skipped"

"""The package as `pip install .` (not -e) leaves it: the wheel holds hira/ and benchmarks/ with every console
command's module and the package data; the pipeline itself runs from a checkout, so without one the commands that
compose configs stop with one line saying so (README, "Set up and run")."""

import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow  # pip builds a wheel in a subprocess

ENTRY_POINTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """site/: the built wheel unpacked, as pip installs a pure-Python wheel. Built from a copy of the sources so
    setuptools' build/ and egg-info folders stay out of the checkout."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    for name in ("hira", "benchmarks"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(tmp / "dist"), str(src)], check=True, timeout=300)
    site = tmp / "site"
    with zipfile.ZipFile(next((tmp / "dist").glob("hira-*.whl"))) as wheel:
        wheel.extractall(site)
    return site


def test_the_wheel_holds_every_command_and_the_package_data(installed):
    for command, target in ENTRY_POINTS.items():
        module = target.partition(":")[0]
        assert (installed / (module.replace(".", "/") + ".py")).is_file(), command
    assert (installed / "hira" / "paper" / "numbers.yaml").is_file()  # hira-make-tables' paper numbers
    assert not (installed / "configs").exists()  # the checkout's, not the package's


def test_a_command_that_needs_the_checkout_says_so_in_one_line(installed, tmp_path):
    probe = ("import hira, sys; assert hira.__file__.startswith(sys.argv[1]), hira.__file__; "
             "from hira.commands.count_params import main; main(['method=lora'])")
    proc = subprocess.run([sys.executable, "-c", probe, str(installed)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={"PYTHONPATH": str(installed), "PATH": ""})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "the pipeline runs from a git checkout" in proc.stderr
    assert "pip install -e ." in proc.stderr

"""Every third-party module that hira/ and benchmarks/ import belongs to a distribution pyproject.toml declares
(in `dependencies` or an extra): a package that arrives only as another package's dependency can vanish with it.
Every import counts, including the ones inside functions (matplotlib is imported where a figure is drawn)."""

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from conftest import ROOT

OWN_PACKAGES = ("hira", "benchmarks")


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in `path` (`import a.b`, `from a.b import c` -> a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def third_party_imports(root: Path, packages=OWN_PACKAGES) -> dict[str, set[str]]:
    """{top-level module: the files (relative to root) importing it} for the non-stdlib, non-own imports."""
    found: dict[str, set[str]] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for name in top_level_imports(path):
                if name not in sys.stdlib_module_names and name not in packages:
                    found.setdefault(name, set()).add(str(path.relative_to(root)))
    return found


def normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them: PyYAML, pyyaml and py_yaml are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(pyproject: Path) -> set[str]:
    """The distributions pyproject.toml declares: its dependencies and every extra's, normalized."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [*project.get("dependencies", []),
                    *(r for extra in project.get("optional-dependencies", {}).values() for r in extra)]
    return {normalized(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", r).group(1)) for r in requirements}


def undeclared_imports(root: Path, distributions: dict[str, list[str]] | None = None) -> list[str]:
    """One line per imported module that no declared distribution provides (or no installed one at all)."""
    distributions = packages_distributions() if distributions is None else distributions
    declared = declared_distributions(root / "pyproject.toml")
    problems = []
    for module, files in sorted(third_party_imports(root).items()):
        providers = distributions.get(module, [])
        if not any(normalized(d) in declared for d in providers):
            provided = f"provided by {', '.join(sorted(set(providers)))}" if providers else "not installed"
            problems.append(f"{module} ({provided}) imported by {', '.join(sorted(files))}: "
                            f"declare its distribution in pyproject.toml")
    return problems


def test_every_third_party_import_is_declared():
    assert not undeclared_imports(ROOT), "\n".join(undeclared_imports(ROOT))


def test_the_imports_are_read():
    # A walker that found nothing would pass the check above: the lazy and the optional imports are seen.
    imports = third_party_imports(ROOT)
    assert "hira/paper/figures.py" in imports["matplotlib"]  # inside a function
    assert "hira/training/runlog.py" in imports["wandb"]  # declared by the test extra only
    assert {"torch", "transformers", "peft", "deepspeed"} <= set(imports)
    assert not {"os", "json", "hira", "benchmarks"} & set(imports)


def test_an_undeclared_import_is_named(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["pyYAML>=6", "torch"]\n'
        '[project.optional-dependencies]\nplots = ["matplotlib"]\n')
    (tmp_path / "hira").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "hira" / "a.py").write_text(
        "import os, yaml\nfrom . import b\nfrom hira import c\nimport torch.nn\n"
        "def plot():\n    import matplotlib.pyplot\n    import scipy.stats\n")
    (tmp_path / "benchmarks" / "b.py").write_text("from not_installed_anywhere import thing\n")
    distributions = {"yaml": ["PyYAML"], "torch": ["torch"], "matplotlib": ["matplotlib"], "scipy": ["scipy"]}
    assert undeclared_imports(tmp_path, distributions) == [
        "not_installed_anywhere (not installed) imported by benchmarks/b.py: "
        "declare its distribution in pyproject.toml",
        "scipy (provided by scipy) imported by hira/a.py: declare its distribution in pyproject.toml",
    ]

"""The task-format registry (hira/data/formats): every format is complete, and the registry is the one place that
lists them; the pieces a format needs beside its module: docs/extending.md (tests/test_registry_completeness.py)."""

import ast
import dataclasses
import importlib
from pathlib import Path

import pytest
import yaml
from helpers import write_run

from hira.data import formats
from hira.data.formats.base import KINDS, Preparer, TaskFormat
from hira.evaluation import answers, console, evaluator
from hira.scoring.scorers import Scorer
from hira.paper import tables

ROOT = Path(__file__).resolve().parents[1]
HIRA = ROOT / "hira"
FORMATS_DIR = HIRA / "data" / "formats"


@pytest.mark.parametrize("name", list(formats.FORMATS))
def test_every_format_is_complete(name):
    fmt = formats.FORMATS[name]
    assert isinstance(fmt, TaskFormat) and fmt.name == name
    assert fmt.subsets and all(isinstance(s, str) and s for s in fmt.subsets)
    assert len(set(fmt.subsets)) == len(fmt.subsets)
    assert set(fmt.aliases.values()) <= set(fmt.subsets), "an alias names a subset the format does not have"
    assert fmt.train_file and fmt.folder
    assert isinstance(fmt.scorer, Scorer) and fmt.scorer.name
    if fmt.scorer.loglik:
        assert set(fmt.scorer.labels) == set(fmt.subsets), "a choice format needs the answer labels of every subset"
        assert all(labels and all(isinstance(label, str) and label for label in labels)
                   for labels in fmt.scorer.labels.values())
    assert fmt.table and fmt.columns
    assert all(isinstance(key, str) and isinstance(header, str) and header for key, header in fmt.columns)
    if fmt.scorer.extracts:  # accuracy formats: one column per subset
        assert set(fmt.subsets) <= {key for key, _ in fmt.columns}
    assert fmt.preparers and all(isinstance(p, Preparer) and callable(p.run) and p.command and p.src
                                 for p in fmt.preparers)
    for kind in KINDS:  # some prepare command writes the training file and the test files
        assert fmt.prepare_hint(kind).startswith("run `")
    assert callable(fmt.write_synthetic)


def test_formats_do_not_overlap():
    fmts = list(formats.FORMATS.values())
    subsets = [s for f in fmts for s in f.subsets]
    aliases = [a for f in fmts for a in f.aliases]
    commands = [p.command for f in fmts for p in f.preparers]
    for names in (subsets, aliases, commands, [f.table for f in fmts]):
        assert len(set(names)) == len(names)
    assert not set(aliases) & set(subsets)


def test_every_task_config_names_a_registered_format():
    configs = sorted((ROOT / "configs" / "task").glob("*.yaml"))
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text())
        task = cfg.get("task", cfg)  # the synthetic stand-ins are @package _global_
        assert task["format"] in formats.FORMATS, path.name
        fmt = formats.FORMATS[task["format"]]
        assert [fmt.canonical_subset(s) for s in task["test_subsets"]], path.name


def test_the_registry_lists_each_format_module_once():
    """One module per format in hira/data/formats, each defining FORMAT, each registered exactly once."""
    modules = sorted(p.stem for p in FORMATS_DIR.glob("*.py") if p.stem not in ("__init__", "base"))
    registered = sorted(f.write_synthetic.__module__.rpartition(".")[2] for f in formats.FORMATS.values())
    assert registered == modules
    for module in modules:
        assert "FORMAT = TaskFormat(" in (FORMATS_DIR / f"{module}.py").read_text(), module


def format_name_literals(node) -> list[str]:
    """The format names among the string constants of a tuple/list/set/dict literal (a dict's keys)."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        elements = node.elts
    elif isinstance(node, ast.Dict):
        elements = [k for k in node.keys if k is not None]
    else:
        return []
    return [e.value for e in elements if isinstance(e, ast.Constant) and e.value in formats.FORMATS]


def format_tables(root: Path) -> list[str]:
    """Every tuple, list, set or dict literal naming two or more formats in the .py files under root, outside
    hira/data/formats."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if FORMATS_DIR in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = format_name_literals(node)
            if len(set(names)) >= 2:
                found.append(f"{path.relative_to(root.parent)}:{node.lineno}: {names}")
    return found


def test_no_format_table_outside_the_registry():
    """A literal naming two or more formats outside hira/data/formats is a parallel table that a new format
    would have to be added to: read the registry instead."""
    found = format_tables(HIRA)
    assert not found, "format names listed outside hira/data/formats:\n" + "\n".join(found)


def test_a_format_table_is_found(tmp_path):
    (tmp_path / "hira").mkdir()
    (tmp_path / "hira" / "old.py").write_text('FORMATS = {"commonsense": 1, "gsm8k": 2}\nONE = ("convai2",)\n')
    assert format_tables(tmp_path / "hira") == ["hira/old.py:1: ['commonsense', 'gsm8k']"]


def test_the_readers_follow_the_registry():
    # What the evaluator and the tables used to keep in their own tables, now the formats'.
    assert list(console.TABLE1) == [k for k, _ in formats.FORMATS["commonsense"].columns if k != "average"]
    assert answers.extract_answer("social_i_qa", "the correct answer is answer3") == "answer3"
    assert answers.is_correct("gsm8k", "18", "18.0")
    for fmt in formats.FORMATS.values():
        assert tables.COLUMNS[fmt.table] == list(fmt.columns)
        for subset in fmt.subsets:
            assert evaluator.subset_scorer(subset) is fmt.scorer
        for alias in fmt.aliases:
            assert evaluator.subset_scorer(alias) is fmt.scorer


def test_a_new_format_is_one_registry_entry(monkeypatch, tmp_path):
    """A format added to the registry is scored and tabled by its entry alone: its subsets get its scorer, and a run
    scored on them lands in a table of its own, titled and with columns from the entry."""
    toy = dataclasses.replace(formats.FORMATS["gsm8k"], name="toy", subsets=("toy_math",),
                              aliases={"ToyMath": "toy_math"}, table="table99", title="Table 99: toy math",
                              columns=(("toy_math", "Toy"),))
    monkeypatch.setitem(formats.FORMATS, "toy", toy)
    assert evaluator.subset_scorer("ToyMath").name == "number"
    fresh = importlib.reload(tables)  # the tables read the registry when imported, as they would a real entry
    try:
        write_run(tmp_path / "toy_run", ["task.format=toy"], subsets=["toy_math"], accuracy=0.25, n=40)
        markdown = fresh.make_tables(tmp_path).markdown
    finally:
        monkeypatch.undo()
        importlib.reload(tables)
    section = markdown.split("Table 99: toy math")[1]
    header = next(line for line in section.splitlines() if line.startswith("|"))
    assert "| Toy |" in header and "25.00" in section

"""The paper's setting: its numbers (numbers.yaml), which table a run belongs to, and every way a run's setting
differs from the paper's, which decides whether a group is compared with the paper's row (a "Δ vs paper" row) or
only stands beside it. Settings are written as the tables' labels write them."""

from __future__ import annotations

from pathlib import Path

import yaml

from hira.data import formats
from hira.evaluation.result import N_QUESTIONS
from hira.paper.runs import Run

NUMBERS_FILE = Path(__file__).with_name("numbers.yaml")
REFERENCE_MODEL = "llama3_8b"
MODEL_NAMES = {"llama3_8b": "Llama-3-8B", "llama2_7b": "Llama-2-7B"}
COMMONSENSE_TABLES = ("table4", "table5", "table6")  # ablations on Table 1's task


def load_paper_numbers(path: Path = NUMBERS_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def task_table(run: Run) -> str | None:
    """Which main table a scored run belongs to: its test subsets' format's (the first registered one's, if it was
    scored on subsets of two formats)."""
    scored = {fmt.name for s in run.subsets if (fmt := formats.subset_format(s))}
    return next((fmt.table for fmt in formats.FORMATS.values() if fmt.name in scored), None)


def table_format(table: str):
    """The task format a score table reports (Tables 4-6 are ablations on Table 1's task)."""
    table = "table1" if table in COMMONSENSE_TABLES else table
    return next(fmt for fmt in formats.FORMATS.values() if fmt.table == table)


# --- settings as the reader sees them ---------------------------------------------------------------------

UNSET = "unset"  # a setting a run's config does not have (written before the key existed)


def fmt_setting(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(fmt_setting(v) for v in value) + "]"
    return str(value)


def setting_text(key: str, value) -> str:
    """ "max_steps 2", "questions 2/subset", "task.data_dir data/synthetic_mini": one setting, as a label names it."""
    if key == N_QUESTIONS and value != UNSET:
        counts = dict(value)
        if len(set(counts.values())) == 1:
            return f"questions {next(iter(counts.values()))}/subset"
        return "questions " + " ".join(f"{subset} {n}" for subset, n in counts.items())
    return f"{key.removeprefix('train.')} {fmt_setting(value)}"


# --- how a run differs from the paper's setting ----------------------------------------------------------

def basic_gaps(run: Run, table: str, paper: dict) -> list[str]:
    """What makes a run incomparable with the paper's numbers whatever its schedule: model, data, machine."""
    gaps = []
    if run.model not in paper.get(table, {}):
        gaps.append(f"model {run.model}")
    if run.synthetic:
        gaps.append(f"synthetic task {run.task}")
    if table == "table12":
        gaps.append("time and memory depend on the machine; the paper's ran on one A100 80G, batch 72, 3 epochs")
    return gaps


def paper_gaps(run: Run, table: str, paper: dict) -> list[str]:
    """Every way the run's setting differs from the paper's ([]: the paper's setting)."""
    return basic_gaps(run, table, paper) + detail_gaps(run, table, paper)


def detail_gaps(run: Run, table: str, paper: dict) -> list[str]:
    """How a run on the paper's model and data differs from the paper's test sets and schedule."""
    if table == "table12":
        return []
    setting, fmt = paper["setting"], table_format(table)
    gaps = []
    scored = dict(run.settings.get(N_QUESTIONS, ()))
    if any(scored.get(s) != setting["test_questions"].get(s) for s in fmt.subsets):
        gaps.append(f"not the whole test sets ({setting_text(N_QUESTIONS, scored.items()) if scored else 'none'})")
    if not run.trained:
        return gaps + ["not trained (scoring only)"]
    schedule = {**setting["schedule"], "train.epochs": setting["epochs"][fmt.name],
                "task.max_new_tokens": setting["max_new_tokens"][fmt.name]}
    for key, want in schedule.items():
        got = run.settings.get(key)
        if key not in run.settings or got != want:
            gaps.append(f"{setting_text(key, got)} (paper {fmt_setting(want)})")
    return gaps

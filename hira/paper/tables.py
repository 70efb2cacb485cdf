"""The paper's tables regenerated from finished runs: mean ± std over seeds, and the paper's numbers in rows of
their own.

Runs average together only when their settings are equal (hira/paper/runs.py: the resolved config.yaml minus the
keys that cannot change a score, plus the questions scored); a group keeps one run per seed, the newest. Each
table has one section per (model, task). Where the groups of a section differ in a setting, the "setting" column
names each group's value of it (a short tag, spelled out under the section, where one would be long). The paper's
rows close each section, once: a "Δ vs paper" row under a group compares with them only where the group's setting
is the paper's (hira/paper/setting.py); elsewhere they are a reference. A column a run did not score shows "—",
never a zero. This module fills the tables; hira/paper/render.py writes them (Markdown, LaTeX) and
hira/paper/figures.py draws Figure 6 and the accuracy-against-cost plots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from hira.adapters import all_methods
from hira.data import formats
from hira.errors import UserError
from hira.evaluation.result import N_QUESTIONS, SCORED_AS
from hira.paper.compare import block_against_reference
from hira.paper.figures import plot_pareto, plot_rank_sweep
from hira.paper.lr_sweep import TuningRun, choose, chosen_runs, tuning_runs
from hira.paper.render import COST_COLUMNS, DELTA, LABELS, OURS, PAPER, Row, Section, Table, cell_stats, label_cells, \
    to_latex, to_markdown
from hira.paper.runs import Run, Skipped, find_runs, seeds_oldest_first
from hira.paper.setting import MODEL_NAMES, REFERENCE_MODEL, UNSET, basic_gaps, detail_gaps, \
    load_paper_numbers, paper_gaps, setting_text, table_format, task_table

# The paper's row order, then the registered methods it does not list, alphabetically.
PAPER_ORDER = ["base", "full", "prompt_tuning", "p_tuning", "lora", "dora", "vera", "mora", "rasa", "lora_dash",
               "hira_rand", "hilora", "hira"]
METHOD_ORDER = PAPER_ORDER + [m for m in all_methods() if m not in PAPER_ORDER]
PLACEMENT_ORDER = ["FC+QKV", "FC", "QV", "QKV", "QK", "V", "Q", "K"]  # Table 5
PAPER_PLACEMENTS = ("FC+QKV", "")  # the paper's numbers are for all five modules (or methods without modules)
LOSS_ON_ORDER = ["response", "full"]  # the authors' masking first, then LLM-Adapters' (the baselines' numbers)

# The task tables' columns are their formats' (hira/data/formats): table1 commonsense, table2 convai2, table3 gsm8k.
COLUMNS = {
    **{fmt.table: list(fmt.columns) for fmt in formats.FORMATS.values()},
    "table12": [("peak_memory_gb", "Peak memory (GB)"), ("train_time_s", "Train time")],
}
TASK_TABLES = sorted(fmt.table for fmt in formats.FORMATS.values())  # one per format: table1, table2, table3
TITLES = {
    **{fmt.table: fmt.title for fmt in formats.FORMATS.values()},
    "table4": "Table 4: HiRA vs HiRA-rand (R ~ U[0,1] in place of W0)",
    "table5": "Table 5: HiRA target-module placement",
    "table6": "Table 6: HiLoRA, ΔW = W0⊙(B1A1) + B2A2, r1 + r2 = 32",
    "table12": "Table 12: peak memory and training time",
}


# --- settings as the reader sees them ---------------------------------------------------------------------

# Settings the table shows elsewhere: the section (model, task), the method and r columns, and the label columns.
ROW_KEYS = {"model.name", "task.name", "method.name", "method.params.r", "method.params.r1", "method.params.r2"}
COLUMN_KEYS = {"modules": "method.target_modules", "lr": "train.lr", "batch": "train.global_batch_size",
               "loss_on": "task.loss_on", "scoring": "eval.mode"}
SCORING_KEYS = (N_QUESTIONS, *SCORED_AS.values())  # how a run was scored: named last in a label
LONG_SETTING = 40  # characters: a section with a longer setting shows tags (S1, S2, ...) and a legend under it
TRAINING_KEYS = ("train.", "data.")  # settings only a training run has (a scoring-only run is not compared on them)


def compared_on(key: str, row: Row, other: Row) -> bool:
    """Whether two groups are compared on a setting: a method's own settings only within the method, training
    settings only between training runs."""
    if key.startswith("method.") and other.method != row.method:
        return False
    return not key.startswith(TRAINING_KEYS) or (row.first.trained and other.first.trained)


def differing_keys(row: Row, rows: list[Row], hidden: set) -> list[str]:
    """The settings in which `row`'s group differs from another group of its section."""
    keys = {key for r in rows for key in r.first.settings} - hidden
    differing = [key for key in keys if any(compared_on(key, row, other) and other.first.settings.get(key, UNSET)
                                            != row.first.settings.get(key, UNSET) for other in rows)]
    return sorted(differing, key=lambda k: (k in SCORING_KEYS, k))


def label_settings(rows: list[Row], shown: list[str]) -> None:
    """Each group's `setting`: the settings its section's groups differ in, with its own values."""
    hidden = ROW_KEYS | {COLUMN_KEYS[k] for k in shown if k in COLUMN_KEYS}
    for row in rows:
        row.setting = ", ".join(setting_text(key, row.first.settings.get(key, UNSET))
                                for key in differing_keys(row, rows, hidden))


def tag_settings(rows: list[Row]) -> list[str]:
    """Where a setting is too long for a cell, each distinct setting of the (ordered) rows gets a tag, S1, S2, ...,
    in order of first appearance: the rows show the tag, the returned legend lines spell each one out."""
    settings = unique(row.setting for row in rows if row.setting)
    if all(len(setting) <= LONG_SETTING for setting in settings):
        return []
    tags = {setting: f"S{i}" for i, setting in enumerate(settings, 1)}
    for row in rows:
        row.tag = tags.get(row.setting, "")
    return [f"{tag}: {setting}" for setting, tag in tags.items()]


# --- rows -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Repeat:
    """Runs of one seed in one group: the newest finished one is used, the others are left out."""
    used: Run
    others: tuple

    def line(self) -> str:
        others = ", ".join(str(r.path) for r in self.others)
        run = self.used
        what = "the scoring-only run" if run.seed is None else f"seed {run.seed}"
        name = " ".join(x for x in (run.method, run.params) if x)
        return f"{what} ran {len(self.others) + 1} times with the same settings ({name} on {run.model}, " \
               f"{run.task}): used {run.path} (newest), left out {others}"


def one_per_seed(runs: list[Run]) -> tuple[list[Run], list[Repeat]]:
    """A group's runs, one per seed (the newest finished), and the repeats left out."""
    used, repeats = [], []
    for same in seeds_oldest_first(runs).values():
        used.append(same[-1])
        if len(same) > 1:
            repeats.append(Repeat(same[-1], tuple(same[:-1])))
    return used, repeats


def group_rows(runs: list[Run], extra_key=()) -> tuple[list[Row], list[Repeat]]:
    """One row per group of equal settings (and equal extra_key attributes), one run per seed in it."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group + tuple(getattr(run, k) for k in extra_key), []).append(run)
    rows, repeats = [], []
    for members in groups.values():
        used, repeated = one_per_seed(members)
        rows.append(Row(OURS, used[0].method, used[0].params, used))
        repeats += repeated
    return rows, repeats


def _rank_numbers(params: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", params)]


def row_order(row: Row) -> tuple:
    method = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
    run = row.first
    placement = run.modules if run else ""
    placement = PLACEMENT_ORDER.index(placement) if placement in PLACEMENT_ORDER else len(PLACEMENT_ORDER)
    loss_on = LOSS_ON_ORDER.index(run.loss_on) if run and run.loss_on in LOSS_ON_ORDER else len(LOSS_ON_ORDER)
    return (method, row.method, _rank_numbers(row.params), placement, (run.lr or 0) if run else 0,
            (run.batch or 0) if run else 0, loss_on, row.setting)  # a method's response and full rows side by side


def delta_row(row: Row, paper_scores: dict) -> Row:
    means = {key: cell_stats(row, key)[0] for key in paper_scores}
    differences = {key: mean - paper_scores[key] for key, mean in means.items() if mean is not None}
    return Row(DELTA, row.method, row.params, values=differences, setting="Δ vs paper")


# --- sections and tables ----------------------------------------------------------------------------------

def varying(rows: list[Row], keys) -> list[str]:
    """The label attributes that differ between the rows' runs (shown as columns only then)."""
    return [k for k in keys if len({getattr(r.first, k) for r in rows}) > 1]


def unique(items: list) -> list:
    return list(dict.fromkeys(items))


def section_note(table: str, ours: list[Row], compared: bool, paper_model: str, paper: dict) -> str:
    """Why the paper's rows are compared with (Δ rows) or only stand beside this section's groups."""
    if compared:
        others = unique(gap for row in ours for gap in paper_gaps(row.first, table, paper))
        return ("Δ vs paper: mean − the paper's number, under each group in the paper's setting (its model, the "
                "real data, the whole test sets, its schedule)" + (f"; other groups differ: {'; '.join(others)}"
                                                                    if others else "") + ".")
    basic = unique(g for row in ours for g in basic_gaps(row.first, table, paper))
    reasons = basic or unique(g for row in ours for g in detail_gaps(row.first, table, paper))
    return (f"The paper's rows ({MODEL_NAMES[paper_model]}) are a reference, not a comparison; not the paper's "
            f"setting: {'; '.join(reasons)}.")


def finish_section(table: str, model: str, task: str, ours: list[Row], shown: list[str], paper: dict,
                   paper_grid: bool) -> Section:
    """The section's groups in the paper's order, each followed by its Δ row where it is in the paper's setting,
    then the paper's rows for the methods shown (all of them with paper_grid)."""
    label_settings(ours, shown)
    ours.sort(key=row_order)
    paper_model = model if model in paper.get(table, {}) else REFERENCE_MODEL
    paper_rows = {(p["method"], p.get("params") or ""): p["scores"]
                  for p in paper.get(table, {}).get(paper_model, [])}
    matched = [row for row in ours if (row.method, row.params) in paper_rows and row.first.modules in PAPER_PLACEMENTS]
    rows, compared = [], False
    for row in ours:
        rows.append(row)
        if any(row is m for m in matched) and not paper_gaps(row.first, table, paper):
            rows.append(delta_row(row, paper_rows[(row.method, row.params)]))
            compared = True
    shown_paper = [key for key in paper_rows if paper_grid or key in {(r.method, r.params) for r in matched}]
    source = f"paper ({MODEL_NAMES[paper_model]})"
    rows += sorted((Row(PAPER, method, params, values=paper_rows[(method, params)], setting=source)
                    for method, params in shown_paper), key=row_order)
    note = section_note(table, ours, compared, paper_model, paper) if shown_paper else ""
    return Section(f"{model}, task {task}", note, rows, legend=tag_settings(ours))


def make_table(name: str, runs: list[Run], columns: list, label_keys: list, paper: dict, paper_grid: bool,
               extra_key=()) -> tuple[Table, list[Repeat]]:
    sections, repeats = {}, []
    for model, task in sorted({(r.model, r.task) for r in runs}):
        rows, found = group_rows([r for r in runs if (r.model, r.task) == (model, task)], extra_key)
        sections[(model, task)] = rows
        repeats += found
    ours = [row for rows in sections.values() for row in rows]
    # label columns: always Table 5's placement and Table 12's batch and hardware, else when the runs differ
    forced = {"table5": ["modules"], "table12": ["batch", "hardware"]}.get(name, [])
    shown = [k for k in label_keys + ["loss_on"] if k in forced or varying(ours, [k])]
    return Table(name, TITLES[name], columns,
                 [finish_section(name, model, task, rows, shown, paper, paper_grid)
                  for (model, task), rows in sections.items()], shown), repeats


def build_tables(runs: list[Run], paper: dict | None = None, paper_grid: bool = False) -> tuple[list[Table], list]:
    """The tables the runs fill, and the repeated seeds left out of them."""
    paper = load_paper_numbers() if paper is None else paper
    by_table: dict[str, list[Run]] = {}
    for run in runs:
        if run.scores and (name := task_table(run)):
            by_table.setdefault(name, []).append(run)
    specs = [(name, by_table[name], COLUMNS[name] + (COST_COLUMNS if name == "table1" else []),
              ["modules", "lr", "batch", "scoring"], ()) for name in TASK_TABLES if name in by_table]
    commonsense = by_table.get("table1", [])
    if any(r.method == "hira_rand" for r in commonsense):
        chosen = [r for r in commonsense if r.method in ("hira", "hira_rand") and r.modules == "FC+QKV"]
        specs.append(("table4", chosen, COLUMNS["table1"], ["modules", "lr"], ()))
    hira = [r for r in commonsense if r.method == "hira"]
    if len({r.modules for r in hira}) > 1:
        specs.append(("table5", hira, COLUMNS["table1"], ["modules"], ()))
    if any(r.method == "hilora" for r in commonsense):
        specs.append(("table6", [r for r in commonsense if r.method == "hilora"], [("average", "Avg.")],
                      ["modules", "lr"], ()))
    timed = [r for r in runs if r.train_time_s is not None]
    if timed:
        specs.append(("table12", timed, COLUMNS["table12"], ["modules", "lr", "batch", "hardware"], ("hardware",)))
    tables, repeats = [], []
    for name, chosen, columns, label_keys, extra_key in specs:
        table, found = make_table(name, chosen, columns, label_keys, paper, paper_grid, extra_key)
        tables.append(table)
        repeats += found
    return tables, list({r.used.path: r for r in repeats}.values())  # a run can sit in two tables


def rank_curves(runs: list[Run]) -> dict[tuple, dict[int, list[float]]]:
    """Figure 6's data: HiRA's average accuracy per seed at each r, one curve per setting other than r (only the
    settings with two ranks or more)."""
    hira = [r for r in runs if r.method == "hira" and r.params.startswith("r") and "average" in r.scores
            and task_table(r) == "table1"]
    curves: dict[tuple, dict[int, list[float]]] = {}
    for row in group_rows(hira)[0]:
        run = row.first
        key = tuple((k, v) for k, v in sorted(run.settings.items()) if k != "method.params.r")
        curves.setdefault(key, {})[_rank_numbers(run.params)[0]] = [r.scores["average"] for r in row.runs]
    return {k: v for k, v in curves.items() if len(v) > 1}


# --- the learning-rate tuning (+experiment=lr_sweep; hira/paper/lr_sweep.py) ------------------------------------

def tuning_section(runs: list[Run]) -> tuple[list[Run], str]:
    """The runs the main tables use (a tuned method's at its chosen rate only) and the tuning table's Markdown
    ("" when no run is part of an lr sweep)."""
    tuning = tuning_runs(runs)
    if not tuning:
        return runs, ""
    chosen = choose(tuning)
    kept = chosen_runs(runs, chosen)
    return kept, tuning_markdown(tuning, chosen, len(runs) - len(kept))


def tuning_markdown(tuning: list[TuningRun], chosen: dict, left_out: int) -> str:
    """Validation loss per method and rate at the first seed, the chosen rate marked; what the main tables used."""
    lines = ["\n## Learning-rate tuning (+experiment=lr_sweep)\n",
             "Each method's rate: the lowest best validation loss of its runs at its first seed (never a test score). "
             f"The tables above use only the chosen rate's runs ({left_out} run(s) at other rates left out).\n",
             "| method | seed | × default lr | lr | best val loss | chosen |", "|---|---|---|---|---|---|"]
    for t in tuning:
        mark = "✓" if chosen[t.group] == t else ""
        lines.append(f"| {t.method} | {t.seed} | {t.factor:g} | {t.lr:.3g} | {t.val_loss:.4f} | {mark} |")
    return "\n".join(lines) + "\n"


def left_out_lines(repeats: list[Repeat], skipped: list[Skipped]) -> list[str]:
    """One line per repeated seed, then one per folder that is not a finished run."""
    return [f"repeated: {r.line()}" for r in repeats] + [f"skipped {s.path}: {s.reason}" for s in skipped]


def without_record_lines(runs: list[Run]) -> list[str]:
    """One line naming the run folders without a result record (older ones, read as before), or none."""
    older = [str(r.path) for r in runs if not r.has_record]
    return [f"no result.json in {len(older)} run folder(s), read from scores.json and metrics.jsonl: "
            + ", ".join(older)] if older else []


@dataclass
class Report:
    tables: str          # the tables in Markdown
    left_out: list       # left_out_lines
    written: list        # the files written
    without_record: list = field(default_factory=list)  # without_record_lines

    @property
    def markdown(self) -> str:
        """tables.md: the tables, then the runs read without a record and what was left out of them."""
        notes = self.without_record + self.left_out
        return self.tables + ("\n## Left out\n\n" + "".join(f"- {line}\n" for line in notes) if notes else "")

    def console(self) -> str:
        """What hira-make-tables prints: the tables, the files written, the runs read without a record, then one
        line per run or folder left out."""
        return "\n".join([self.tables, "wrote " + ", ".join(str(p) for p in self.written), *self.without_record,
                          *self.left_out])


def group_label(table: Table, row: Row) -> str:
    """A group as its table row names it: method, r, its label columns and its setting (hira r32 lr 1e-09)."""
    labels = label_cells(row, table.label_keys)[2:-2]
    named = [f"{LABELS[key]} {value}" for key, value in zip(table.label_keys, labels)]
    return " ".join(x for x in (row.method, row.params, *named, row.setting) if x)


def add_comparisons(tables: list[Table], reference: dict) -> None:
    """--compare: under each section of the accuracy tables, every group against the reference group."""
    for table in tables:
        if table.name == "table12" or not table_format(table.name).scorer.extracts:  # accuracy tables only
            continue
        for section in table.sections:
            groups = [(group_label(table, row), row.runs) for row in section.rows if row.kind == OURS]
            section.comparison = block_against_reference(groups, reference)


def make_tables(root: Path, out_dir: Path | None = None, paper_grid: bool = False, strict: bool = False,
                scoring: str | None = None, compare: dict | None = None) -> Report:
    """Collect the runs under root, write tables.md / tables.tex (and Figure 6 when there is a rank sweep) into
    out_dir (default: root). strict: any folder that is not a finished run is an error (nothing is written).
    scoring: the scoring setting or mode whose scores are shown (default: each run's own). No finished run at all
    is an error too: there would be no table to write. compare: {key: value} of the reference group each
    section's groups are compared with (hira-compare's test)."""
    root = Path(root)
    runs, skipped = find_runs(root, scoring)
    if not runs:
        why = f"; e.g. {skipped[0].path}: {skipped[0].reason}" if skipped else " (no folder holds a config.yaml)"
        raise UserError(f"no finished run under {root}{f' scored under {scoring}' if scoring else ''}: "
                        f"{len(skipped)} folder(s) left out{why}")
    if strict and skipped:
        first = skipped[0]
        raise UserError(f"--strict: {len(skipped)} folder(s) under {root} hold a config.yaml but are not finished "
                        f"runs, e.g. {first.path}: {first.reason}")
    runs, tuning = tuning_section(runs)
    tables, repeats = build_tables(runs, paper_grid=paper_grid)
    if compare:
        add_comparisons(tables, compare)
    text = f"# Results from {len(runs)} runs under {root}\n\n" + "\n".join(to_markdown(t) for t in tables)
    if not tables:
        text += "no table shows these runs (none is scored on a task of the paper's tables)\n"
    text += tuning
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = Report(text, left_out_lines(repeats, skipped), [out_dir / "tables.md", out_dir / "tables.tex"],
                    without_record_lines(runs))
    report.written[0].write_text(report.markdown)
    report.written[1].write_text("\n".join(to_latex(t) for t in tables))
    figure = plot_rank_sweep(rank_curves(runs), out_dir / "fig6_rank_sweep.png")
    if figure:
        report.written.append(figure)
    report.written += plot_pareto(tables, out_dir)
    return report

"""The paper's tables regenerated from finished runs: mean ± std over seeds, the paper's number and the difference.

Runs are grouped by (task, model, method, params, target modules, lr, batch, loss_on, scoring mode); a group's
seeds are averaged.
Each table lists the groups that belong to it and the paper's rows for the model (Llama-3-8B numbers stand
in as the reference for models the paper did not use, such as the tiny one); a row without runs, or a column
a run did not score, shows "—", never a zero.
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hira.adapters import all_methods
from hira.data import formats
from hira.paper.runs import Run, find_runs

NUMBERS_FILE = Path(__file__).with_name("numbers.yaml")
MISSING = "—"
REFERENCE_MODEL = "llama3_8b"
MODEL_NAMES = {"llama3_8b": "Llama-3-8B", "llama2_7b": "Llama-2-7B"}
# The paper's row order, then the registered methods it does not list, alphabetically.
PAPER_ORDER = ["base", "full", "prompt_tuning", "p_tuning", "lora", "dora", "vera", "mora", "rasa", "lora_dash",
               "hira_rand", "hilora", "hira"]
METHOD_ORDER = PAPER_ORDER + [m for m in all_methods() if m not in PAPER_ORDER]
PLACEMENT_ORDER = ["FC+QKV", "FC", "QV", "QKV", "QK", "V", "Q", "K"]  # Table 5
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


def load_paper_numbers(path: Path = NUMBERS_FILE) -> dict:
    return yaml.safe_load(Path(path).read_text())


def task_table(run: Run) -> str | None:
    """Which main table a scored run belongs to: its test subsets' format's (the first registered one's, if it was
    scored on subsets of two formats)."""
    scored = {fmt.name for s in run.subsets if (fmt := formats.subset_format(s))}
    return next((fmt.table for fmt in formats.FORMATS.values() if fmt.name in scored), None)


# --- rows -------------------------------------------------------------------------------------------------

@dataclass
class Row:
    method: str
    params: str
    runs: list = field(default_factory=list)
    paper: dict = field(default_factory=dict)

    @property
    def first(self) -> Run | None:
        return self.runs[0] if self.runs else None


def _rank_numbers(params: str) -> list[int]:
    return [int(n) for n in re.findall(r"\d+", params)]


def row_order(row: Row) -> tuple:
    method = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
    run = row.first
    placement = run.modules if run else ""
    placement = PLACEMENT_ORDER.index(placement) if placement in PLACEMENT_ORDER else len(PLACEMENT_ORDER)
    loss_on = LOSS_ON_ORDER.index(run.loss_on) if run and run.loss_on in LOSS_ON_ORDER else len(LOSS_ON_ORDER)
    return (method, row.method, _rank_numbers(row.params), placement, (run.lr or 0) if run else 0,
            (run.batch or 0) if run else 0, loss_on)  # last: a method's response and full rows sit next to each other


def group_rows(runs: list[Run], extra_key=()) -> list[Row]:
    groups: dict[tuple, Row] = {}
    for run in runs:
        key = run.group + tuple(getattr(run, k) for k in extra_key)
        groups.setdefault(key, Row(run.method, run.params)).runs.append(run)
    return list(groups.values())


def attach_paper(rows: list[Row], paper_rows: list[dict]) -> list[Row]:
    """Put the paper's numbers beside the matching groups (paper placement only); unmatched paper rows are added
    without runs, so the table shows what is still to be run."""
    for paper in paper_rows:
        params = paper.get("params") or ""
        matched = [r for r in rows if r.method == paper["method"] and r.params == params
                   and r.first.modules in ("FC+QKV", "")]
        for row in matched:
            row.paper = paper["scores"]
        if not matched:
            rows.append(Row(paper["method"], params, [], paper["scores"]))
    return sorted(rows, key=row_order)


# --- tables -----------------------------------------------------------------------------------------------

@dataclass
class Table:
    name: str
    title: str
    columns: list                      # (key, header)
    sections: list                     # (heading, [Row])
    label_keys: list                   # run attributes shown as label columns beside method and r


LABELS = {"modules": "modules", "lr": "lr", "batch": "batch", "hardware": "hardware", "loss_on": "loss on",
          "scoring": "scoring"}


def varying(rows: list[Row], keys) -> list[str]:
    """The label attributes that differ between the rows' runs (shown as columns only then)."""
    return [k for k in keys if len({getattr(r.first, k) for r in rows if r.runs}) > 1]


def model_sections(runs: list[Run], paper: dict, table: str, extra_key=()) -> list:
    """One section per model: its groups plus the paper's rows for it (or the reference model's)."""
    sections = []
    for model in sorted({r.model for r in runs}):
        paper_model = model if model in paper.get(table, {}) else REFERENCE_MODEL
        rows = attach_paper(group_rows([r for r in runs if r.model == model], extra_key),
                            paper.get(table, {}).get(paper_model, []))
        heading = f"{model} ({', '.join(sorted({r.task for r in runs if r.model == model}))})"
        if paper_model != model and any(r.paper for r in rows):
            heading += f"; paper numbers: {MODEL_NAMES[paper_model]}, for reference"
        sections.append((heading, rows))
    return sections


def build_tables(runs: list[Run], paper: dict | None = None) -> list[Table]:
    paper = load_paper_numbers() if paper is None else paper
    tables = []
    by_table: dict[str, list[Run]] = {}
    for run in runs:
        if run.scores and (name := task_table(run)):
            by_table.setdefault(name, []).append(run)
    for name in TASK_TABLES:
        if name in by_table:
            sections = model_sections(by_table[name], paper, name)
            tables.append(Table(name, TITLES[name], COLUMNS[name], sections, ["modules", "lr", "batch", "scoring"]))
    commonsense = by_table.get("table1", [])
    average = [("average", "Avg.")]
    if any(r.method == "hira_rand" for r in commonsense):
        chosen = [r for r in commonsense if r.method in ("hira", "hira_rand") and r.modules == "FC+QKV"]
        sections = model_sections(chosen, paper, "table4")
        tables.append(Table("table4", TITLES["table4"], COLUMNS["table1"], sections, ["modules", "lr"]))
    hira = [r for r in commonsense if r.method == "hira"]
    if len({r.modules for r in hira}) > 1:
        sections = model_sections(hira, paper, "table5")
        tables.append(Table("table5", TITLES["table5"], COLUMNS["table1"], sections, ["modules"]))
    if any(r.method == "hilora" for r in commonsense):
        sections = model_sections([r for r in commonsense if r.method == "hilora"], paper, "table6")
        tables.append(Table("table6", TITLES["table6"], average, sections, ["modules", "lr"]))
    timed = [r for r in runs if r.train_time_s is not None]
    if timed:
        sections = model_sections(timed, paper, "table12", extra_key=("hardware",))
        tables.append(Table("table12", TITLES["table12"], COLUMNS["table12"], sections,
                            ["modules", "lr", "batch", "hardware"]))
    for table in tables:  # label columns: always for Table 5's placement and Table 12's batch, else when varying
        rows = [row for _, section in table.sections for row in section]
        forced = {"table5": ["modules"], "table12": ["batch", "hardware"]}.get(table.name, [])
        keys = table.label_keys + ["loss_on"]  # any table whose runs were trained both ways shows which is which
        table.label_keys = [k for k in keys if k in forced or k in varying(rows, [k])]
    return tables


# --- cells ------------------------------------------------------------------------------------------------

def fmt_duration(seconds: float) -> str:
    """15h00m56s like the paper; short runs in minutes or seconds."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds >= 3600:
        h, rest = divmod(round(seconds), 3600)
        return f"{sign}{h}h{rest // 60:02d}m{rest % 60:02d}s"
    if seconds >= 60:
        m, s = divmod(round(seconds), 60)
        return f"{sign}{m}m{s:02d}s"
    return f"{sign}{seconds:.1f}s"


def fmt_value(key: str, value: float, signed: bool = False) -> str:
    if key == "train_time_s":
        return ("+" if signed and value >= 0 else "") + fmt_duration(value)
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def run_value(run: Run, key: str):
    if key in ("peak_memory_gb", "train_time_s"):
        return getattr(run, key)
    return run.scores.get(key)


def cell_stats(row: Row, key: str) -> tuple[float | None, float | None]:
    """(mean, sample std) over the row's seeds that have the column; std is None for a single seed."""
    values = [v for r in row.runs if (v := run_value(r, key)) is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def cell_parts(row: Row, key: str) -> tuple[str, str | None]:
    """("mean ± std" or "—", "paper P, Δ D" or None)."""
    mean, std = cell_stats(row, key)
    ours = MISSING if mean is None else fmt_value(key, mean) + ("" if std is None else f" ± {fmt_value(key, std)}")
    if key not in row.paper:
        return ours, None
    paper = row.paper[key]
    beside = f"paper {fmt_value(key, paper)}"
    if mean is not None:
        beside += f", Δ {fmt_value(key, mean - paper, signed=True)}"
    return ours, beside


# --- rendering --------------------------------------------------------------------------------------------

def label_cells(row: Row, label_keys: list) -> list[str]:
    run = row.first
    values = [getattr(run, k) if run else None for k in label_keys]  # scoring-only runs have no lr or batch
    return [row.method, row.params or MISSING, *(MISSING if v is None else str(v) for v in values), str(len(row.runs))]


def to_markdown(table: Table) -> str:
    headers = ["method", "r", *(LABELS[k] for k in table.label_keys), "n", *(h for _, h in table.columns)]
    lines = [f"### {table.title}", ""]
    for heading, rows in table.sections:
        lines += [f"**{heading}**", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in rows:
            cells = []
            for key, _ in table.columns:
                ours, beside = cell_parts(row, key)
                cells.append(ours + (f" ({beside})" if beside else ""))
            lines.append("| " + " | ".join(label_cells(row, table.label_keys) + cells) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def tex_escape(text: str) -> str:
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
            .replace("#", r"\#").replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("⊙", r"$\odot$")
            .replace(MISSING, "--"))


def to_latex(table: Table) -> str:
    headers = ["Method", "r", *(LABELS[k] for k in table.label_keys), "n", *(h for _, h in table.columns)]
    n_labels = len(headers) - len(table.columns)
    lines = [r"\begin{table}[ht]", r"\centering\small", rf"\caption{{{tex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{'l' * n_labels}{'c' * len(table.columns)}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in headers) + r" \\"]
    for heading, rows in table.sections:
        lines += [r"\midrule", rf"\multicolumn{{{len(headers)}}}{{l}}{{\textit{{{tex_escape(heading)}}}}} \\"]
        for row in rows:
            cells = []
            for key, _ in table.columns:
                ours, beside = cell_parts(row, key)
                cells.append(tex_escape(ours) + (rf" {{\scriptsize ({tex_escape(beside)})}}" if beside else ""))
            lines.append(" & ".join([tex_escape(c) for c in label_cells(row, table.label_keys)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --- Figure 6 and the entry point -------------------------------------------------------------------------

def plot_rank_sweep(runs: list[Run], out_file: Path) -> Path | None:
    """Figure 6: HiRA's average accuracy against r (mean ± std over seeds), one curve per task and model."""
    hira = [r for r in runs if r.method == "hira" and r.params.startswith("r") and "average" in r.scores
            and task_table(r) == "table1"]
    curves: dict[tuple, dict[int, list[float]]] = {}
    for run in hira:
        curves.setdefault((run.task, run.model, run.modules), {}).setdefault(
            _rank_numbers(run.params)[0], []).append(run.scores["average"])
    curves = {k: v for k, v in curves.items() if len(v) > 1}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for (task, model, modules), points in sorted(curves.items()):
        ranks = sorted(points)
        means = [statistics.mean(points[r]) for r in ranks]
        stds = [statistics.stdev(points[r]) if len(points[r]) > 1 else 0.0 for r in ranks]
        ax.errorbar(ranks, means, yerr=stds, marker="o", capsize=3, label=f"{model} {task} {modules}")
    ax.set_xlabel("rank r")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Figure 6: HiRA rank sweep")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)
    return out_file


def make_tables(root: Path, out_dir: Path | None = None) -> tuple[str, list[Path]]:
    """Collect the runs under root, write tables.md / tables.tex (and Figure 6 when there is a rank sweep)
    into out_dir (default: root); returns the Markdown text and the files written."""
    root = Path(root)
    runs = find_runs(root)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = build_tables(runs)
    if not tables:
        markdown = f"no finished runs under {root} (a run needs config.yaml, metrics.jsonl and scores.json)\n"
    else:
        markdown = f"# Results from {len(runs)} runs under {root}\n\n" + "\n".join(to_markdown(t) for t in tables)
    written = [out_dir / "tables.md", out_dir / "tables.tex"]
    written[0].write_text(markdown)
    written[1].write_text("\n".join(to_latex(t) for t in tables))
    figure = plot_rank_sweep(runs, out_dir / "fig6_rank_sweep.png")
    return markdown, written + ([figure] if figure else [])

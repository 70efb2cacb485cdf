"""What a table is (sections of rows: our groups, their Δ vs the paper, the paper's rows) and how it is written:
the cells ("mean ± std" over seeds), Markdown and LaTeX. hira/paper/tables.py fills the tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from hira.paper.runs import Run

MISSING = "—"
# Row kinds: a group of our runs, its difference from the paper's row, the paper's row.
OURS, DELTA, PAPER = "ours", "delta", "paper"
COST_COLUMNS = [("trainable_percent", "trainable %"), ("adapter_bytes", "adapter size")]  # Table 1's cost columns
FIXED_COSTS = {key for key, _ in COST_COLUMNS}  # sizes, the same for every seed of a group
RUN_ATTRIBUTES = {"peak_memory_gb", "train_time_s", *FIXED_COSTS}  # columns read off the run, not its scores


@dataclass
class Row:
    kind: str                                   # OURS, DELTA or PAPER
    method: str
    params: str
    runs: list = field(default_factory=list)    # OURS: one run per seed
    values: dict = field(default_factory=dict)  # DELTA and PAPER: column -> number
    setting: str = ""                           # OURS: its settings that differ from its section's other groups;
                                                # DELTA, PAPER: what the row is
    tag: str = ""                               # OURS: the short name its setting cell shows, when the section's
                                                # settings are too long for a cell (Section.legend spells it out)

    @property
    def first(self) -> Run | None:
        return self.runs[0] if self.runs else None


@dataclass
class Section:
    heading: str
    note: str
    rows: list
    comparison: list = field(default_factory=list)  # Markdown lines of --compare's block (hira/paper/compare.py)
    legend: list = field(default_factory=list)      # "S1: max_steps 40, ..." for each setting tag its rows show


@dataclass
class Table:
    name: str
    title: str
    columns: list                      # (key, header)
    sections: list                     # [Section]
    label_keys: list                   # run attributes shown as label columns beside method and r


LABELS = {"modules": "modules", "lr": "lr", "batch": "batch", "hardware": "hardware", "loss_on": "loss on",
          "scoring": "scoring"}


def cell_stats(row: Row, key: str) -> tuple[float | None, float | None]:
    """(mean, sample std) over the row's seeds that have the column; std is None for a single seed."""
    values = [v for r in row.runs if (v := run_value(r, key)) is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else None)


def run_value(run: Run, key: str):
    if key in RUN_ATTRIBUTES:
        return getattr(run, key)
    return run.scores.get(key)


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


def fmt_bytes(size: float) -> str:
    """1.2 MB, 26.6 kB, 512 B (decimal units, as a file listing shows them)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(size) >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size:.0f} B"


def fmt_value(key: str, value: float, signed: bool = False) -> str:
    if key == "adapter_bytes":
        return fmt_bytes(value)
    if key == "trainable_percent":
        return f"{value:.3g}"
    if key == "train_time_s":
        return ("+" if signed and value >= 0 else "") + fmt_duration(value)
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def cell(row: Row, key: str) -> str:
    """OURS: "mean ± std" (one seed: the value); PAPER: the paper's number; DELTA: the signed difference."""
    if row.kind == OURS:
        mean, std = cell_stats(row, key)
        if mean is None:
            return MISSING
        spread = std is not None and not (key in FIXED_COSTS and std == 0)  # a size every seed shares: no "± 0"
        return fmt_value(key, mean) + (f" ± {fmt_value(key, std)}" if spread else "")
    value = row.values.get(key)
    return MISSING if value is None else fmt_value(key, value, signed=row.kind == DELTA)


def label_cells(row: Row, label_keys: list) -> list[str]:
    """method, r, the label columns, setting, n. Scoring-only runs have no lr or batch ("—"); the paper's and
    the Δ rows leave the label columns and n empty."""
    if row.kind == OURS:
        values = [getattr(row.first, k) for k in label_keys]
        labels = [MISSING if v is None else str(v) for v in values]
        n = str(len(row.runs))
    else:
        labels, n = [""] * len(label_keys), ""
    return [row.method, row.params or MISSING, *labels, row.tag or row.setting, n]


def headers(table: Table) -> list[str]:
    return ["method", "r", *(LABELS[k] for k in table.label_keys), "setting", "n", *(h for _, h in table.columns)]


def row_cells(table: Table, row: Row) -> list[str]:
    return label_cells(row, table.label_keys) + [cell(row, key) for key, _ in table.columns]


# --- rendering --------------------------------------------------------------------------------------------

def to_markdown(table: Table) -> str:
    names = headers(table)
    lines = [f"### {table.title}", ""]
    for section in table.sections:
        lines += [f"**{section.heading}**", ""] + ([f"_{section.note}_", ""] if section.note else [])
        lines += ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for row in section.rows:
            lines.append("| " + " | ".join(c.replace("|", r"\|") for c in row_cells(table, row)) + " |")
        lines.append("")
        lines += [f"- {line}" for line in section.legend] + ([""] if section.legend else [])
        lines += section.comparison
    return "\n".join(lines).rstrip() + "\n"


TEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
       "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "Δ": r"$\Delta$",
       "⊙": r"$\odot$", "−": "$-$", MISSING: "---"}


def tex_escape(text: str) -> str:
    """Text as plain pdfLaTeX typesets it (ASCII out: the LaTeX specials escaped, the few symbols the tables use
    in math mode)."""
    return "".join(TEX.get(c, c) for c in text)


def to_latex(table: Table) -> str:
    """The same rows as to_markdown, for a plain article with booktabs; each section's note below the tabular."""
    names = headers(table)
    n_labels = len(names) - len(table.columns)
    lines = [r"\begin{table}[ht]", r"\centering\small", rf"\caption{{{tex_escape(table.title)}}}",
             rf"\begin{{tabular}}{{{'l' * n_labels}{'c' * len(table.columns)}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in names) + r" \\"]
    for section in table.sections:
        lines += [r"\midrule", rf"\multicolumn{{{len(names)}}}{{l}}{{\textit{{{tex_escape(section.heading)}}}}} \\"]
        lines += [" & ".join(tex_escape(c) for c in row_cells(table, row)) + r" \\" for row in section.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip{{\footnotesize\textit{{{tex_escape(s.heading)}}}: {tex_escape(text)}}}"
              for s in table.sections for text in ([s.note] if s.note else []) + s.legend]
    lines += [r"\end{table}"]
    return "\n".join(lines) + "\n"

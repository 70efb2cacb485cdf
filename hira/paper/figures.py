"""The figures beside tables.md: Figure 6 (HiRA's rank sweep), and accuracy against cost: for each section of each
task table, the groups' average accuracy against trainable parameters, peak memory and training time, one labelled
point per group and the Pareto front drawn.

A point is the group's mean over its seeds; its bar is the sample standard deviation over the seeds (the table's
"± std"; a single seed has none). The front holds the groups that no other group beats: none costs no more and
scores at least as well, better in one. Written as pareto_<table>_<section>.png and .pdf beside tables.md.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

AXES = [("trainable_params", "trainable parameters", True), ("peak_memory_gb", "peak memory (GB)", False),
        ("train_time_s", "training time (s)", False)]  # (run attribute, axis label, log scale)
TASK_TABLES = ("table1", "table2", "table3")  # the ablation tables repeat Table 1's groups


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point dominates (cost <= and accuracy >=, one of them
    strictly), ordered by cost."""
    front = [i for i, (c, a) in enumerate(points)
             if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2 in points)]
    return sorted(front, key=lambda i: points[i])


def group_point(runs: list, attribute: str) -> tuple[float, float, float] | None:
    """(mean cost, mean average accuracy, std of the accuracy over seeds) of a group, None without both."""
    costs = [getattr(r, attribute) for r in runs if getattr(r, attribute) is not None]
    accuracies = [r.scores["average"] for r in runs if r.scores.get("average") is not None]
    if not costs or not accuracies:
        return None
    spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return statistics.mean(costs), statistics.mean(accuracies), spread


def group_label(row) -> str:
    """method, r and its setting as the table's cell shows it (a tag where the section has a legend)."""
    return " ".join(x for x in (row.method, row.params, row.tag or row.setting) if x)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()


def section_points(groups: list) -> list[tuple]:
    """Per axis, (axis, [(label, (cost, accuracy, spread))]): one point per group that has the cost and a score."""
    return [(axis, [(label, p) for label, runs in groups if (p := group_point(runs, axis[0]))]) for axis in AXES]


def plot_section(title: str, groups: list, out_base: Path, legend: list = ()) -> list[Path]:
    """One figure (three panels) for a section's groups [(label, runs)], the section's setting legend under it;
    [] when no group has a cost and a score."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = section_points(groups)
    if not any(points for _, points in panels):
        return []
    fig, axes = plt.subplots(1, len(AXES), figsize=(5 * len(AXES), 4))
    for ax, ((attribute, name, log), points) in zip(axes, panels):
        for label, (cost, accuracy, spread) in points:
            ax.errorbar([cost], [accuracy], yerr=[spread], marker="o", capsize=3)
            ax.annotate(label, (cost, accuracy), fontsize=7, xytext=(4, 4), textcoords="offset points")
        front = [points[i][1] for i in pareto_front([(p[0], p[1]) for _, p in points])]
        if front:
            ax.step([c for c, _, _ in front], [a for _, a, _ in front], where="post", color="black", lw=1,
                    ls="--", marker="o", mfc="none", ms=10, label="Pareto front")  # ringed: on the front
            ax.legend(fontsize=7)
        if log and points and all(p[0] > 0 for _, p in points):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel("average accuracy (%)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    if legend:  # the tags' settings, spelled out as under the table
        fig.subplots_adjust(bottom=0.12 + 0.03 * len(legend))
        fig.text(0.01, 0.01, "\n".join(legend), fontsize=6, va="bottom")
    written = [out_base.with_suffix(".png"), out_base.with_suffix(".pdf")]
    for path in written:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return written


def plot_pareto(tables: list, out_dir: Path) -> list[Path]:
    """The plots of every section of the task tables (hira/paper/render.py Table): the files written."""
    written = []
    for table in tables:
        if table.name not in TASK_TABLES:
            continue
        for section in table.sections:
            groups = [(group_label(row), row.runs) for row in section.rows if row.runs]
            written += plot_section(f"{table.title}: {section.heading}", groups,
                                    Path(out_dir) / f"pareto_{table.name}_{slug(section.heading)}", section.legend)
    return written


def plot_rank_sweep(curves: dict[tuple, dict[int, list[float]]], out_file: Path) -> Path | None:
    """Figure 6: HiRA's average accuracy against r, mean ± std over seeds, one curve per setting
    ({settings: {r: [accuracy per seed]}}, hira/paper/tables.py rank_curves); None when there is no curve."""
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for i, (key, points) in enumerate(sorted(curves.items())):
        settings = dict(key)
        ranks = sorted(points)
        means = [statistics.mean(points[r]) for r in ranks]
        stds = [statistics.stdev(points[r]) if len(points[r]) > 1 else 0.0 for r in ranks]
        label = f"{settings.get('model.name')} {settings.get('task.name')}" + (f" ({i + 1})" if len(curves) > 1 else "")
        ax.errorbar(ranks, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("rank r")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title("Figure 6: HiRA rank sweep")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=120)
    plt.close(fig)
    return out_file

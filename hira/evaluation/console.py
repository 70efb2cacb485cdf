"""The scores as the console prints them after each scored checkpoint: every subset's line, written by its format's
scorer (hira/scoring/scorers.py) under that scorer's header, in the paper's column order, and the paper's Table 1
row under them, in the same order."""

from __future__ import annotations

from hira.data import formats
from hira.scoring.metrics import mean_accuracy

# The paper's Table 1 column order (its format's columns in the registry, less the average).
TABLE1 = {key: header for fmt in formats.FORMATS.values() if fmt.table == "table1"
          for key, header in fmt.columns if key != "average"}


def paper_order(subsets) -> list[str]:
    """The subsets in the order of the paper's columns: by format (the registry's order), then by column."""
    fmts = list(formats.FORMATS.values())

    def position(subset: str) -> tuple[int, int]:
        fmt = formats.subset_format(subset)
        keys = [key for key, _ in fmt.columns]
        return fmts.index(fmt), keys.index(subset) if subset in keys else len(keys)

    return sorted(subsets, key=position)


def format_table(scores: dict) -> str:
    """Each scorer's block of subset lines ({subset: summary}), then the paper's Table 1 row."""
    blocks: dict[str, list[str]] = {}  # a scorer's summary kind -> its subsets: subsets of one kind share a block
    scorers = {}
    for subset in paper_order(scores):
        scorers[subset] = formats.subset_format(subset).scorer
        blocks.setdefault(scorers[subset].summary, []).append(subset)
    lines = []
    for subsets in blocks.values():
        scorer = scorers[subsets[0]]
        lines += [scorer.header()] if scorer.header() else []
        lines += [scorers[subset].line(subset, scores[subset]) for subset in subsets]
        lines += scorer.footer({subset: scores[subset] for subset in subsets})
    return "\n".join(lines + table1_row({s: v for s, v in scores.items() if "accuracy" in v}))


def table1_row(accuracy: dict) -> list[str]:
    """The paper's Table 1 row of the commonsense subsets scored ({subset: accuracy summary}): headers, values."""
    in_table1 = [s for s in TABLE1 if s in accuracy]
    if not in_table1:
        return []
    return ["Table 1 row: " + " ".join(f"{TABLE1[s]:>6}" for s in in_table1) + f" {'Avg.':>6}",
            "             " + " ".join(f"{100 * accuracy[s]['accuracy']:>6.2f}" for s in in_table1)
            + f" {100 * mean_accuracy({s: accuracy[s] for s in in_table1}):>6.2f}"]

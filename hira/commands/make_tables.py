"""Regenerate the paper's tables from finished runs.

    hira-make-tables outputs/ [--out DIR] [--paper-grid] [--strict] [--scoring SETTING] [--compare KEY=VALUE ...]
                                                                     (or python scripts/make_tables.py, same)

Writes tables.md and tables.tex (and fig6_rank_sweep.png when HiRA ran at several ranks, and pareto_<table>_<section>
.png/.pdf of accuracy against cost) into DIR (default: the outputs folder), prints the Markdown, names the run folders
without a result.json (read as before), and ends with one line per repeated seed and per folder left out (a
config.yaml but no finished run: no end event, no scores, an error in train.log, an unreadable config). Each run
is shown with its scores under its own scoring setting (its task's beams and new tokens), or --scoring's.
--compare adds under each section a block comparing every group with the group whose settings hold KEY=VALUE,
question by question (hira-compare's paired test on the average; docs/tables.md).
Logic: hira/paper/tables.py and runs.py; the paper's numbers and setting: hira/paper/numbers.yaml.
"""

import argparse
from pathlib import Path

from hira.errors import report_user_errors


@report_user_errors
def main(argv=None) -> None:
    from hira.paper.compare import parse_pairs
    from hira.paper.tables import make_tables

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path, help="folder searched (recursively) for run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the tables (default: outputs)")
    parser.add_argument("--paper-grid", action="store_true",
                        help="list every method of the paper's tables under each section, run or not")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 (writing nothing) when any folder holding a config.yaml is not a finished run")
    parser.add_argument("--scoring", default=None,
                        help="whose scores: a mode (generate, loglik) or a setting of scores.json (e.g. loglik_n30); "
                             "default: each run's own (generate with its task's beams and new tokens)")
    parser.add_argument("--compare", nargs="+", default=None, metavar="KEY=VALUE",
                        help="compare every group with the reference group holding these settings, e.g. "
                             "method.name=lora")
    args = parser.parse_args(argv)
    reference = parse_pairs(args.compare, "--compare") if args.compare is not None else None
    print(make_tables(args.outputs, args.out, paper_grid=args.paper_grid, strict=args.strict,
                      scoring=args.scoring, compare=reference).console())

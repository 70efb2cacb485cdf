"""Regenerate the paper's tables from finished runs, the paper's numbers side by side.

    hira-make-tables outputs/ [--out DIR]          (or python scripts/make_tables.py, same arguments)

Writes tables.md and tables.tex (and fig6_rank_sweep.png when HiRA ran at several ranks) into DIR (default: the
outputs folder) and prints the Markdown. Logic: hira/paper/tables.py; the paper's numbers: hira/paper/numbers.yaml.
"""

import argparse
from pathlib import Path

from hira.errors import report_user_errors


@report_user_errors
def main(argv=None) -> None:
    from hira.paper.tables import make_tables

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path, help="folder searched (recursively) for run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the tables (default: outputs)")
    args = parser.parse_args(argv)
    markdown, written = make_tables(args.outputs, args.out)
    print(markdown)
    print("wrote " + ", ".join(str(p) for p in written))

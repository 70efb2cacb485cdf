"""Regenerate the paper's tables from finished runs, the paper's numbers side by side.

    python scripts/make_tables.py outputs/ [--out DIR]

Writes tables.md and tables.tex (and fig6_rank_sweep.png when HiRA ran at several ranks) into DIR (default: the
outputs folder) and prints the Markdown. Logic: hira/paper/tables.py; the paper's numbers: hira/paper/numbers.yaml.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's hira package

from hira.errors import report_user_errors  # noqa: E402


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


if __name__ == "__main__":
    main()

"""Compare two groups of runs question by question: is B better than A, and by how much?

    hira-compare DIR --a KEY=VALUE [...] --b KEY=VALUE [...] [--json FILE] [--scoring MODE] [--seed N]
                 [--resamples N]                                (or python scripts/compare.py, same)

e.g. --a method.name=lora --b method.name=hira, or --a task.loss_on=response --b task.loss_on=full. A group is the
finished runs under DIR whose settings hold every pair (one per seed); the groups may differ only in the keys
named and must have been scored on the same questions. Prints B − A per subset and for the macro average with a
95 % paired hierarchical bootstrap interval, a two-sided p, Holm's correction across the subsets and whether each
difference survives it; --json writes the same figures. Nothing is written into a run folder.
Method and assumptions: docs/tables.md; logic: hira/paper/compare.py and hira/paper/paired.py.
"""

import argparse
from pathlib import Path

from hira.errors import UserError, report_user_errors


def check_json_target(path: Path, runs) -> None:
    """--json may not point into a run folder (hira-compare never writes there)."""
    target = path.resolve()
    for run in runs:
        if target.is_relative_to(run.path.resolve()):
            raise UserError(f"--json {path}: inside the run folder {run.path}; hira-compare writes no run folder, "
                            f"choose a file outside it")


@report_user_errors
def main(argv=None) -> None:
    from hira.files import write_json_atomic
    from hira.paper import paired
    from hira.paper.compare import compare, parse_pairs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("outputs", type=Path, help="folder searched (recursively) for run directories")
    parser.add_argument("--a", nargs="+", required=True, metavar="KEY=VALUE", help="settings of group A")
    parser.add_argument("--b", nargs="+", required=True, metavar="KEY=VALUE", help="settings of group B")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--scoring", default=None,
                        help="only runs whose best checkpoint was scored this way (generate | loglik)")
    parser.add_argument("--seed", type=int, default=paired.SEED, help="the bootstrap's random seed")
    parser.add_argument("--resamples", type=int, default=paired.RESAMPLES, help="bootstrap replicates")
    args = parser.parse_args(argv)
    report = compare(args.outputs, parse_pairs(args.a, "--a"), parse_pairs(args.b, "--b"), args.scoring,
                     args.seed, args.resamples)
    if args.json:
        check_json_target(args.json, report.group_a + report.group_b)
    print(report.table())
    if args.json:
        write_json_atomic(args.json, report.as_json())
        print(f"wrote {args.json}")

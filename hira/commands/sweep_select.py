"""The learning rate each method trains its remaining seeds at, after the first stage of +experiment=lr_sweep.

    hira-sweep-select outputs/lr_sweep      (or python scripts/sweep_select.py, same)

Prints the tuning table (best validation loss per method and rate at the first seed, the lowest marked) and the
second stage's command; `sweep.lr_factor=chosen` in that command picks the same rates. docs/tables.md: the protocol.
"""

import argparse
from pathlib import Path

from hira.errors import UserError, report_user_errors


@report_user_errors
def main(argv=None) -> None:
    from hira.paper.lr_sweep import choose, tuning_runs
    from hira.paper.runs import find_runs
    from hira.paper.tables import tuning_markdown

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="the first stage's folder (outputs/lr_sweep by default)")
    args = parser.parse_args(argv)
    runs, _ = find_runs(args.sweep_dir)
    tuning = tuning_runs(runs)
    if not tuning:
        raise UserError(f"{args.sweep_dir} holds no finished run of +experiment=lr_sweep; run the first stage: "
                        "python train.py -m +experiment=lr_sweep method=<a>,<b>")
    chosen = choose(tuning)
    print("\n".join(line for line in tuning_markdown(tuning, chosen, 0).splitlines() if line.startswith("|")))
    for pick in sorted(chosen.values(), key=lambda t: t.method):
        print(f"chosen: {pick.method}: lr {pick.lr:g} (× {pick.factor:g} its default), best val loss "
              f"{pick.val_loss:.4f} ({pick.path})")
    methods = ",".join(sorted({t.name for t in chosen.values()}))
    print("second stage (the other seeds at the chosen rates; add the first stage's other overrides):\n"
          f"  python train.py -m +experiment=lr_sweep method={methods} sweep.lr_factor=chosen seed=2,3,4,5 "
          f"hydra.sweep.dir={args.sweep_dir}")

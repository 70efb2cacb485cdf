"""Singular-value statistics of the learned updates ΔW, per layer and module (the paper's Figures 4, 5, 7, 8).

    hira-analyze-updates RUN_OR_CHECKPOINT [...] [--out DIR] [--threshold 0.005]
                                                   (or python scripts/analyze_updates.py, same arguments)

A run directory is analysed at its best checkpoint; a checkpoints/step_<N> folder as it is. Writes into --out
(default: <run>/analysis/ for one run directory, so a run is analysed into itself; analysis/ for several)
update_spectra.csv / .json and fig4_sv_count.png, fig5_sv_sq_sum.png, fig7_rank.png, fig8_effective_rank.png,
one curve per run. Logic: hira/paper/rank_analysis.py.
"""

import argparse
from pathlib import Path

from hira.errors import report_user_errors


def default_out(paths: list[Path]) -> Path:
    """One run directory's own analysis/ folder; analysis/ here for several runs or a checkpoint folder."""
    from hira.run_dir import ANALYSIS_DIR, RunDir

    if len(paths) == 1 and RunDir(paths[0]).config.is_file():
        return RunDir(paths[0]).analysis
    return Path(ANALYSIS_DIR)


@report_user_errors
def main(argv=None) -> None:
    from hira.paper.rank_analysis import THRESHOLD, analyze_updates

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories or checkpoint folders")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <run>/analysis/ for one run directory, else analysis/)")
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="singular values counted above this")
    parser.add_argument("--device", default="cpu", help="where to load the models (e.g. cuda for 8B runs)")
    args = parser.parse_args(argv)
    spectra, written = analyze_updates(args.runs, args.out or default_out(args.runs), args.threshold, args.device)
    for run in sorted({s.run for s in spectra}):
        mine = [s for s in spectra if s.run == run]
        print(f"{run}: {len(mine)} layers, mean rank {sum(s.rank for s in mine) / len(mine):.1f}, "
              f"mean effective rank {sum(s.effective_rank for s in mine) / len(mine):.1f}, "
              f"mean #σ>{args.threshold} {sum(s.sv_count for s in mine) / len(mine):.1f}")
    print("wrote " + ", ".join(str(p) for p in written))

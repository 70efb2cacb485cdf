"""Trainable parameters of a method on a model, counted on the meta device (no weights, no memory).

    hira-count-params model=llama3_8b method=mora        (or python scripts/count_params.py, same arguments)
    hira-count-params --all model=smollm2_135m           (every registered method at its defaults, one table)

The arguments are train.py's Hydra overrides. Logic: hira/adapters/count.py.
"""

from __future__ import annotations

import sys

from hira.adapters import all_methods
from hira.adapters.count import Count, count_from_config, paper_percent
from hira.adapters.params import method_params
from hira.checkout import require_checkout
from hira.errors import UserError, report_user_errors


def compose_config(overrides: list[str]):
    """train.py's config for these overrides; Hydra's many-line answer to a bad one becomes its first line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    with initialize_config_dir(config_dir=str(require_checkout()), version_base="1.3"):
        try:
            return compose("train", overrides=overrides)
        except HydraException as e:
            raise UserError(f"{' '.join(overrides)}: {str(e).strip().splitlines()[0]}") from None


def method_table(overrides: list[str]) -> list[tuple[str, dict, Count]]:
    """(method, its params, its count) for every registered method at its config defaults on one model."""
    rows = []
    for method in all_methods():
        cfg = compose_config([f"method={method}", *overrides])
        rows.append((method, method_params(cfg.method), count_from_config(cfg)))
    return rows


def format_table(rows: list[tuple[str, dict, Count]]) -> str:
    """Markdown: the paper's % (of base + method) and the % of the base model alone."""
    lines = ["| method | params | trainable | % of base + method | % of base |", "|---|---|---:|---:|---:|"]
    for method, params, result in rows:
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        lines.append(f"| {method} | {shown or '—'} | {result.trainable:,} | {result.percent:.4f} | "
                     f"{result.percent_of_base:.4f} |")
    return "\n".join(lines)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(args):
        print(__doc__)
        return
    if "--all" in args:
        args.remove("--all")
        print(format_table(method_table(args)))
        return
    cfg = compose_config(args)
    result = count_from_config(cfg)
    paper = paper_percent(cfg)
    print(f"{cfg.method.name} on {cfg.model.name}: trainable {result.trainable:,} of {result.total:,} "
          f"({result.percent:.4f} %)" + (f"; paper {paper:.4f} %" if paper is not None else ""))

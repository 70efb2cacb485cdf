"""Command-line checks that run before Hydra, whose own message for a typo is a many-line wall."""

from __future__ import annotations

from pathlib import Path

from hira.errors import UserError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
GROUPS = ("method", "model", "task", "hardware")


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))


def check_group_choices(args: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """`method=foo` (or a sweep `method=hira,foo`) names a yaml in configs/method/, else one line listing the valid ones."""
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS or "(" in value:  # sweep functions like glob(...) are Hydra's to expand
            continue
        valid = group_options(key, config_dir)
        for choice in value.split(","):
            if choice not in valid:
                raise UserError(f"unknown {key} {choice!r}; valid: {', '.join(valid)} (configs/{key}/*.yaml)")


def given_keys(args: list[str]) -> set[str]:
    return {arg.partition("=")[0].lstrip("+~") for arg in args if "=" in arg}


def check_eval_args(args: list[str]) -> None:
    """eval.py scores a training run (run_dir=) or a model (model= with task=); anything else is one line."""
    keys = given_keys(args)
    if "model" in keys and "task" not in keys:
        raise UserError("model= needs task=<name> too: the test sets to score the model on "
                        f"(valid: {', '.join(group_options('task'))})")
    if "model" not in keys and "run_dir" not in keys:
        raise UserError("give run_dir=<a folder made by train.py> to score its checkpoints, or model=<name> "
                        "task=<name> to score a model no run made (its base, adapter=<peft folder>)")

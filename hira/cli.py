"""Command-line checks that run before Hydra, whose own message for a typo is a many-line wall, and the
clean-up of a run directory Hydra created for a run that failed its up-front checks."""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

from hira.checkout import CONFIG_DIR
from hira.errors import UserError
from hira.run_dir import RunDir

GROUPS = ("method", "model", "task", "hardware", "cluster")


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


def override_values(args: list[str], key: str) -> list[str] | None:
    """The values `key=` takes on the command line (a sweep's comma list split under -m), or None if not given."""
    multirun = "-m" in args or "--multirun" in args
    for arg in args:
        name, sep, value = arg.partition("=")
        if sep and name.lstrip("+~") == key:
            return value.split(",") if multirun else [value]
    return None


HELP_FLAGS = ("-h", "--help", "--hydra-help", "-i", "--info", "-c", "--cfg")


def check_eval_args(args: list[str]) -> None:
    """eval.py's choice, checked before Hydra (which would otherwise print a 100-line MissingMandatoryValue or
    create <run_dir>/eval_logs inside a mistyped folder): a training run's run_dir, or model= with task= (then
    run_dir is the scoring run to write). watch=true may name a run whose config.yaml is to come."""
    if any(arg in HELP_FLAGS for arg in args):
        return
    if override_values(args, "model"):
        if not override_values(args, "task"):
            raise UserError("model= needs task=<name> too: the test sets to score the model on "
                            f"(valid: {', '.join(group_options('task'))})")
        return
    run_dirs = override_values(args, "run_dir")
    if not run_dirs or not all(run_dirs):
        raise UserError("run_dir is required: python eval.py run_dir=<a folder made by train.py> "
                        "[checkpoints=best|all|step_N], or model=<name> task=<name> to score a model no run made")
    if (override_values(args, "watch") or ["false"])[-1].lower() == "true":
        return
    for run_dir in run_dirs:
        if not RunDir(run_dir).config.is_file():
            what = "has no config.yaml" if Path(run_dir).is_dir() else "does not exist"
            raise UserError(f"run_dir={run_dir} {what}; point run_dir at a folder made by train.py "
                            f"(outputs/<task>/<method>/<model>/<time>_s<seed>)")


def hydra_files() -> set[str]:
    """The names Hydra itself writes into a job's run directory: .hydra/ and <job name>.log."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return {name for name in (hc.output_subdir, f"{hc.job.name}.log") if name}


def discard_unstarted_run_dir(main):
    """On a UserError, remove the run directory when it holds only Hydra's own files.

    Hydra creates the run directory before main runs; a run that fails its up-front checks (bad model path,
    data or option) has written nothing of its own, and an empty folder beside real runs only misleads, so it
    goes and the error is on stderr. Once the run wrote anything (config.yaml comes right after the checks) the
    folder stays and report_user_errors appends the error to its train.log."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError:
            remove_if_only_hydra_files()
            raise
    return wrapper


def remove_if_only_hydra_files() -> None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    run_dir = Path(HydraConfig.get().runtime.output_dir).resolve()
    if run_dir == Path.cwd().resolve() or not run_dir.is_dir():  # ranks > 0 run in "." (train.py)
        return
    if {p.name for p in run_dir.iterdir()} <= hydra_files():
        close_log_files(run_dir)
        shutil.rmtree(run_dir)
        remove_empty_parents(run_dir.parent, Path.cwd().resolve())


def remove_empty_parents(folder: Path, top: Path) -> None:
    """Remove folder and its parents while they are empty, below `top` (Hydra made them with parents=True:
    outputs/<task>/<method>/<model>/ would otherwise stay behind)."""
    while folder != top and folder.is_relative_to(top) and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def close_log_files(folder: Path) -> None:
    """Detach and close the root logger's file handlers writing into folder (before it is deleted)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().parent == folder:
            root.removeHandler(handler)
            handler.close()

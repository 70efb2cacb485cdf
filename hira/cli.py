"""Command-line checks that run before Hydra, whose own message for a typo is a many-line wall, and the
clean-up of a run directory Hydra created for a run that failed its up-front checks."""

from __future__ import annotations

import functools
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from hira.checkout import CONFIG_DIR
from hira.errors import UserError
from hira.run_dir import RunDir

GROUPS = ("method", "model", "task", "hardware", "cluster")

# Hydra's flags under which no job of this config runs: it prints help or the config, or loads another config
HYDRA_ONLY = ("help", "hydra_help", "cfg", "info", "shell_completion", "config_path", "config_name", "config_dir",
              "experimental_rerun")


@dataclass(frozen=True)
class CommandLine:
    """The command line as Hydra reads it: its own argument parser, then its override parser, so quoting (`key='a,b'`
    is one string), lists, `+key=`, `~key` and sweeps mean here what they mean to Hydra."""
    overrides: tuple  # hydra.core.override_parser.types.Override, in the order given
    multirun: bool    # -m / --multirun
    hydra_only: bool  # --help, --cfg, --config-name, ...: Hydra's own business

    @property
    def texts(self) -> list[str]:
        """The overrides as typed."""
        return [o.input_line for o in self.overrides]

    def values(self, key: str) -> list | None:
        """The values the line gives `key`, typed as Hydra types them (each of a sweep's), or None if it does not
        set it (`~key` removes it); a sweep Hydra expands against the config (glob) is None too."""
        setting = [o for o in self.overrides if o.key_or_group == key and not o.is_delete()]
        if not setting:
            return None
        override = setting[-1]  # Hydra applies them in order
        if not override.is_sweep_override():
            return [override.value()]
        try:
            return [getattr(v, "text", v) for v in override.sweep_iterator()]  # a quoted element: its text
        except Exception:  # noqa: BLE001 (glob(...) needs the config loader: Hydra expands it)
            return None

    def check_no_sweep(self) -> None:
        """Without -m a comma list is ambiguous to Hydra: one line saying so, before anything else reads it."""
        if self.multirun:
            return
        for o in self.overrides:
            if o.is_sweep_override():
                key = o.get_key_element()
                typed = o.input_line[len(key) + 1:]  # the value as typed
                raise UserError(f"{o.input_line}: a sweep needs -m (--multirun); for one string quote it: "
                                f"{key}='{typed}', for a list: {key}=[{typed}]")


@functools.lru_cache(maxsize=8)
def read_command_line(args: tuple[str, ...]) -> CommandLine | None:
    """The command line parsed once (the check phase asks it several times); None for one Hydra's argument parser
    rejects (Hydra says why when it runs). An override Hydra cannot parse is one line."""
    import contextlib
    import io

    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra prints argparse's usage itself
            parsed = get_args_parser().parse_args(list(args))
    except SystemExit:
        return None
    try:
        overrides = OverridesParser.create().parse_overrides(parsed.overrides)
    except OverrideParseException as e:
        raise UserError(" ".join(str(e).split())) from e
    hydra_only = any(getattr(parsed, flag) for flag in HYDRA_ONLY)
    return CommandLine(tuple(overrides), bool(parsed.multirun), hydra_only)


def command_line(args: list[str]) -> CommandLine | None:
    return read_command_line(tuple(args))


def group_options(group: str, config_dir: Path = CONFIG_DIR) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir) / group).glob("*.yaml"))


def check_group_choices(args: list[str], config_dir: Path = CONFIG_DIR) -> None:
    """`method=foo` (or a sweep `method=hira,foo`) names a yaml in configs/method/, else one line listing the valid ones."""
    line = command_line(args)
    for group in GROUPS if line else ():
        valid = group_options(group, config_dir)
        for choice in line.values(group) or ():
            if choice is not None and str(choice) not in valid:
                raise UserError(f"unknown {group} {str(choice)!r}; valid: {', '.join(valid)} (configs/{group}/*.yaml)")


def check_eval_args(args: list[str]) -> None:
    """eval.py's choice, checked before Hydra (which would otherwise print a 100-line MissingMandatoryValue or
    create <run_dir>/eval_logs inside a mistyped folder): a training run's run_dir, or model= with task= (then
    run_dir is the scoring run to write). watch=true may name a run whose config.yaml is to come."""
    line = command_line(args)
    if line is None or line.hydra_only:
        return
    line.check_no_sweep()
    if given(line, "model"):
        if not given(line, "task"):
            raise UserError("model= needs task=<name> too: the test sets to score the model on "
                            f"(valid: {', '.join(group_options('task'))})")
        return
    run_dirs = line.values("run_dir")
    if not run_dirs or not all(run_dirs):
        raise UserError("run_dir is required: python eval.py run_dir=<a folder made by train.py> "
                        "[checkpoints=best|all|step_N], or model=<name> task=<name> to score a model no run made")
    if (line.values("watch") or [False])[-1] is True:
        return
    for run_dir in map(str, run_dirs):
        if not RunDir(run_dir).config.is_file():
            what = "has no config.yaml" if Path(run_dir).is_dir() else "does not exist"
            raise UserError(f"run_dir={run_dir} {what}; point run_dir at a folder made by train.py "
                            f"(outputs/<task>/<method>/<model>/<time>_s<seed>)")


def given(line: CommandLine, key: str) -> bool:
    """The line sets `key` to something other than null."""
    return any(value is not None for value in line.values(key) or ())


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

"""The check phase: a composed config against the schema (hira/config/schema.py), then the rules that span keys.

It reads files only to see that an input exists; it writes, loads and downloads nothing. Every problem is one
UserError line naming the key, the value given and what is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hira.checkout import CHECKOUT
from hira.config import schema
from hira.distributed import launched_ranks
from hira.errors import UserError

PROJECT = CHECKOUT
ABSENT = object()  # a key the config does not have (valid for Optional keys)


# --- one value against its declared type -----------------------------------------------------------------------------

def show(value) -> str:
    """A value as it is typed on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    if isinstance(value, list):
        return "[" + ",".join(show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{show(v)}" for k, v in value.items()) + "}"
    return str(value)


def optional_of(annotation) -> tuple[Any, bool]:
    """(the annotation without None, whether null is valid)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return annotation, False


def bounds_text(bounds: dict) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return " and ".join(f"{signs[name]} {bound}" for name, bound in bounds.items())


def describe(annotation, bounds: dict | None = None) -> str:
    """What is valid for a key, as an error message says it."""
    base, nullable = optional_of(annotation)
    origin = typing.get_origin(base)
    if origin is Literal:
        text = ", ".join(show(c) for c in typing.get_args(base))
    elif origin is list:
        text = f"a list of {describe(typing.get_args(base)[0], bounds)}"
        bounds = None
    elif origin is dict or base is Any:
        text = "a mapping"
    elif dataclasses.is_dataclass(base):
        text = f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(base))}"
    else:
        text = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(base, str(base))
    if bounds:
        text += " " + bounds_text(bounds)
    return text + (" or null" if nullable else "")


def fits_scalar(value, base) -> bool:
    if base in (int, float):  # an int is a valid float; a bool is no number
        return isinstance(value, (int,) if base is int else (int, float)) and not isinstance(value, bool)
    return isinstance(value, base)


def within(value, bounds: dict) -> bool:
    tests = {"ge": value >= bounds.get("ge", value), "gt": "gt" not in bounds or value > bounds["gt"],
             "le": value <= bounds.get("le", value), "lt": "lt" not in bounds or value < bounds["lt"]}
    return all(tests.values())


def invalid(key: str, value, valid: str) -> UserError:
    return UserError(f"{key}={show(value)}: valid: {valid}")


def check_value(value, annotation, metadata: dict, key: str) -> None:
    base, nullable = optional_of(annotation)
    bounds = metadata.get("bounds") or {}
    if base is Any:  # typed elsewhere: a method's parameters by its signature
        return
    if value is ABSENT or value is None:
        if nullable:
            return
        if value is ABSENT:
            raise UserError(f"{key} is missing; valid: {describe(annotation, bounds)}")
        raise invalid(key, value, describe(annotation, bounds))
    origin = typing.get_origin(base)
    if dataclasses.is_dataclass(base):
        if not isinstance(value, DictConfig):
            raise invalid(key, value, describe(base))
        check_section(value, base, key)
    elif origin is Literal:
        if not any(type(value) is type(c) and value == c for c in typing.get_args(base)):
            raise invalid(key, value, describe(annotation))
    elif origin is list:
        if not isinstance(value, (ListConfig, list)):
            raise invalid(key, value, describe(annotation, bounds))
        for i in range(len(value)):
            check_value(read(value, i, key), typing.get_args(base)[0], {"bounds": bounds}, f"{key}[{i}]")
    elif origin is dict:
        if not isinstance(value, DictConfig):
            raise invalid(key, value, describe(annotation))
        item_type = typing.get_args(base)[1]
        for name in value:
            check_value(read(value, name, key), item_type, {}, f"{key}.{name}")
    else:
        if not fits_scalar(value, base) or (bounds and not within(value, bounds)):
            raise invalid(key, value, describe(annotation, bounds))
    check = metadata.get("check")
    problem = check(value) if check else None
    if problem:
        raise UserError(f"{key}={show(value)}: {problem}")


def read(node, name, prefix: str):
    """node[name], resolved; ABSENT when the key is not there; an interpolation that fails is one line."""
    key = f"{prefix}[{name}]" if isinstance(name, int) else (f"{prefix}.{name}" if prefix else name)
    if isinstance(node, DictConfig) and name not in node:
        return ABSENT
    try:
        return node[name]
    except OmegaConfBaseException as e:
        raw = node._get_node(name)._value()
        reason = str(e).splitlines()[0]
        raise UserError(f"{key}={raw} cannot be resolved: {reason}") from e


def check_section(node: DictConfig, section, prefix: str = "") -> None:
    """Every key of node declared by the dataclass `section`, and every declared key's value valid."""
    declared = {f.name: f for f in dataclasses.fields(section)}
    hints = typing.get_type_hints(section)
    for name in node:
        if name not in declared:
            key = f"{prefix}.{name}" if prefix else name
            close = difflib.get_close_matches(str(name), declared, n=1)
            hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}? " if close else ""
            raise UserError(f"{key}: unknown key; {hint}valid keys{' of ' + prefix if prefix else ''}: "
                            f"{', '.join(declared)}")
    for name, f in declared.items():
        key = f"{prefix}.{name}" if prefix else name
        check_value(read(node, name, prefix), hints[name], f.metadata, key)


# --- rules that span keys ---------------------------------------------------------------------------------------------

def check_batch_split(global_batch: int, micro_batch: int, world: int) -> None:
    """The global batch splits into micro batches on every rank (gradient accumulation makes up the rest)."""
    if global_batch % (micro_batch * world) == 0:
        return
    ranks = f"{world} rank{'s' * (world > 1)}"
    divides = (f"or a hardware.micro_batch_size that divides {global_batch // world}"
               if global_batch % world == 0 else f"or a global batch divisible by {world} ranks")
    raise UserError(f"train.global_batch_size={global_batch} is not divisible by hardware.micro_batch_size="
                    f"{micro_batch} × {ranks}; valid: a multiple of {micro_batch * world}, {divides}")


def check_method_params(method_cfg) -> None:
    """The method's parameters (and op options) against its constructor's typed signature."""
    from hira.adapters.base import check_params
    from hira.adapters.params import method_arguments

    check_params(method_cfg.name, method_arguments(method_cfg))


def check_tiny(tiny) -> None:
    if tiny.hidden_size % tiny.num_heads:
        raise UserError(f"model.tiny.hidden_size={tiny.hidden_size} is not divisible by model.tiny.num_heads="
                        f"{tiny.num_heads}; valid: a hidden size that is a multiple of the number of heads")


def check_model(model_cfg) -> None:
    from hira.models.loading import check_model_path

    if model_cfg.get("tiny") is not None:
        check_tiny(model_cfg.tiny)
    check_model_path(model_cfg)  # a typed model.path must hold a model; only cache_path is ever built into


def inside_project(path: Path) -> bool:
    return path.resolve().is_relative_to(PROJECT.resolve())


def check_data_dir(task_cfg) -> None:
    """A typed path is an input: it must exist. A synthetic task writes its data on first use, and creates the
    folder for it only inside the project; elsewhere it writes into an existing folder."""
    from hira.data.tasks import prepare_hint

    data_dir = Path(task_cfg.data_dir).expanduser()
    if data_dir.is_dir():
        return
    if task_cfg.get("synthetic") is None:
        raise UserError(f"task.data_dir={task_cfg.data_dir} does not exist; {prepare_hint(task_cfg)}")
    if not inside_project(data_dir):
        raise UserError(f"task.data_dir={task_cfg.data_dir} does not exist; valid: an existing folder (the synthetic "
                        f"data is written into it), or a new folder inside the project {PROJECT}")


def check_task(task_cfg) -> None:
    from hira.data.formats import FORMATS

    fmt = FORMATS[task_cfg.format]
    for subset in task_cfg.test_subsets:
        fmt.canonical_subset(subset)  # one line naming the format's subsets
    if task_cfg.get("synthetic") is not None:
        check_section(task_cfg.synthetic, fmt.synthetic_settings, "task.synthetic")
    check_data_dir(task_cfg)


def check_logger(logger: str) -> None:
    if logger == "wandb" and importlib.util.find_spec("wandb") is None:
        raise UserError("logger=wandb needs the wandb package: pip install wandb (or use logger=none)")


def check_train_config(cfg) -> None:
    """train.py's composed config: the schema, then the rules between keys. Raises a one-line UserError."""
    check_section(cfg, schema.TrainConfig)
    check_logger(cfg.logger)
    check_method_params(cfg.method)
    check_batch_split(cfg.train.global_batch_size, cfg.hardware.micro_batch_size, launched_ranks())
    check_model(cfg.model)  # a missing 8B folder is named before the data it would train on
    check_task(cfg.task)
    check_run_folder(cfg)
    check_method_fits_model(cfg.method, cfg.model)  # last: it builds the model's empty copy


META_UNSUPPORTED = (RuntimeError, NotImplementedError, TypeError, ValueError)


def check_method_fits_model(method_cfg, model_cfg) -> None:
    """The method's values that depend on the model's shape (a rank above a layer's size, a target module the model
    lacks), checked on an empty copy of the model built from its config.json or tiny settings (models/loading.py
    skeleton): the method is applied to it as to the real one, and nothing is loaded or written."""
    from hira.adapters.base import AdapterConfigError
    from hira.adapters.params import apply_method
    from hira.models.loading import skeleton

    model = skeleton(model_cfg)
    if model is None:
        return
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the real load warns, once
            apply_method(model, method_cfg)
    except AdapterConfigError:
        raise
    except META_UNSUPPORTED:  # a method whose set-up needs real weights: its checks run when the model loads
        return




def check_run_folder(cfg) -> None:
    """run_dir= naming an existing folder: it must be empty, or a run (it holds config.yaml: train.py writes it
    first), since training writes into it; a run with a checkpoint to continue must be resumed under the settings
    it trained with (hira/config/settings.py resume_changes)."""
    from hira.config.settings import resume_changes
    from hira.run_dir import TRAIN_LOG, RunDir

    hydra_leftovers = {".hydra", TRAIN_LOG}  # what Hydra writes into the run folder before the job starts
    run = RunDir(Path(cfg.run_dir).expanduser())
    if not run.path.exists():
        return
    if not run.path.is_dir():
        raise UserError(f"run_dir={cfg.run_dir} is a file, not a run folder; valid: a new folder, or an existing "
                        f"run's folder to resume it")
    if not run.config.is_file():
        others = sorted(p.name for p in run.path.iterdir() if p.name not in hydra_leftovers)
        if others:
            raise UserError(f"run_dir={cfg.run_dir} is not a run: it holds {', '.join(others[:3])}"
                            f"{', ...' if len(others) > 3 else ''} but no {run.config.name}; valid: a new or empty "
                            f"folder, or an existing run's folder to resume it")
        return
    if cfg.resume is not False and run.has_checkpoints():
        resume_changes(cfg.run_dir, OmegaConf.load(run.config), cfg)


def check_eval_config(cfg) -> None:
    """eval.py's composed config (a training run's folder is checked by hira.cli.check_eval_args)."""
    check_section(cfg, schema.EvalConfig)
    if cfg.get("model") is not None:
        check_model(cfg.model)
        check_task(cfg.task)
        check_scoring_run_dir(cfg.run_dir, cfg.model)
    check_subsets(cfg.subsets, cfg.task if cfg.get("model") is not None else run_task(cfg.run_dir))


def check_scoring_run_dir(run_dir: str, model_cfg) -> None:
    """eval.py model=...: an existing run_dir must be a scoring run of the same model, since scoring rewrites its
    config.yaml and adds to its scores.json (a training run's record, or another model's scores, would be lost or
    mixed)."""
    from hira.run_dir import RunDir

    config = RunDir(run_dir).config
    if not config.is_file():
        return
    run = OmegaConf.load(config)
    method = OmegaConf.select(run, "method.name")
    if method is None:
        raise UserError(f"run_dir={run_dir} holds a config.yaml that names no method, not one of a run; valid: a "
                        f"new folder for model={model_cfg.name}'s scores")
    if method != "base" and not method.startswith("peft_"):
        raise UserError(f"run_dir={run_dir} holds a training run ({method} on model "
                        f"{OmegaConf.select(run, 'model.name')}); valid: a new folder for model={model_cfg.name}'s "
                        "scores, or no model= to score that run's checkpoints")
    theirs = (OmegaConf.select(run, "model.name"), OmegaConf.select(run, "model.path"))
    ours = (model_cfg.name, model_cfg.get("path"))
    if (theirs[0], folder(theirs[1])) != (ours[0], folder(ours[1])):
        raise UserError(f"run_dir={run_dir} holds scores of model {theirs[0]} ({theirs[1]}), not of "
                        f"model={ours[0]} ({ours[1]}); valid: a new folder, or the one that model was scored in")


def folder(path) -> Path | None:
    return Path(path).expanduser().resolve() if path else None


def run_task(run_dir: str):
    """The task a training run's config.yaml names, or None before training has written it (watch mode)."""
    from hira.run_dir import RunDir

    config = RunDir(run_dir).config
    return OmegaConf.load(config).task if config.is_file() else None


def check_subsets(subsets, task_cfg=None) -> None:
    """`subsets`: test sets of the task scored, or while it is not known yet, of any format."""
    from hira.data.formats import all_subsets
    from hira.data.tasks import format_of

    if not subsets:
        return
    valid = all_subsets() if task_cfg is None else [format_of(task_cfg).canonical_subset(s)
                                                   for s in task_cfg.test_subsets]
    unknown = [s for s in subsets if s not in valid]
    if unknown:
        raise UserError(f"subsets={show(subsets)}: {unknown[0]} is not a test set of "
                        f"{'any task' if task_cfg is None else 'task ' + task_cfg.name}; valid: {', '.join(valid)}")


def check_scoring(eval_cfg) -> None:
    """The scoring settings the evaluator runs with (configs/eval.yaml's, merged with a caller's overrides)."""
    check_section(eval_cfg, schema.Scoring)

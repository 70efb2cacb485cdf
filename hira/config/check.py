"""The check phase: a composed config against the schema (hira/config/schema.py), then the rules that span keys.

It reads files only to see that an input exists; it writes, loads and downloads nothing. Every problem is one
UserError line naming the key, the value given and what is valid.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib.util
import json
import typing
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import Field, TypeAdapter, ValidationError, create_model
from pydantic.dataclasses import is_pydantic_dataclass

from hira.checkout import CHECKOUT
from hira.config import schema
from hira.distributed import launched_ranks
from hira.errors import UserError

PROJECT = CHECKOUT


# --- a section against its pydantic dataclass: pydantic's first error as one line -------------------------------------

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


TYPES = {"integer": "an integer", "number": "a number", "boolean": "true or false", "string": "a string"}
BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")  # a key the section does not declare


@functools.cache
def validator(section) -> tuple[TypeAdapter, dict]:
    """pydantic's validator of `section` and its JSON schema (what an error message says is valid)."""
    if not is_pydantic_dataclass(section):  # a format's synthetic settings: a plain dataclass, ranges in `bounds`
        hints = typing.get_type_hints(section)
        section = create_model(section.__name__, __config__=schema.CONFIG, **{
            f.name: (hints[f.name], Field(**f.metadata.get("bounds", {}))) for f in dataclasses.fields(section)})
    adapter = TypeAdapter(section)
    return adapter, adapter.json_schema()


def followed(node: dict, defs: dict) -> dict:
    """A JSON schema node with its reference followed."""
    return defs.get(node.get("$ref", "").rpartition("/")[2], node)


def inner(node: dict, defs: dict) -> dict:
    """A section's or list's JSON schema node, its reference followed and null left out (Optional[X] -> X)."""
    node = followed(node, defs)
    options = [o for o in node.get("anyOf", [node]) if o.get("type") != "null"]
    return followed(options[0], defs) if len(options) == 1 else node


def valid_values(node: dict, defs: dict) -> str:
    """What is valid for a key, as an error message says it, from its JSON schema."""
    node = followed(node, defs)
    if "anyOf" in node:
        options = [valid_values(o, defs) for o in node["anyOf"] if o.get("type") != "null"]
        return " or ".join(options + ["null"] * (len(options) < len(node["anyOf"])))
    if "enum" in node or "const" in node:
        return ", ".join(show(choice) for choice in node.get("enum", [node.get("const")]))
    if node.get("type") == "array":
        return f"a list of {valid_values(node['items'], defs)}"
    if node.get("type") == "object":
        return f"a mapping with keys {', '.join(node['properties'])}" if "properties" in node else "a mapping"
    bounds = " and ".join(f"{sign} {node[name]}" for name, sign in BOUNDS.items() if name in node)
    return " ".join(filter(None, [TYPES.get(node.get("type"), "a value"), bounds]))


def dotted(loc: tuple, prefix: str) -> str:
    key = prefix
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    return key


def one_line(error: dict, top: dict, prefix: str) -> str:
    """pydantic's error as the project's line: the key, the value given and what is valid."""
    defs, key = top.get("$defs", {}), dotted(error["loc"], prefix)
    parent = node = top
    for part in error["loc"]:  # the key's schema, and its section's
        parent = inner(node, defs)
        node = parent["items"] if isinstance(part, int) else parent.get("properties", {}).get(part, {})
    if error["type"] in UNKNOWN:
        name, section = str(error["loc"][-1]), dotted(error["loc"][:-1], prefix)
        declared = list(parent.get("properties", {}))
        close = difflib.get_close_matches(name, declared, n=1)
        hint = f"did you mean {section + '.' if section else ''}{close[0]}? " if close else ""
        return f"{key}: unknown key; {hint}valid keys{' of ' + section if section else ''}: {', '.join(declared)}"
    if error["type"] == "missing":
        return f"{key} is missing; valid: {valid_values(node, defs)}"
    if isinstance(error.get("ctx", {}).get("error"), schema.ValueProblem):  # the check says what is valid
        return f"{key}={show(error['input'])}: {error['ctx']['error']}"
    return f"{key}={show(error['input'])}: valid: {valid_values(node, defs)}"


def resolved(node, prefix: str):
    """The config as plain data; an interpolation that fails is one line naming its key."""
    try:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    except OmegaConfBaseException as e:
        raw = OmegaConf.to_container(node, resolve=False)
        for part in str(e.full_key).split("."):
            raw = raw.get(part) if isinstance(raw, dict) else None  # a list item's interpolation: shown as None
        raise UserError(f"{dotted((e.full_key,), prefix)}={raw} cannot be resolved: {str(e).splitlines()[0]}") from e


def check_section(node, section, prefix: str = "") -> None:
    """`node` (a config or its part at `prefix`) against the dataclass `section` (hira/config/schema.py): every key
    declared, every value of its type and range, the section's rules between keys; else one UserError line. JSON
    mode: strict types, and a section's value is a mapping, as in the yaml."""
    adapter, top = validator(section)
    try:
        adapter.validate_json(json.dumps(resolved(node, prefix), default=str))
    except ValidationError as e:
        first = min(e.errors(), key=lambda error: error["type"] not in UNKNOWN)  # a typo's key before its missing one
        raise UserError(one_line(first, top, prefix)) from None


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




def check_model(model_cfg) -> None:
    from hira.models.loading import check_model_path

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
        resume_changes(cfg.run_dir, run.load_config(), cfg)


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

    run = RunDir(run_dir)
    return run.load_config().task if run.config.is_file() else None


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

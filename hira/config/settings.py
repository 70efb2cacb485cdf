"""Which keys of a run's settings can change its result, derived from the schema's marks (hira/config/schema.py).

Every key of config.yaml is one of three kinds:
    result   can change a run's numbers (the default: lr, max_steps, the data, the model, the method's params, ...)
    repeat   tells repeats of one setting apart (seed, data_seed): the tables average over them
    neutral  cannot change a result (logging, placement, where lr and epochs were taken from, ...)
A key under a marked section takes its mark; a key the schema does not know counts as a result key.

Two uses: the tables' fingerprint (hira/paper/runs.py: result keys only) and resume's check (hira/training/
resume.py and train.py's check phase: a changed result or repeat key is refused, a changed neutral key recorded).
"""

from __future__ import annotations

import dataclasses
import types
import typing

from omegaconf import OmegaConf

from hira.config import schema
from hira.errors import UserError

RESULT, REPEAT, NEUTRAL = "result", "repeat", "neutral"
SCHEDULE_KEYS = ("train.max_steps", "train.epochs")  # they set the learning-rate schedule's length
ABSENT = "<absent>"


def unwrap(annotation):
    """Optional[X] -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def mark(dotted: str, section=schema.TrainConfig) -> tuple[str, str | None]:
    """(kind, reason) of a dotted key: the first mark on its path through the schema; result when none."""
    for name in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(section)}
        if name not in fields:
            return RESULT, None
        for kind in (NEUTRAL, REPEAT):
            if fields[name].metadata.get(kind):
                return kind, fields[name].metadata[kind]
        section = unwrap(typing.get_type_hints(section)[name])
        if not dataclasses.is_dataclass(section):
            return RESULT, None
    return RESULT, None


def kind(dotted: str) -> str:
    return mark(dotted)[0]


def marked_keys(section=schema.TrainConfig, prefix: str = "") -> dict[str, tuple[str, str]]:
    """{dotted key: (kind, reason)} of every marked field of the schema (the keys under one share its mark)."""
    found = {}
    for f in dataclasses.fields(section):
        name = prefix + f.name
        marks = [(k, f.metadata[k]) for k in (NEUTRAL, REPEAT) if f.metadata.get(k)]
        if marks:
            found[name] = marks[0]
            continue
        inner = unwrap(typing.get_type_hints(section)[f.name])
        if dataclasses.is_dataclass(inner):
            found.update(marked_keys(inner, name + "."))
    return found


# --- a config as flat, comparable settings ---------------------------------------------------------------------------

def frozen(value):
    """A config value as a hashable one (lists -> tuples, mappings -> sorted item tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    return value


def flatten(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 0.01}} -> {"train.lr": 0.01}; lists stay values."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = frozen(value)
    return flat


def flat_settings(cfg) -> dict:
    """A config resolved and flattened (a run folder's as RunDir.load_config reads it: an older run's missing
    settings at the value that run used)."""
    return flatten(OmegaConf.to_container(cfg, resolve=True))


def result_settings(cfg) -> dict:
    """The tables' part of a run's fingerprint: its result keys (seeds and neutral keys left out)."""
    return {key: value for key, value in flat_settings(cfg).items() if kind(key) == RESULT}


# --- resume: the stored settings against the new command's ------------------------------------------------------------

def changes(stored: dict, new: dict) -> dict[str, tuple]:
    """{key: (old, new)} of every flat key whose value differs (ABSENT where one side lacks it)."""
    return {key: (stored.get(key, ABSENT), new.get(key, ABSENT)) for key in sorted(stored.keys() | new.keys())
            if stored.get(key, ABSENT) != new.get(key, ABSENT)}


def shown(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def resume_changes(run_dir, stored_cfg, new_cfg) -> dict[str, list]:
    """The neutral keys that differ between a run's stored settings and a resuming command's, as {key: [old, new]};
    a one-line UserError naming each result or repeat key that differs (key: old -> new), since continuing would
    train one run under two settings."""
    changed = changes(flat_settings(stored_cfg), flat_settings(new_cfg))
    refused = {key: values for key, values in changed.items() if kind(key) != NEUTRAL}
    if refused:
        listed = "; ".join(f"{key}: {shown(old)} -> {shown(new)}" for key, (old, new) in refused.items())
        schedule = [key for key in SCHEDULE_KEYS if key in refused]
        why = (f"{' and '.join(schedule)} {'change' if len(schedule) > 1 else 'changes'} the learning-rate schedule, "
               f"so it is a new run, not a resume" if schedule else "resuming would train one run under two settings")
        raise UserError(f"run_dir={run_dir} was trained with other settings ({listed}); {why}: start a new run with "
                        f"a new run_dir=, or resume with the run's own settings (its config.yaml)")
    return {key: [old, new] for key, (old, new) in changed.items()}

"""A command line checked before Hydra runs it: compose the config Hydra will compose and run the check phase.

Hydra creates the run directory (and its parents) before the job starts, and answers a mistyped key with a
many-line message; composing here first turns both into one line and no folder. The arguments are read by Hydra's
own parsers (hira.cli.command_line). Under -m every value of a swept key is checked (the other swept keys at their
first value). The check hands each config it passed on to the job (hira/config/handed_on.py): train() and
eval_settings check again only a config that differs from every one checked here (a sweep cell the samples left out,
a cell in its own folder).
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager

from hira.checkout import CONFIG_DIR
from hira.cli import command_line
from hira.errors import UserError


def check_command_line(config_name: str, args: list[str], check) -> None:
    """Compose `config_name` with the command line's overrides and run check(cfg) on it (each sweep sample)."""
    line = command_line(args)
    if line is None or line.hydra_only:
        return  # --cfg, --help, --config-name, ... or a line Hydra's argument parser rejects: Hydra's own business
    overrides = line.texts
    jobs = sweep_samples(configured_sweep(config_name, overrides) + overrides) if line.multirun else [overrides]
    for job in jobs:
        with composed(config_name, job) as cfg:
            check(cfg)


def configured_sweep(config_name: str, overrides: list[str]) -> list[str]:
    """The first value of each key of the sweep a config declares itself (hydra.sweeper.params: an experiment's
    grid) that the command line does not set. The grid's other values are the project's own, and each job checks
    its config again; the command line's sweep values are all checked."""
    plain = [arg for arg in overrides if not parsed_override(arg).is_sweep_override()]
    groups = [arg for arg in plain if "." not in key_of(arg)]
    try:
        params = compose_with_hydra(config_name, plain).hydra.sweeper.get("params") or {}
    except UserError:  # a bad key on the line: the experiment alone picks the grid, the samples name the key
        params = compose_with_hydra(config_name, groups).hydra.sweeper.get("params") or {}
    given = {key_of(arg) for arg in overrides}
    declared = [f"{name}={value}" for name, value in params.items()]
    firsts = [sweep_values(arg)[0] for arg in declared if key_of(arg) not in given]
    return [arg for arg in firsts if arg is not None]


def sweep_values(arg: str) -> list:
    """`key=a,b` -> ["key=a", "key=b"]; a plain override -> [itself]; [None] for a sweep this cannot expand
    (a glob over group options: the job checks its own config)."""
    parsed = parsed_override(arg)
    if not parsed.is_sweep_override():
        return [arg]
    try:
        return [f"{parsed.get_key_element()}={value}" for value in parsed.sweep_string_iterator()]
    except Exception:
        return [None]


def sweep_samples(overrides: list[str]) -> list[list[str]]:
    """Override lists that together hold every value of every swept key: the first values of all, then each
    other value of one key with the first values of the rest."""
    choices = [sweep_values(arg) for arg in overrides]
    firsts = [values[0] for values in choices]
    samples = [firsts] + [firsts[:i] + [value] + firsts[i + 1:] for i, values in enumerate(choices)
                          for value in values[1:]]
    return [[arg for arg in sample if arg is not None] for sample in samples]


def compose_with_hydra(config_name: str, overrides: list[str]):
    """The config Hydra composes from the overrides, its `hydra` node included; a failure is one line."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides, return_hydra_config=True)
    except HydraException as e:
        raise composition_error(e, config_name, overrides) from e


@contextmanager
def composed(config_name: str, overrides: list[str]):
    """The config Hydra composes from the overrides, without its `hydra` node; `${hydra:...}` interpolations
    resolve to the run directory Hydra would use."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    cfg = compose_with_hydra(config_name, overrides)
    saved = HydraConfig.instance().cfg
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
    HydraConfig.instance().set_config(cfg)
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    try:
        yield cfg
    finally:
        HydraConfig.instance().cfg = saved


def unknown_key(error) -> str | None:
    """The full key of a 'Key ... is not in struct' error in the exception's chain, or None."""
    while error is not None:
        full_key = getattr(error, "full_key", None)
        if full_key and "not in struct" in str(error):
            return full_key
        error = error.__cause__
    return None


def composition_error(error, config_name: str, overrides: list[str]) -> UserError:
    """One line for Hydra's composition error; a key the config lacks is named with the key(s) meant."""
    key = unknown_key(error)
    if key is None:
        message = str(error).partition("Config search path")[0]  # where Hydra looked: noise here
        return UserError(" ".join(message.split()))  # Hydra's message, on one line
    given = next((o for o in overrides if key_of(o) == key), key)
    others = [o for o in overrides if o is not given]
    try:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose(config_name, others)
    except Exception:  # another problem on the line: name this key alone
        return UserError(f"{given}: no such key; python {config_name}.py --cfg job lists the keys")
    if key.startswith("method."):
        check_method_key(cfg.method, key, given)
    return UserError(f"{given}: no such key; {suggestion(key, cfg)}")


def check_method_key(method_cfg, key: str, given: str) -> None:
    """A method parameter the method does not declare: its own one-line message, listing what it declares."""
    from hira.adapters.base import all_methods, check_param, config_key, declared_params

    name = key.rpartition(".")[2]
    if method_cfg.get("name") in all_methods() and key == config_key(name):
        check_param(method_cfg.name, name, parsed_override(given).value(), declared_params(method_cfg.name))


def parsed_override(arg: str):
    """Hydra's parse of one `key=value` argument (the value typed as Hydra types it)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides([arg])[0]


def key_of(arg: str) -> str:
    """The key (or config group) a `key=value` argument sets, without Hydra's +, ++ or ~ and @package."""
    return parsed_override(arg).key_or_group


def suggestion(key: str, cfg) -> str:
    """'did you mean' the keys of the config ending in the same name, or else the closest ones, or the valid
    keys beside it."""
    from omegaconf import OmegaConf

    keys = list(dotted_keys(OmegaConf.to_container(cfg)))
    leaf = key.rpartition(".")[2]
    same_leaf = [k for k in keys if k.rpartition(".")[2] == leaf]
    close = same_leaf or difflib.get_close_matches(key, keys, n=1)
    if close:
        return f"did you mean {' or '.join(close)}?"
    parent = key.rpartition(".")[0]
    siblings = [k[len(parent) + 1:].partition(".")[0] if parent else k.partition(".")[0] for k in keys
                if k.startswith(parent + ".") or not parent]
    return f"valid keys{' of ' + parent if parent else ''}: {', '.join(dict.fromkeys(siblings))}"


def dotted_keys(tree: dict, prefix: str = ""):
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            yield from dotted_keys(value, key + ".")
        else:
            yield key



def check_launcher_config(config_name: str, args: list[str], check) -> None:
    """Under -m, check(cfg.hydra.launcher) on the composed config (the first sweep sample): a launcher that cannot
    start is one line before any cell runs. A launcher (hydra/launcher=...) that does not exist fails to compose."""
    line = command_line(args)
    if line is None or line.hydra_only or not line.multirun:
        return
    first = sweep_samples(line.texts)[0]
    check(compose_with_hydra(config_name, first).hydra.launcher)

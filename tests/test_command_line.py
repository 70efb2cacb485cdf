"""The command line read once, by Hydra's parsers (hira/cli.py CommandLine), and checked once: the check phase hands
the config it passed on to the job (hira/config/handed_on.py), which checks only a config that was not checked."""

import importlib.util
import logging
import runpy
import sys

import pytest
from conftest import ROOT, common_overrides
from omegaconf import OmegaConf

from hira.cli import check_eval_args, check_group_choices, command_line
from hira.errors import UserError


def entry_point(name: str):
    """train.py or eval.py as a module (its check phase and its Hydra main)."""
    spec = importlib.util.spec_from_file_location(f"{name}_entry", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Hydra's parse, not a hand-split `key=value` --------------------------------------------------------------------

def a_run(folder):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("task: {name: synthetic, format: commonsense, test_subsets: [piqa, boolq], "
                                        "num_beams: 2, max_new_tokens: 8}\n")
    return folder


def test_a_quoted_value_with_a_comma_is_one_value(tmp_path):
    run = a_run(tmp_path / "seed1,seed2")
    check_eval_args([f"run_dir='{run}'"])
    check_eval_args(["-m", f"run_dir='{run}'"])  # quoted: one folder even under -m
    assert command_line(["-m", f"run_dir='{run}'"]).values("run_dir") == [str(run)]
    with pytest.raises(UserError, match=r"seed1 does not exist"):  # unquoted under -m: a sweep over two folders
        check_eval_args(["-m", f"run_dir={run}"])


def test_a_sweep_without_multirun_is_one_line_naming_the_two_ways_to_type_it(tmp_path):
    with pytest.raises(UserError, match=r"^run_dir=a,b: a sweep needs -m \(--multirun\); for one string quote it: "
                                        r"run_dir='a,b', for a list: run_dir=\[a,b\]$"):
        check_eval_args(["run_dir=a,b"])


def test_quoted_sweep_choices_and_lists_are_hydras():
    check_group_choices(["-m", "method='hira','lora'", "task.test_subsets=[boolq,piqa]"])
    assert command_line(["-m", "method='hira','lora'"]).values("method") == ["hira", "lora"]
    assert command_line(["subsets='a,b'"]).values("subsets") == ["a,b"]
    assert command_line(["subsets=[a,b]"]).values("subsets") == [["a", "b"]]
    with pytest.raises(UserError, match="unknown method 'nope'"):
        check_group_choices(["-m", "method=hira,'nope'"])


def test_add_and_delete_forms(tmp_path):
    run = a_run(tmp_path / "run")
    line = command_line(["+model=tiny", "~task=synthetic", "++seed=3", "--cfg", "job"])
    assert line.values("model") == ["tiny"] and line.values("task") is None and line.values("seed") == [3]
    assert line.hydra_only and not command_line(["-m", "seed=1"]).hydra_only
    with pytest.raises(UserError, match="^model= needs task="):  # ~task=... removes the task, it does not set it
        check_eval_args(["+model=tiny", "~task=synthetic"])
    check_eval_args(["+model=tiny", "+task=synthetic"])
    check_eval_args(["~model=tiny", f"run_dir={run}", "watch=TRUE"])
    with pytest.raises(UserError, match="unknown model 'nope'"):
        check_group_choices(["+model=nope"])


def test_an_override_hydra_cannot_parse_is_one_line():
    with pytest.raises(UserError, match=r"^Error parsing override 'method=hira\)'") as error:
        check_group_choices(["method=hira)"])
    assert "\n" not in str(error.value)


# --- checked once ------------------------------------------------------------------------------------------------------

class Stop(Exception):
    """Raised where training would start reading data: the check is all these tests run."""


@pytest.fixture
def counted_checks(monkeypatch):
    """{"check phase": n, "train": n}: check_train_config's calls from each, training stopped before it reads data."""
    import hira.config.check
    import hira.training.loop as loop
    from hira.config import handed_on

    calls = {"check phase": 0, "train": 0}
    original = hira.config.check.check_train_config

    def counting(where):
        def check(cfg):
            calls[where] += 1
            original(cfg)
        return check

    monkeypatch.setattr(hira.config.check, "check_train_config", counting("check phase"))
    monkeypatch.setattr(loop, "check_train_config", counting("train"))
    monkeypatch.setattr(loop, "load_run_inputs", lambda cfg: (_ for _ in ()).throw(Stop()))
    monkeypatch.setattr(handed_on, "PASSED", set())
    return calls


def train_config(args):
    """The config Hydra gives train.py's job for `args`, sweep options popped as hira.paper.sweep.run does."""
    from hira.config.command_line import composed
    from hira.paper.sweep import pop_sweep_options

    with composed("train", args) as cfg:
        pop_sweep_options(cfg)
        return cfg


@pytest.fixture
def logging_kept():
    """The logging set-up as it was before Hydra configured it for a job (root handlers and level, disabled loggers)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    loggers = {name: logger.disabled for name, logger in logging.Logger.manager.loggerDict.items()
               if isinstance(logger, logging.Logger)}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.disabled = loggers.get(name, False)


def test_train_py_checks_once_under_hydra(workdir, tmp_path, monkeypatch, counted_checks, logging_kept):
    """The real entry point: the check phase, then Hydra's own composition for the job; train() trusts the config."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    args = [*common_overrides(workdir), f"run_dir={tmp_path / 'run'}"]
    monkeypatch.setattr(sys, "argv", [str(ROOT / "train.py"), *args])
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # Stop itself, not Hydra's exit 1
    try:
        with pytest.raises(Stop):
            runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    finally:
        GlobalHydra.instance().clear()
        HydraConfig.instance().cfg = None  # the job's Hydra config: no later test runs inside it
    assert counted_checks == {"check phase": 1, "train": 0}


def test_a_config_the_check_phase_did_not_pass_is_checked(workdir, tmp_path, counted_checks):
    from hira.training.loop import train

    args = [*common_overrides(workdir), f"run_dir={tmp_path / 'run'}"]
    entry_point("train").check_arguments(args)
    with pytest.raises(Stop):
        train(train_config(args + ["seed=7"]))  # one value other than the checked config's
    assert counted_checks == {"check phase": 1, "train": 1}
    with pytest.raises(Stop):
        train(train_config(args))  # the checked one: trusted once
    with pytest.raises(Stop):
        train(train_config(args))  # a library caller's second call: checked
    assert counted_checks == {"check phase": 1, "train": 2}


def test_a_direct_train_call_is_checked(workdir, tmp_path, counted_checks):
    from hira.training.loop import train

    cfg = train_config([*common_overrides(workdir), f"run_dir={tmp_path / 'run'}"])
    with pytest.raises(Stop):
        train(cfg)
    assert counted_checks == {"check phase": 0, "train": 1}
    cfg.hardware.micro_batch_size = 3  # no longer divides the global batch of 8: the check is what stops it
    with pytest.raises(UserError, match="train.global_batch_size=8 is not divisible by hardware.micro_batch_size=3"):
        train(cfg)


def test_eval_py_hands_its_scoring_settings_on(tmp_path, monkeypatch):
    import hira.evaluation.evaluator as evaluator
    from hira.config import handed_on

    calls = []
    original = evaluator.check_scoring
    monkeypatch.setattr(evaluator, "check_scoring", lambda cfg: (calls.append(cfg), original(cfg)))
    monkeypatch.setattr(handed_on, "PASSED", set())
    run = a_run(tmp_path / "run")
    eval_py = entry_point("eval")
    eval_py.check_arguments([f"run_dir={run}", "batch_size=4", "subsets=[boolq]"])
    assert len(calls) == 1  # the check phase's
    task = OmegaConf.load(run / "config.yaml").task
    settings = dict(batch_size=4, num_beams=None, max_new_tokens=None, subsets=["boolq"], limit=None, device=None,
                    mode="generate", engine="prefill", bertscore={"model": "roberta-large", "num_layers": 17,
                                                                  "batch_size": 64})
    assert evaluator.eval_settings(task, settings).num_beams == 2
    assert len(calls) == 1  # the job's settings: the ones checked
    evaluator.eval_settings(task, {**settings, "batch_size": 5})
    assert len(calls) == 2  # other settings: checked

"""The typed schema (hira/config): every bad value is one line naming the key, the value and what is valid,
exit 2, before anything is written, loaded or downloaded; no folder appears.

Most cases run in-process through the function train.py and eval.py call before Hydra (check_command_line);
a handful run the real scripts, in parallel, to see the exit status, the printed lines and the file system.
"""

import copy
import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from conftest import ROOT
from omegaconf import OmegaConf

from hira.cli import group_options
from hira.config import schema
from hira.config.check import check_eval_config, check_section, check_train_config
from hira.config.command_line import check_command_line, composed, parsed_override, sweep_samples
from hira.data.formats import FORMATS
from hira.errors import UserError

@pytest.fixture(scope="module", autouse=True)
def nothing_written_under_the_checkout():
    """The in-process checks, like the scripts below, leave the checkout as they found it."""
    before = files_under(ROOT)
    yield
    assert files_under(ROOT) == before


# (overrides, the start of the one line: key=value as given, then what is valid)
ISSUE_TABLE = [
    (["train.lr=abc"], "train.lr=abc: valid: a number > 0"),
    (["seed=x"], "seed=x: valid: an integer >= 0"),
    (["task.loss_on=ful"], "task.loss_on=ful: valid: response, full"),
    (["train.global_batch_size=7", "hardware.micro_batch_size=2"],
     "train.global_batch_size=7 is not divisible by hardware.micro_batch_size=2 × 1 rank; valid: a multiple of 2"),
    (["train.warmup_steps=-5"], "train.warmup_steps=-5: valid: an integer >= 0"),
    (["model.dtype=float13"], "model.dtype=float13: valid: float32, bfloat16, float16"),
    (["task.data_dir=/nonexistent"], "task.data_dir=/nonexistent does not exist; valid: an existing folder"),
    (["method.r=16"], "method.r=16: no such key; did you mean method.params.r?"),
]
ENUMS = [
    (["resume=maybe"], "resume=maybe: valid: auto, strict, false"),
    (["logger=tensorboard"], "logger=tensorboard: valid: none, wandb"),
    (["wandb.mode=onlin"], "wandb.mode=onlin: valid: offline, online, disabled"),
    (["train.on_nonfinite=ignore"], "train.on_nonfinite=ignore: valid: stop, skip"),
    (["task.format=csv"], "task.format=csv: valid: commonsense, gsm8k, convai2"),
    (["method.name=hirra"], "method.name=hirra: valid: dora, full, "),
    (["hardware.device=gpu"], "hardware.device=gpu: valid: cpu, cuda, cuda:N"),
    (["task.test_subsets=[piqa,gsm8k]"], "task.test_subsets: 'gsm8k' is not a commonsense test set; valid: boolq, "),
]
RANGES = [  # one per range the schema declares on train.py's keys
    (["train.lr=0"], "train.lr=0: valid: a number > 0"),
    (["method.lr=-1"], "method.lr=-1: valid: a number > 0"),
    (["method.demo_lr=0"], "method.demo_lr=0: valid: a number > 0 or null"),
    (["train.weight_decay=-0.1"], "train.weight_decay=-0.1: valid: a number >= 0"),
    (["train.adam_betas=[0.9,1.0]"], "train.adam_betas[1]=1.0: valid: a number >= 0 and < 1"),
    (["train.adam_betas=[0.9]"], "train.adam_betas=[0.9]: valid: two numbers"),
    (["train.max_steps=-2"], "train.max_steps=-2: valid: an integer >= -1"),
    (["train.global_batch_size=0"], "train.global_batch_size=0: valid: an integer >= 1"),
    (["hardware.micro_batch_size=0"], "hardware.micro_batch_size=0: valid: an integer >= 1"),
    (["train.epochs=0"], "train.epochs=0: valid: an integer >= 1"),
    (["train.grad_clip=-1"], "train.grad_clip=-1: valid: a number >= 0"),
    (["train.eval_steps=0"], "train.eval_steps=0: valid: an integer >= 1"),
    (["train.log_steps=0"], "train.log_steps=0: valid: an integer >= 1"),
    (["train.eval_batch_size=0"], "train.eval_batch_size=0: valid: an integer >= 1"),
    (["train.keep_last=-1"], "train.keep_last=-1: valid: an integer >= 0 or null"),
    (["data.mega_batch=0"], "data.mega_batch=0: valid: an integer >= 1"),
    (["data_seed=-1"], "data_seed=-1: valid: an integer >= 0"),
    (["eval_limit=0"], "eval_limit=0: valid: an integer >= 1 or null"),
    (["task.val_size=0"], "task.val_size=0: valid: an integer >= 1"),
    (["task.split_seed=-1"], "task.split_seed=-1: valid: an integer >= 0"),
    (["task.train_limit=0"], "task.train_limit=0: valid: an integer >= 1 or null"),
    (["task.epochs=0"], "task.epochs=0: valid: an integer >= 1"),
    (["task.cutoff_len=1"], "task.cutoff_len=1: valid: an integer >= 2"),
    (["task.num_beams=0"], "task.num_beams=0: valid: an integer >= 1"),
    (["task.max_new_tokens=0"], "task.max_new_tokens=0: valid: an integer >= 1"),
    (["task.synthetic.train_per_subset=0"], "task.synthetic.train_per_subset=0: valid: an integer >= 1"),
    (["task.synthetic.seed=-3"], "task.synthetic.seed=-3: valid: an integer >= 0"),
    (["hardware.torch_threads=0"], "hardware.torch_threads=0: valid: an integer >= 1 or null"),
    (["model.tiny.num_heads=0"], "model.tiny.num_heads=0: valid: an integer >= 1"),
    (["model.tiny.hidden_size=130"], "model.tiny.hidden_size=130 is not divisible by model.tiny.num_heads=4"),
    (["model.tiny.pretrain.lr=0"], "model.tiny.pretrain.lr=0: valid: a number > 0"),
    (["model.tiny.pretrain.seq_len=1"], "model.tiny.pretrain.seq_len=1: valid: an integer >= 2"),
]
TYPES_AND_KEYS = [
    (["evaluate_after_training=maybe"], "evaluate_after_training=maybe: valid: true or false"),
    (["train.gradient_checkpointing=1"], "train.gradient_checkpointing=1: valid: true or false"),
    (["task.test_subsets=piqa"], "task.test_subsets=piqa: valid: a list of a string"),
    (["+train.foo=1"], "train.foo: unknown key; valid keys of train: lr, "),
    (["task.synthetic.sed=1"], "task.synthetic.sed=1: no such key; did you mean task.synthetic.seed?"),
    (["method.params.r=abc"], "method=hira: method.params.r='abc' is not of type int"),
    (["method=lora", "method.params.bogus=1"], "method=lora: unknown key method.params.bogus=1; valid keys: "),
    (["hardware.ds_config=ds_configs/nope.json"], "hardware.ds_config=ds_configs/nope.json: no such file"),
    (["model.path=/nonexistent"], "model tiny: no weights at model.path=/nonexistent"),
    (["task=commonsense", "task.data_dir=/nonexistent"], "task.data_dir=/nonexistent does not exist; run `python "
                                                           "scripts/prepare_data.py commonsense"),
    (["-m", "train.lr=1e-3,abc"], "train.lr=abc: valid: a number > 0"),  # every value of a sweep
]


CHECKS = {"train": check_train_config, "eval": check_eval_config}
BASE_CONFIGS = {}


def base_config(script: str):
    """train.py's default config (eval.py's with EVAL_BASE), composed once for the table's value cases."""
    if script not in BASE_CONFIGS:
        with composed(script, [] if script == "train" else EVAL_BASE) as cfg:
            BASE_CONFIGS[script] = cfg
    return copy.deepcopy(BASE_CONFIGS[script])


def error_of(script: str, args: list[str]) -> str:
    """The one-line error check_command_line gives; a case that sets existing keys only is set on the composed
    default instead of composed again (the same values and the same check, a few ms instead of a compose)."""
    cfg, base_args = base_config(script), args if script == "train" else args[len(EVAL_BASE):]
    parsed = [parsed_override(arg) for arg in base_args if arg[0] not in "+~-"]
    same_keys = len(parsed) == len(base_args) and all(
        not p.is_sweep_override() and "." in p.key_or_group and
        OmegaConf.select(cfg, p.key_or_group, default=KeyError) is not KeyError for p in parsed)
    with pytest.raises(UserError) as err:
        if same_keys:
            for p in parsed:
                OmegaConf.update(cfg, p.key_or_group, p.value(), merge=False)
            CHECKS[script](cfg)
        else:
            check_command_line(script, args, CHECKS[script])
    return str(err.value)


@pytest.mark.parametrize("args, expected", ISSUE_TABLE + ENUMS + RANGES + TYPES_AND_KEYS, ids=lambda v: str(v))
def test_each_bad_train_value_is_one_line_naming_key_value_and_what_is_valid(args, expected):
    message = error_of("train", args)
    assert message.startswith(expected) and "\n" not in message, message


def test_the_schema_declares_every_range_the_table_tests():
    """Every bounded key of train.py's schema has a row in RANGES (a new range gets its bad value tested)."""
    def walk(section, prefix=""):
        hints = typing.get_type_hints(section)
        for f in dataclasses.fields(section):
            key, kind = f"{prefix}{f.name}", hints[f.name]
            if f.metadata.get("bounds"):
                yield key
            for t in (kind, *typing.get_args(kind)):
                if dataclasses.is_dataclass(t):
                    yield from walk(t, key + ".")

    tested = {row[1].split("=")[0].split("[")[0].split(" ")[0] for row in RANGES + ISSUE_TABLE}
    untested = [key for key in walk(schema.TrainConfig) if key not in tested and not key.startswith("model.tiny.")]
    assert untested == [], untested


EVAL_BASE = ["model=tiny", "task=synthetic"]
BAD_EVAL = [
    (["eval.mode=beam"], "eval.mode=beam: valid: generate, loglik"),
    (["eval.engine=vllm"], "eval.engine=vllm: valid: prefill, hf"),
    (["batch_size=0"], "batch_size=0: valid: an integer >= 1"),
    (["num_beams=0"], "num_beams=0: valid: an integer >= 1 or null"),
    (["max_new_tokens=0"], "max_new_tokens=0: valid: an integer >= 1 or null"),
    (["limit=-1"], "limit=-1: valid: an integer >= 1 or null"),
    (["poll_s=0"], "poll_s=0: valid: a number > 0"),
    (["watch_timeout_s=0"], "watch_timeout_s=0: valid: a number > 0 or null"),
    (["watch=maybe"], "watch=maybe: valid: true or false"),
    (["checkpoints=latest"], "checkpoints=latest: valid: best, all or step_<N>"),
    (["device=gpu"], "device=gpu: valid: cpu, cuda, cuda:N"),
    (["subsets=[piqa,gsm8k]"], "subsets=[piqa,gsm8k]: gsm8k is not a test set of task synthetic; valid: boolq, "),
    (["adapter=/nonexistent"], "adapter=/nonexistent: no adapter_config.json there"),
    (["eval.bertscore.num_layers=0"], "eval.bertscore.num_layers=0: valid: an integer >= 1"),
    (["eval.forgetting_text=/nonexistent.txt"], "eval.forgetting_text=/nonexistent.txt: no such file"),
    (["model.dtype=float13"], "model.dtype=float13: valid: float32, bfloat16, float16"),
    (["task.data_dir=/nonexistent"], "task.data_dir=/nonexistent does not exist; valid: an existing folder"),
]


@pytest.mark.parametrize("args, expected", BAD_EVAL, ids=lambda v: str(v))
def test_each_bad_eval_value_is_one_line(args, expected):
    message = error_of("eval", EVAL_BASE + args)
    assert message.startswith(expected) and "\n" not in message, message


@pytest.mark.slow  # some 40 compositions
def test_every_config_composes_into_the_schema():
    """Each option of each group and each experiment has exactly the keys the schema declares, of their types
    (the paths they name may not exist on this machine: that is the check phase's other half)."""
    cases = [("train", [f"{group}={option}"]) for group in ("model", "method", "task", "hardware")
             for option in group_options(group)]
    cases += [("train", [f"+experiment={name}"]) for name in group_options("experiment") if name != "common"]
    for script, args in cases + [("eval", EVAL_BASE)]:
        with composed(script, args) as cfg:
            check_section(cfg, schema.TrainConfig if script == "train" else schema.EvalConfig)
            if cfg.get("task") and cfg.task.get("synthetic") is not None:  # typed by the format
                check_section(cfg.task.synthetic, FORMATS[cfg.task.format].synthetic_settings, "task.synthetic")


def test_eval_subsets_are_the_runs_test_sets(tmp_path):
    (tmp_path / "config.yaml").write_text("task: {name: synthetic, format: commonsense, test_subsets: [piqa, boolq]}\n")
    check_command_line("eval", [f"run_dir={tmp_path}", "subsets=[boolq]"], check_eval_config)
    with pytest.raises(UserError, match=r"^subsets=\[obqa\]: obqa is not a test set of task synthetic; valid: piqa, boolq$"):
        check_command_line("eval", [f"run_dir={tmp_path}", "subsets=[obqa]"], check_eval_config)


def scoring_into(run_dir: Path, method: str, model_name: str) -> list[str]:
    """eval.py model=tiny's arguments, run_dir already holding a run of `method` on `model_name` (path as tiny's)."""
    with composed("eval", EVAL_BASE) as cfg:
        model_path = cfg.model.path
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(
        {"method": {"name": method}, "model": {"name": model_name, "path": model_path}}))
    return EVAL_BASE + [f"run_dir={run_dir}"]


def test_scoring_a_model_never_overwrites_a_training_run_or_another_models_scores(tmp_path):
    check_command_line("eval", scoring_into(tmp_path, "base", "tiny"), check_eval_config)  # the same model again
    check_command_line("eval", scoring_into(tmp_path, "peft_lora", "tiny"), check_eval_config)
    with pytest.raises(UserError, match=rf"^run_dir={tmp_path} holds a training run \(hira on model tiny\); valid: "):
        check_command_line("eval", scoring_into(tmp_path, "hira", "tiny"), check_eval_config)
    with pytest.raises(UserError, match=rf"^run_dir={tmp_path} holds scores of model smollm2_135m \(.*\), not of "
                                        r"model=tiny \("):
        check_command_line("eval", scoring_into(tmp_path, "base", "smollm2_135m"), check_eval_config)
    (tmp_path / "config.yaml").write_text("foo: 1\n")
    with pytest.raises(UserError, match=rf"^run_dir={tmp_path} holds a config.yaml that names no method"):
        check_command_line("eval", EVAL_BASE + [f"run_dir={tmp_path}"], check_eval_config)


def test_good_values_pass_and_create_nothing(tmp_path):
    inside = ROOT / "data" / "never_made_by_the_check"
    check_command_line("train", [f"task.data_dir={inside}", "method=lora", "train.max_steps=-1"], check_train_config)
    assert not inside.exists()  # a synthetic folder inside the project is made on first use, not by the check
    check_command_line("train", [f"task.data_dir={tmp_path}", "resume=false", "train.keep_last=null"],
                       check_train_config)  # an existing folder outside the project takes the data
    check_command_line("eval", EVAL_BASE + ["eval.mode=loglik", "checkpoints=step_40"], check_eval_config)


def test_a_sweep_checks_every_value_of_every_swept_key():
    samples = sweep_samples(["method=hira,lora,dora", "seed=1,2", "train.lr=1"])
    values = {arg for sample in samples for arg in sample}
    assert values == {"method=hira", "method=lora", "method=dora", "seed=1", "seed=2", "train.lr=1"}
    assert len(samples) == 4  # linear in the values, not their product


# --- the real scripts: exit status, printed lines, files ----------------------------------------------------------

def files_under(folder: Path) -> set:
    skip = {".git", ".cache", "__pycache__", ".pytest_cache"}
    found = set()
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        found |= {os.path.join(top, name) for name in dirs + files}
    return found


SCRIPTS = [  # (script, arguments, the start of the line after "error: ")
    ("train.py", ["train.lr=abc"], "train.lr=abc: valid: a number > 0"),
    ("train.py", ["task.data_dir=/nonexistent"], "task.data_dir=/nonexistent does not exist"),
    ("train.py", ["method.r=16"], "method.r=16: no such key; did you mean method.params.r?"),
    ("eval.py", [*EVAL_BASE, "eval.mode=beam"], "eval.mode=beam: valid: generate, loglik"),
]


@pytest.mark.slow
def test_scripts_exit_2_with_one_line_and_create_nothing():
    before = files_under(ROOT)
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    procs = [subprocess.Popen([sys.executable, script, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for script, args, _ in SCRIPTS]
    full = subprocess.Popen([sys.executable, "train.py", "seed=x"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    for proc, (script, args, expected) in zip(procs, SCRIPTS):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (args, err[-2000:])
        assert out == "" and len(err.splitlines()) <= 2 and err.startswith(f"error: {expected}"), (args, err)
    out, err = full.communicate(timeout=300)
    assert "Traceback" in err and "UserError: seed=x: valid: an integer >= 0" in err  # HYDRA_FULL_ERROR=1 shows it
    assert files_under(ROOT) == before and not Path("/nonexistent").exists()

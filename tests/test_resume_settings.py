"""Resume continues the same run or refuses (hira/config/settings.py, hira/training/resume.py): which keys can change
a result, the refusal of a resume that changes one, and the check phase's refusals of a run_dir that is not a run and of a rank the model's
shape rules out. The same through train.py, on a trained run: tests/test_resume.py."""

import importlib.util

import pytest
from conftest import ROOT, common_overrides, compose_config
from omegaconf import OmegaConf

from hira.config import settings
from hira.errors import UserError, report_user_errors
from hira.paper.runs import run_settings
from hira.run_dir import RunDir

# The tables' fingerprint filter before the schema marked the keys (hira/paper/runs.py IGNORED_KEYS): a key names
# itself and everything under it. The marks must leave every config's fingerprint as it was.
OLD_IGNORED_KEYS = (
    "seed", "data_seed", "run_dir", "resume", "experiment", "logger", "wandb", "train.log_steps", "train.keep_last",
    "train.eval_batch_size", "train.gradient_checkpointing", "hardware", "evaluate_after_training", "eval_limit",
    "method.lr", "method.demo_lr", "model.lr_key", "task.epochs", "model.cache_path", "method.fused",
    "method.fused_chunk_elems", "model.hub_id",
    "sweep",  # joined with the sweeps' options (how a sweep runs its cells), before the schema marked the keys
)


def old_ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in OLD_IGNORED_KEYS)


GROUPS = ("model", "method", "task", "hardware")


def every_config_key() -> set[str]:
    """The dotted keys of train.yaml and of every option of its groups and experiments, read as yaml (composing each
    with Hydra would take a second apiece): an experiment's keys are global, a group option's under its group."""
    keys = set()
    for path in [ROOT / "configs" / "train.yaml", *sorted((ROOT / "configs").glob("*/*.yaml"))]:
        tree = OmegaConf.to_container(OmegaConf.load(path))
        tree = {k: v for k, v in tree.items() if k not in ("defaults", "hydra")}
        group = path.parent.name
        keys |= set(settings.flatten({group: tree} if group in GROUPS else tree))
    return keys


def composed(*overrides: str):
    return compose_config(["run_dir=r", *overrides])


# --- the classification, and the fingerprint derived from it ---------------------------------------------------------

def test_the_schema_marks_exactly_the_keys_the_tables_ignored_each_with_its_reason():
    marked = settings.marked_keys()
    assert sorted(marked) == sorted(OLD_IGNORED_KEYS)
    assert {key for key, (kind, _) in marked.items() if kind == settings.REPEAT} == {"seed", "data_seed"}
    assert all(kind in (settings.NEUTRAL, settings.REPEAT) and len(reason) > 10 for kind, reason in marked.values())


def test_every_key_of_every_config_is_classified_as_before():
    keys = every_config_key()
    assert {"method.params.r", "hardware.micro_batch_size", "model.tiny.pretrain.steps", "train.lr"} <= keys
    changed = [key for key in keys if (settings.kind(key) != settings.RESULT) != old_ignored(key)]
    assert changed == []


@pytest.mark.parametrize("overrides", [[], ["+experiment=table1"], ["model=smollm2_135m", "method=lora",
                                                                      "hardware=gpu", "task=commonsense"]])
def test_the_tables_fingerprint_is_what_it_was(overrides):
    cfg = composed(*overrides)
    flat = settings.flatten(OmegaConf.to_container(cfg, resolve=True))
    assert run_settings(cfg, {}) == {k: v for k, v in flat.items() if not old_ignored(k)}


def test_keys_under_a_marked_section_share_its_mark_and_unknown_keys_count():
    assert settings.mark("hardware.micro_batch_size")[0] == settings.NEUTRAL
    assert settings.mark("wandb.project")[0] == settings.NEUTRAL
    assert settings.kind("model.tiny.seed") == settings.RESULT  # the tiny base's build seed shapes its weights
    assert settings.kind("method.params.r") == settings.RESULT
    assert settings.kind("a_key_from_a_newer_schema") == settings.RESULT


# --- resume's comparison ---------------------------------------------------------------------------------------------

def stored_and_new(*changes: str):
    return composed(), composed(*changes)


def test_a_neutral_change_is_returned_as_old_and_new():
    stored, new = stored_and_new("train.log_steps=3", "hardware.micro_batch_size=2", "train.keep_last=1")
    assert settings.resume_changes("r", stored, new) == {
        "hardware.micro_batch_size": [stored.hardware.micro_batch_size, 2], "train.keep_last": [None, 1],
        "train.log_steps": [stored.train.log_steps, 3]}
    assert settings.resume_changes("r", stored, stored) == {}


def test_a_result_key_or_seed_changed_is_refused_naming_each():
    stored, new = stored_and_new("train.lr=0.05", "task.loss_on=full", "seed=7", "train.log_steps=3")
    with pytest.raises(UserError) as refused:
        settings.resume_changes("r", stored, new)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("run_dir=r was trained with other settings (")
    for change in (f"train.lr: {stored.train.lr} -> 0.05", "task.loss_on: response -> full", "seed: 42 -> 7",
                   "data_seed: 42 -> 7"):
        assert change in message
    assert "train.log_steps" not in message and "start a new run with a new run_dir=" in message


def test_a_longer_schedule_is_a_new_run():
    stored, new = stored_and_new("train.max_steps=30")
    with pytest.raises(UserError, match=r"\(train.max_steps: -1 -> 30\); train.max_steps changes the learning-rate "
                                        r"schedule, so it is a new run, not a resume: start a new run"):
        settings.resume_changes("r", stored, new)


def test_a_legacy_config_compares_at_the_value_its_run_used(tmp_path):
    stored, new = stored_and_new()
    stored = OmegaConf.create(OmegaConf.to_container(stored, resolve=True))
    del stored.task["loss_on"], stored.task["format"]  # written before they existed: response, commonsense
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(stored))
    stored = RunDir(tmp_path).load_config()  # as resume reads it
    assert settings.resume_changes("r", stored, new) == {}
    with pytest.raises(UserError, match="task.loss_on: response -> full"):
        settings.resume_changes("r", stored, stored_and_new("task.loss_on=full")[1])


# --- the check phase: a run_dir that is not a run, a rank the model cannot take --------------------------------------

def train_py_check():
    """train.py's check phase, as `python train.py` runs it before Hydra (report_user_errors: exit 2)."""
    spec = importlib.util.spec_from_file_location("train_entry", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return report_user_errors(module.check_arguments)


def refused_line(capsys, args) -> str:
    with pytest.raises(SystemExit) as stopped:
        train_py_check()(args)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_a_run_dir_that_is_not_a_run_is_refused_untouched(workdir, tmp_path, capsys):
    folder = tmp_path / "a_data_folder"
    folder.mkdir()
    (folder / "train.json").write_text("[]")
    line = refused_line(capsys, [*common_overrides(workdir), f"run_dir={folder}"])
    assert line == (f"error: run_dir={folder} is not a run: it holds train.json but no config.yaml; valid: a new or "
                    f"empty folder, or an existing run's folder to resume it")
    assert [p.name for p in folder.iterdir()] == ["train.json"]


def test_a_rank_the_model_cannot_take_is_refused_before_any_folder(workdir, tmp_path, capsys):
    run_dir = tmp_path / "runs" / "r0"
    line = refused_line(capsys, [*common_overrides(workdir), "method.params.r=0", f"run_dir={run_dir}"])
    assert line == "error: method.params.r=0 must be in 1..64 for a 64×64 layer"  # TEST_TINY's hidden size
    assert not (tmp_path / "runs").exists()

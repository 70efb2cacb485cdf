"""Reliability: atomic checkpoints and rotation, the free-space check, the NaN/inf guard, determinism and the
one-line errors for bad configs, data and checkpoints (in-process, on the session tiny model)."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, common_overrides, compose_config
from safetensors.torch import load_file

from hira.adapters import trainable_state_dict
from hira.errors import UserError
from hira.training import batches, checkpoint, guard, resume
from hira.training.runlog import read_metrics

SHORT = ["train.log_steps=1", "evaluate_after_training=false"]


def config(workdir, *overrides):
    """The training config as train.py composes it; workdir=None: the defaults, without the test tiny settings."""
    base = common_overrides(workdir) + SHORT if workdir else []
    return compose_config(base + list(overrides))


@pytest.fixture
def train_here(workdir):
    """train() in this process (conftest undoes its one-rank environment afterwards)."""
    from hira.training.loop import train

    def run(run_dir, *overrides):
        return train(config(workdir, f"run_dir={run_dir}", *overrides))
    return run


def fake_checkpoints(root, steps, best):
    for step in steps:
        (root / f"step_{step}").mkdir(parents=True)
        (root / f"step_{step}" / checkpoint.ADAPTER_FILE).write_bytes(b"x")
    checkpoint.mark_best(root, best)


# --- checkpoints -------------------------------------------------------------------------------------------

def test_keep_last_rotation_never_deletes_best(tmp_path):
    fake_checkpoints(tmp_path, [10, 20, 30, 40, 50], best=20)
    (tmp_path / ".tmp_step_60").mkdir()  # a save killed half-way
    assert checkpoint.rotate(tmp_path, 2) == ["step_10", "step_30"]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_20", "step_40", "step_50"]
    assert checkpoint.best_checkpoint(tmp_path).name == "step_20"
    assert checkpoint.rotate(tmp_path, None) == [] and not list(tmp_path.glob(".del_*"))
    checkpoint.clean_partial(tmp_path)
    assert not (tmp_path / ".tmp_step_60").exists()


def test_save_fails_before_writing_when_disk_is_full(tmp_path, monkeypatch, llama):
    from hira.adapters import apply

    model = apply(llama, "hira", ["q_proj"], r=2)
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9, free=1000))
    with pytest.raises(UserError, match=r"not enough disk space to save step_7 .* MiB free"):
        checkpoint.save_checkpoint(SimpleNamespace(module=model), tmp_path, 7, {}, "")
    assert list(tmp_path.iterdir()) == []  # nothing partial left behind


def test_resume_modes(tmp_path):
    assert resume.resume_point(tmp_path / "checkpoints", "auto") is None  # a new run
    assert resume.resume_point(tmp_path / "checkpoints", False) is None
    fake_checkpoints(tmp_path / "checkpoints", [4, 8], best=4)
    assert resume.resume_point(tmp_path / "checkpoints", "auto").name == "step_8"
    with pytest.raises(UserError, match="resume=false but run_dir .* already has checkpoints"):
        resume.resume_point(tmp_path / "checkpoints", False)
    (tmp_path / "checkpoints" / "step_8" / checkpoint.STATE_FILE).write_text(json.dumps({"world_size": 2}))
    with pytest.raises(UserError, match="written by 2 ranks but this launch has 1"):
        resume.check_world_size(tmp_path / "checkpoints" / "step_8", 1)


# --- determinism and the NaN guard (train() in this process) -------------------------------------------------

@pytest.mark.slow
def test_same_seed_same_bytes_and_data_seed_only_moves_the_order(train_here, workdir, tmp_path):
    runs = {name: train_here(tmp_path / name, "train.max_steps=2", "train.eval_steps=2", *extra)
            for name, extra in {"a": [], "b": [], "d": ["data_seed=7"]}.items()}
    adapter = {name: (run / "checkpoints" / "step_2" / checkpoint.ADAPTER_FILE).read_bytes() for name, run in runs.items()}
    assert adapter["a"] == adapter["b"]
    assert adapter["d"] != adapter["a"]
    first_loss = {name: read_metrics(run / "metrics.jsonl")[1]["loss"] for name, run in runs.items()}
    assert first_loss["a"] == first_loss["b"] != first_loss["d"]  # step 1 already sees another batch

    from hira.models.loading import load_adapted_model  # data_seed leaves the adapter initialization alone
    init = {s: trainable_state_dict(load_adapted_model(config(workdir, *s))[0]) for s in [(), ("data_seed=7",), ("seed=1",)]}
    assert all(torch.equal(init[()][k], init[("data_seed=7",)][k]) for k in init[()])
    assert not all(torch.equal(init[()][k], init[("seed=1",)][k]) for k in init[()])
    assert batches.epoch_order(100, 7, 0) != batches.epoch_order(100, 42, 0)
    recorded = (runs["d"] / "config.yaml").read_text()
    assert "seed: 42\n" in recorded and "data_seed: 7\n" in recorded
    state = checkpoint.trainer_state(runs["d"] / "checkpoints" / "step_2")
    assert (state["seed"], state["data_seed"]) == (42, 7)


@pytest.mark.slow
def test_nonfinite_validation_loss_stops_naming_step_and_last_good_checkpoint(train_here, tmp_path):
    # warmup makes step 1's learning rate 0; step 2's huge update breaks the weights themselves
    with pytest.raises(guard.NonFiniteError) as err:
        train_here(tmp_path / "run", "train.lr=1e30", "train.max_steps=3", "train.eval_steps=1")
    message = str(err.value)
    assert message.startswith("step 2: non-finite validation loss, training stopped") and "\n" not in message
    assert "last good checkpoint is step_1" in message and "train.lr" in message
    events = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert events[-1]["event"] == "nonfinite" and events[-1]["step"] == 2
    ckpts = tmp_path / "run" / "checkpoints"
    assert [p.name for p in checkpoint.list_checkpoints(ckpts)] == ["step_1"]
    assert checkpoint.best_checkpoint(ckpts).name == "step_1"


def poison_step_2(monkeypatch):
    """A micro batch of step 2 with no response tokens: its mean loss is 0/0 = NaN, and so are its gradients."""
    from hira.training import loop

    calls, to_device = [], loop.to_device

    def poisoned(batch, device):
        calls.append(1)
        if len(calls) == 3:  # 2 micro batches per step: call 3 is step 2's first
            batch = {**batch, "labels": torch.full_like(batch["labels"], -100)}
        return to_device(batch, device)
    monkeypatch.setattr(loop, "to_device", poisoned)


@pytest.mark.slow
def test_nonfinite_loss_stops_before_the_update(train_here, tmp_path, monkeypatch):
    poison_step_2(monkeypatch)
    with pytest.raises(guard.NonFiniteError, match=r"^step 2: non-finite loss or gradient norm.*no checkpoint was saved"):
        train_here(tmp_path / "run", "train.max_steps=3", "train.eval_steps=10")


@pytest.mark.slow
def test_nonfinite_skip_drops_the_step(train_here, tmp_path, monkeypatch):
    poison_step_2(monkeypatch)
    run = train_here(tmp_path / "run", "train.max_steps=3", "train.eval_steps=10", "train.on_nonfinite=skip")
    events = read_metrics(run / "metrics.jsonl")
    assert [e["step"] for e in events if e["event"] == "nonfinite"] == [2]
    train = {e["step"]: e for e in events if e["event"] == "train"}
    assert train[2]["loss"] is None and train[3]["loss"] is not None
    assert train[2]["lr"] == train[1]["lr"] < train[3]["lr"]  # the dropped step did not advance the schedule either
    weights = load_file(run / "checkpoints" / "step_3" / checkpoint.ADAPTER_FILE)
    assert all(torch.isfinite(t).all() for t in weights.values())


# --- one-line errors for bad input ------------------------------------------------------------------------------

def test_unknown_group_choice_lists_the_valid_ones():
    from hira.cli import check_group_choices

    check_group_choices(["method=hira", "model=tiny", "train.lr=1", "hydra.run.dir=x"])
    for group, some_valid in {"method": ["hira", "lora"], "model": ["llama2_7b", "llama3_8b", "tiny"],
                              "task": ["commonsense", "synthetic"], "hardware": ["a100_zero3", "cpu", "gpu"]}.items():
        with pytest.raises(UserError, match=f"^unknown {group} 'nope'; valid: ") as err:
            check_group_choices([f"{group}=nope"])
        listed = str(err.value).split("valid: ")[1].split(" (")[0].split(", ")
        assert set(some_valid) <= set(listed) and listed == sorted(listed)
    with pytest.raises(UserError, match="unknown method 'nope'"):  # a multirun sweep list
        check_group_choices(["method=hira,nope"])


@pytest.mark.slow
def test_unknown_method_on_the_command_line_is_one_line():
    proc = subprocess.run([sys.executable, "train.py", "method=hirra"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: unknown method 'hirra'; valid: ") and proc.stderr.count("\n") == 1
    assert " hira, " in proc.stderr and "configs/method/*.yaml" in proc.stderr


def test_bad_targets_and_ranks(llama):
    from hira.adapters import apply

    with pytest.raises(UserError, match=r"target_modules: o_prj not in the model; its linear layers are .*q_proj"):
        apply(llama, "hira", ["q_proj", "o_prj"], r=2)
    for r in (0, -1, 17):  # the tiny Llama's k_proj is 16×32
        with pytest.raises(UserError, match=rf"method.params.r={r} must be in 1..16 for a 16×32 layer"):
            apply(llama, "hira", ["k_proj"], r=r)


def test_batch_that_does_not_split_across_ranks():
    from hira.training.engine_config import accumulation_steps

    assert accumulation_steps(32, 4, 2) == 4
    with pytest.raises(UserError, match=r"global_batch_size=16 is not divisible by hardware.micro_batch_size=4 × 3 ranks"):
        accumulation_steps(16, 4, 3)


def test_missing_and_malformed_data(tmp_path):
    from hira.data.tasks import load_task

    task = config(None, "task=commonsense", f"task.data_dir={tmp_path}").task
    with pytest.raises(UserError, match=rf"data file {tmp_path}/commonsense_170k.json not found; "
                                        r"run `python scripts/prepare_data.py commonsense"):
        load_task(task)
    (tmp_path / "commonsense_170k.json").write_text('[{"instruction": "a", "input": "", "output": "b"},\n oops]')
    with pytest.raises(UserError, match=r"commonsense_170k.json: invalid JSON at line 2"):
        load_task(task)
    good = {"instruction": "a", "input": "", "output": "b", "answer": "b"}
    (tmp_path / "commonsense_170k.json").write_text(json.dumps([good, good, {"instruction": "x"}]))
    with pytest.raises(UserError, match=r"commonsense_170k.json: record 2 lacks key\(s\) input, output, answer"):
        load_task(task)


def test_checkpoint_from_another_method_or_model(workdir, tmp_path):
    cfg = config(workdir)
    ckpt = tmp_path / "step_4"
    ckpt.mkdir()
    state = {"step": 4, **checkpoint.adapter_identity(cfg)}
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps(state))
    checkpoint.check_compatible(ckpt, cfg)
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps({**state, "method": "lora", "model": "llama3_8b"}))
    with pytest.raises(UserError, match=rf"^{ckpt} was trained with different settings \(method: checkpoint lora vs "
                                        r"config hira; model: checkpoint llama3_8b vs config tiny\)"):
        checkpoint.check_compatible(ckpt, cfg)
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps({**state, "data_seed": 7}))
    checkpoint.check_compatible(ckpt, cfg)  # evaluating does not care about the data order
    with pytest.raises(UserError, match=r"data_seed: checkpoint 7 vs config 42"):  # resuming does
        checkpoint.check_compatible(ckpt, cfg, resume.resume_identity(cfg))

"""Damaged checkpoints: the manifest finds a truncated, altered or deleted file before anything loads it; resume
falls back to the newest intact checkpoint and finishes bit-identical to an uninterrupted run (resume=strict
stops); eval.py and hira-analyze-updates refuse a damaged checkpoint in one line, watch mode skips it."""

import json
import logging
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, common_overrides, compose_config, distributed_env_kept

from hira.errors import UserError
from hira.evaluation.checkpoints import watch_checkpoints
from hira.evaluation.evaluator import evaluate_run
from hira.run_dir import setting_scores
from hira.training import checkpoint, resume
from hira.training.runlog import read_metrics


# --- the three kinds of damage ---------------------------------------------------------------------------------

def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    """Same size, one bit changed: only the digest can tell."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def delete(path):
    path.unlink()


DAMAGES = {"truncate": truncate, "flip": flip_a_byte, "delete": delete}


def one_line(text: str) -> str:
    assert text and "\n" not in text.strip(), text
    return text


def warnings(caplog) -> list[str]:
    return [one_line(r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]


# --- fast: checkpoints made of plain files -----------------------------------------------------------------------

def fake_checkpoint(root, step, best_step=None):
    """A step_<N> folder with a real checkpoint's file kinds and a manifest, written as save_checkpoint does."""
    ckpt = root / checkpoint.step_name(step)
    (ckpt / "engine").mkdir(parents=True)
    (ckpt / checkpoint.ADAPTER_FILE).write_bytes(bytes(range(256)) * 4)
    (ckpt / "engine" / "mp_rank_00_model_states.pt").write_bytes(b"engine state %d" % step * 100)
    (ckpt / "rng_rank0.pt").write_bytes(b"rng" * 50)
    (ckpt / "config.yaml").write_text("seed: 42\n")
    state = {"step": step, "best_step": best_step or step, "manifest": checkpoint.MANIFEST_FILE}
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps(state))
    checkpoint.write_manifest(ckpt)
    return ckpt


FAKE_FILES = [checkpoint.ADAPTER_FILE, "engine/mp_rank_00_model_states.pt", "rng_rank0.pt", "config.yaml",
              checkpoint.STATE_FILE, checkpoint.MANIFEST_FILE]


def test_manifest_lists_every_file_with_size_and_digest(tmp_path):
    ckpt = fake_checkpoint(tmp_path, 4)
    manifest = json.loads((ckpt / checkpoint.MANIFEST_FILE).read_text())
    assert sorted(manifest["files"]) == sorted(f for f in FAKE_FILES if f != checkpoint.MANIFEST_FILE)
    adapter = manifest["files"][checkpoint.ADAPTER_FILE]
    assert adapter == {"size": 1024, "sha256": checkpoint.sha256(ckpt / checkpoint.ADAPTER_FILE)}
    assert checkpoint.damage(ckpt) is None


@pytest.mark.parametrize("name", FAKE_FILES)
@pytest.mark.parametrize("kind", DAMAGES)
def test_each_damage_to_each_file_is_named(tmp_path, kind, name):
    ckpt = fake_checkpoint(tmp_path, 4)
    size = (ckpt / name).stat().st_size
    DAMAGES[kind](ckpt / name)
    problem = one_line(checkpoint.damage(ckpt))
    if name == checkpoint.MANIFEST_FILE:
        assert problem.startswith(checkpoint.MANIFEST_FILE)
    elif kind == "delete":
        assert problem == f"{name} is missing"
    elif kind == "truncate":
        assert problem == f"{name}: expected {size} bytes, found {size // 2}"
    else:
        assert problem.startswith(f"{name}: expected sha256 ")


def test_resume_falls_back_past_damaged_checkpoints_and_puts_best_back(tmp_path, caplog):
    for step, best in ((4, 4), (8, 8), (12, 8), (16, 16)):
        fake_checkpoint(tmp_path, step, best)
    checkpoint.mark_best(tmp_path, 16)
    truncate(tmp_path / "step_16" / checkpoint.ADAPTER_FILE)
    delete(tmp_path / "step_12" / "rng_rank0.pt")
    with pytest.raises(UserError, match=r"step_16 is damaged \(adapter.safetensors: expected 1024 bytes, found "
                                        r"512\); resume=strict stops here") as error:
        resume.resume_point(tmp_path, "strict")
    one_line(str(error.value))
    assert (tmp_path / "step_16").is_dir()  # strict moves nothing

    with caplog.at_level(logging.WARNING):
        assert resume.resume_point(tmp_path, "auto") == tmp_path / "step_8"
    assert warnings(caplog) == [
        f"checkpoint {tmp_path / 'step_16'} is damaged (adapter.safetensors: expected 1024 bytes, found 512): moved "
        f"to damaged_step_16; falling back to step_12",
        f"checkpoint {tmp_path / 'step_12'} is damaged (rng_rank0.pt is missing): moved to damaged_step_12; "
        f"falling back to step_8"]
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step_4", "step_8"]
    assert (tmp_path / "damaged_step_16").is_dir() and (tmp_path / "damaged_step_12").is_dir()
    assert checkpoint.best_checkpoint(tmp_path).name == "step_8"  # as it was when step_8 was saved


def test_resume_with_every_checkpoint_damaged_starts_fresh(tmp_path, caplog):
    fake_checkpoint(tmp_path, 4)
    checkpoint.mark_best(tmp_path, 4)
    flip_a_byte(tmp_path / "step_4" / "config.yaml")
    with caplog.at_level(logging.WARNING):
        assert resume.resume_point(tmp_path, "auto") is None
    assert warnings(caplog)[0].endswith("moved to damaged_step_4; falling back to a fresh start")
    assert checkpoint.list_checkpoints(tmp_path) == [] and not checkpoint.best_marker(tmp_path).exists()


def test_checkpoint_from_before_manifests_loads_with_a_note(tmp_path, caplog):
    ckpt = fake_checkpoint(tmp_path, 4)
    (ckpt / checkpoint.MANIFEST_FILE).unlink()
    (ckpt / checkpoint.STATE_FILE).write_text(json.dumps({"step": 4, "best_step": 4}))  # no "manifest" key
    with caplog.at_level(logging.WARNING):
        assert resume.resume_point(tmp_path, "strict") == ckpt
    assert warnings(caplog) == [f"{ckpt} was written before checkpoints had manifests: loading it unverified"]


def test_watch_skips_a_damaged_checkpoint_with_one_warning_and_goes_on(tmp_path, caplog):
    root = tmp_path / "checkpoints"
    for step in (4, 8):
        fake_checkpoint(root, step)
    truncate(root / "step_4" / "engine" / "mp_rank_00_model_states.pt")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "end", "step": 8}) + "\n")
    scored = []
    with caplog.at_level(logging.WARNING):
        assert watch_checkpoints(tmp_path, lambda c: scored.append(c.name), poll_s=0.01, timeout_s=10) == ["step_8"]
    assert scored == ["step_8"]
    assert warnings(caplog) == [f"watch: skipping checkpoint {root / 'step_4'}, it is damaged "
                                f"(engine/mp_rank_00_model_states.pt: expected 1400 bytes, found 700)"]


# --- slow: real checkpoints of the tiny model, trained in this process -------------------------------------------

STEPS = ["train.max_steps=12", "train.eval_steps=4", "train.log_steps=1", "evaluate_after_training=false"]


def train_config(workdir, run_dir, *overrides):
    return compose_config([*common_overrides(workdir), *STEPS, f"run_dir={run_dir}", *overrides])


def train(workdir, run_dir, *overrides):
    from hira.training.loop import train as train_loop

    return train_loop(train_config(workdir, run_dir, *overrides))


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def runs(workdir, tmp_path_factory):
    """An uninterrupted 12-step run, and the same run killed while saving step_12 (step_4 and step_8 on disk)."""
    folder = tmp_path_factory.mktemp("integrity")
    reference, killed = folder / "reference", folder / "killed"
    save = checkpoint.save_checkpoint

    def killing_save(engine, ckpt_root, step, *args, **kwargs):
        if step == 12:
            raise Killed
        return save(engine, ckpt_root, step, *args, **kwargs)

    with distributed_env_kept(), pytest.MonkeyPatch.context() as patch:
        train(workdir, reference)
        patch.setattr(checkpoint, "save_checkpoint", killing_save)
        with pytest.raises(Killed):
            train(workdir, killed)
    return reference, killed


@pytest.fixture
def killed_copy(runs, tmp_path):
    """A fresh copy of the killed run for one test to damage."""
    return shutil.copytree(runs[1], tmp_path / "run")


REAL_FILES = [checkpoint.ADAPTER_FILE, checkpoint.STATE_FILE, "config.yaml", "rng_rank0.pt",
              "engine/mp_rank_00_model_states.pt", checkpoint.MANIFEST_FILE]


def events(run_dir, *kinds):
    return [(e["event"], e["step"], e.get("loss", e.get("val_loss")))
            for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] in kinds]


@pytest.mark.slow
def test_real_checkpoint_manifest_covers_every_file(runs):
    ckpt = runs[1] / "checkpoints" / "step_8"
    listed = json.loads((ckpt / checkpoint.MANIFEST_FILE).read_text())["files"]
    assert sorted(listed) == checkpoint.checkpoint_files(ckpt)
    assert set(REAL_FILES) - {checkpoint.MANIFEST_FILE} <= set(listed)
    assert checkpoint.damage(ckpt) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_FILES)
@pytest.mark.parametrize("kind", DAMAGES)
def test_damaged_real_checkpoint_is_named_and_resume_falls_back(killed_copy, kind, name, caplog):
    ckpts = killed_copy / "checkpoints"
    DAMAGES[kind](ckpts / "step_8" / name)
    with pytest.raises(UserError, match=f"step_8 is damaged \\({name}") as error:
        resume.resume_point(ckpts, "strict")
    one_line(str(error.value))
    with caplog.at_level(logging.WARNING):
        assert resume.resume_point(ckpts, "auto") == ckpts / "step_4"
    assert len(warnings(caplog)) == 1 and f"step_8 is damaged ({name}" in warnings(caplog)[0]


@pytest.mark.slow
@pytest.mark.parametrize("kind,name", [("truncate", "engine/mp_rank_00_model_states.pt"),
                                       ("flip", checkpoint.ADAPTER_FILE)])
def test_resume_past_a_damaged_checkpoint_is_bit_identical_and_scores_alike(runs, workdir, killed_copy, kind,
                                                                            name):
    reference, run = runs[0], killed_copy
    DAMAGES[kind](run / "checkpoints" / "step_8" / name)
    train(workdir, run)  # resume=auto: step_8 is moved aside, the run continues step_4
    assert (run / "checkpoints" / "damaged_step_8").is_dir()
    for step in ("step_4", "step_8", "step_12"):
        ours = (run / "checkpoints" / step / checkpoint.ADAPTER_FILE).read_bytes()
        assert ours == (reference / "checkpoints" / step / checkpoint.ADAPTER_FILE).read_bytes(), step
    assert events(run, "train", "eval", "end")[:-1] == events(reference, "train", "eval", "end")[:-1]
    assert [e["step"] for e in read_metrics(run / "metrics.jsonl") if e["event"] == "resume"] == [4]
    assert (run / "checkpoints" / "best").read_text() == (reference / "checkpoints" / "best").read_text()

    settings = dict(checkpoints="step_12", limit=2, subsets=["boolq"], num_beams=1, max_new_tokens=4)
    ours, theirs = evaluate_run(run, **settings), evaluate_run(reference, **settings)
    assert (setting_scores(ours)["scored"]["step_12"]["subsets"]
            == setting_scores(theirs)["scored"]["step_12"]["subsets"])


@pytest.mark.slow
def test_eval_and_analysis_refuse_a_damaged_checkpoint_in_one_line(killed_copy, capsys):
    from hira.commands.analyze_updates import main as analyze_main

    ckpt = killed_copy / "checkpoints" / "step_8"
    truncate(ckpt / checkpoint.ADAPTER_FILE)
    with pytest.raises(UserError, match=r"step_8 is damaged \(adapter.safetensors: expected \d+ bytes, found \d+\)"):
        evaluate_run(killed_copy, checkpoints="step_8")
    with pytest.raises(SystemExit) as exit_status:
        analyze_main([str(ckpt), "--out", str(killed_copy / "analysis")])
    assert exit_status.value.code == 2 and not (killed_copy / "analysis").exists()
    assert one_line(capsys.readouterr().err).startswith(f"error: checkpoint {ckpt} is damaged (adapter.safetensors")


@pytest.mark.slow
def test_strict_resume_of_a_damaged_checkpoint_exits_2_in_one_line(workdir, killed_copy):
    delete(killed_copy / "checkpoints" / "step_8" / "rng_rank0.pt")
    args = [*common_overrides(workdir), *STEPS, f"run_dir={killed_copy}", "resume=strict"]
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert one_line(proc.stderr).startswith(f"error: checkpoint {killed_copy / 'checkpoints' / 'step_8'} is damaged "
                                            f"(rng_rank0.pt is missing); resume=strict stops here")

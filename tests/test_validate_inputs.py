"""Bad input fails before it costs a run: one stderr line, exit 2, no stray folders, the error in the run's log."""

import json
import logging

import pytest
from conftest import common_overrides, compose_config, run_script, stopped_in_process

from hira.errors import UserError, report_user_errors
from hira.evaluation.checkpoints import select_checkpoints


def config(*overrides):
    return compose_config(overrides)


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    assert proc.stderr.startswith("error: ")
    return proc.stderr.strip()


@pytest.fixture
def broken_piqa(tmp_path):
    """Synthetic task data whose piqa/test.json is cut mid-record; returns (data_dir, that file)."""
    from hira.data.tasks import ensure_synthetic_files

    data_dir = tmp_path / "data"
    ensure_synthetic_files(config(*common_overrides(tmp_path), f"task.data_dir={data_dir}").task)
    piqa = data_dir / "piqa" / "test.json"
    text = piqa.read_text()
    piqa.write_text(text[: len(text) // 2])
    return data_dir, piqa


# --- 1. every input the run needs, before the model loads ---------------------------------------------------------

def test_run_inputs_include_the_test_files_when_evaluating_after_training(broken_piqa, tmp_path):
    from hira.data.tasks import load_run_inputs

    data_dir, piqa = broken_piqa
    base = [*common_overrides(tmp_path), f"task.data_dir={data_dir}"]
    with pytest.raises(UserError, match=rf"^{piqa}: invalid JSON at line \d+: "):
        load_run_inputs(config(*base, "evaluate_after_training=true"))
    data = load_run_inputs(config(*base, "evaluate_after_training=false"))  # the tests are not read at all
    assert data.tests == {} and len(data.val) == 48
    with pytest.raises(UserError, match=r"val_size=10000 leaves no training data out of \d+ records"):
        load_run_inputs(config(*base, "evaluate_after_training=false", "task.val_size=10000"))


def test_test_records_are_parsed_once_per_unchanged_file(tmp_path):
    from hira.data.tasks import load_task

    task = config(*common_overrides(tmp_path), f"task.data_dir={tmp_path / 'data'}").task
    first, again = load_task(task).tests, load_task(task).tests
    assert first["piqa"] == again["piqa"] and first["piqa"][0] is again["piqa"][0]
    piqa = tmp_path / "data" / "piqa" / "test.json"
    piqa.write_text(json.dumps(first["piqa"][:2]))  # a rewritten file is read again
    assert len(load_task(task).tests["piqa"]) == 2


@pytest.mark.slow  # writes the synthetic task's files
def test_broken_test_file_stops_train_py_before_the_model_is_built(broken_piqa, tmp_path):
    data_dir, piqa = broken_piqa
    run_dir, model_dir = tmp_path / "run", tmp_path / "tiny_not_built"
    # a subprocess: the data are read in the job, after Hydra has set up its logging (not in-process)
    proc = run_script("train.py", *common_overrides(tmp_path), f"task.data_dir={data_dir}",
                      f"model.cache_path={model_dir}", f"run_dir={run_dir}")
    line = one_error_line(proc)
    assert line.startswith(f"error: {piqa}: invalid JSON at line ")
    assert not model_dir.exists() and not run_dir.exists()  # failed in seconds: no model built, no run folder


# --- 2, 3. eval.py's run_dir, checked before Hydra ------------------------------------------------------------------

def test_eval_without_run_dir_is_one_line():
    proc = stopped_in_process("eval.py")
    assert one_error_line(proc) == ("error: run_dir is required: python eval.py run_dir=<a folder made by train.py> "
                                    "[checkpoints=best|all|step_N], or model=<name> task=<name> to score a model no run made")
    assert proc.stdout == ""


def test_eval_of_a_mistyped_run_dir_creates_no_folder(tmp_path):
    typo = tmp_path / "outputs" / "tpyo"
    line = one_error_line(stopped_in_process("eval.py", f"run_dir={typo}"))
    assert "does not exist; point run_dir at a folder made by train.py" in line
    assert not (tmp_path / "outputs").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no config.yaml" in one_error_line(stopped_in_process("eval.py", f"run_dir={empty}", "checkpoints=all"))
    assert list(empty.iterdir()) == []  # no eval_logs/


def test_eval_args_checked_before_hydra(tmp_path):
    from hira.cli import check_eval_args

    (tmp_path / "config.yaml").write_text("task: {}\n")
    check_eval_args([f"run_dir={tmp_path}", "checkpoints=all"])
    check_eval_args(["--help"])
    check_eval_args([f"run_dir={tmp_path / 'later'}", "watch=true"])  # watch waits for training to write it
    with pytest.raises(UserError, match="run_dir is required"):
        check_eval_args(["run_dir="])
    with pytest.raises(UserError, match="nope does not exist"):
        check_eval_args(["-m", f"run_dir={tmp_path},{tmp_path / 'nope'}"])


# --- 4, 6. a run that fails its checks leaves no folder; a later error goes into train.log ----------------------------

def test_missing_model_path_is_one_line_and_creates_no_folder(tmp_path):
    run_dir = tmp_path / "run"
    line = one_error_line(stopped_in_process("train.py", "model.path=/nonexistent", f"run_dir={run_dir}"))
    assert "model.path=/nonexistent" in line and not run_dir.exists()


@pytest.mark.slow
def test_error_after_the_run_started_keeps_the_folder_with_the_error_in_train_log(workdir, tmp_path):
    run_dir = tmp_path / "run"  # 8 global batches of 512 need more than the 432 training examples there are
    proc = run_script("train.py", *common_overrides(workdir), f"run_dir={run_dir}", "train.global_batch_size=512",
               "evaluate_after_training=false")
    line = proc.stderr.splitlines()[-1]  # after the model's and the tokenizer's progress bars
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert line == "error: 432 training examples do not fill one global batch of train.global_batch_size=512"
    assert (run_dir / "config.yaml").is_file()
    assert line in (run_dir / "train.log").read_text().splitlines()[-1]


def test_user_errors_go_into_the_log_file_not_twice_to_the_console(tmp_path, capsys):
    handler = logging.FileHandler(tmp_path / "train.log")
    logging.getLogger().addHandler(handler)
    try:
        with pytest.raises(SystemExit) as stop:
            report_user_errors(lambda: (_ for _ in ()).throw(UserError("bad thing; valid: good")))()
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    assert stop.value.code == 2
    assert (tmp_path / "train.log").read_text() == "error: bad thing; valid: good\n"
    assert capsys.readouterr().err == "error: bad thing; valid: good\n"


# --- 5. a run without checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("events, status", [
    ([], "training has not logged anything"),
    ([{"event": "train", "step": 1}], "training is still running (or was stopped): metrics.jsonl has no end event"),
    ([{"event": "train", "step": 1}, {"event": "end", "step": 1}], "training ended without saving one"),
])
def test_no_checkpoints_yet_says_so(tmp_path, events, status):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    for which in ("all", "best", "step_4"):
        with pytest.raises(UserError) as err:
            select_checkpoints(tmp_path / "checkpoints", which)
        assert str(err.value).startswith(f"checkpoints={which}: run {tmp_path} has no checkpoints yet; {status}")
        assert "\n" not in str(err.value)


def test_a_discarded_run_folder_takes_its_empty_parents_along(tmp_path):
    """Hydra makes outputs/<task>/<method>/<model>/<time> with its parents; a run stopped by its checks removes
    the parents it left empty, up to the working directory, and no further."""
    from hira.cli import remove_empty_parents

    kept = tmp_path / "outputs" / "synthetic"
    (kept / "other_run").mkdir(parents=True)
    empty = kept / "hira" / "tiny"
    empty.mkdir(parents=True)
    remove_empty_parents(empty, tmp_path)
    assert not (kept / "hira").exists() and (kept / "other_run").is_dir()
    remove_empty_parents(kept / "other_run", tmp_path)
    assert not (tmp_path / "outputs").exists() and tmp_path.is_dir()  # the working directory itself stays

"""Scoring records that cannot lie: scores kept per scoring setting (scores.json and predictions/ keyed by it, a
folder written before settings were kept still read), a run folder that reads and writes only itself wherever it
was copied, and a killed scoring that resumes where it stopped, byte for byte."""

import json
import shutil

import pytest
from conftest import common_overrides, run_script

from hira.commands.analyze_updates import main as analyze_main
from hira.errors import UserError
from hira.evaluation.evaluator import evaluate_run
from hira.evaluation.progress import KILL_AFTER
from hira.paper.runs import find_runs
from hira.paper.tables import make_tables
from hira.run_dir import RunDir, own_scoring, scoring_id, scoring_setting, setting_scores

# --- setting ids and the format written before settings were kept (no model) ------------------------------------


def test_a_setting_id_names_what_can_change_a_score():
    assert scoring_id(scoring_setting("generate", 4, 32)) == "generate_b4_t32"
    assert scoring_id(scoring_setting("generate", 1, 256, limit=30)) == "generate_b1_t256_n30"
    assert scoring_id(scoring_setting("loglik", 4, 32)) == "loglik"  # beams and tokens do not change loglik
    assert scoring_id(scoring_setting("loglik", None, None, limit=5)) == "loglik_n5"
    cfg = {"task": {"num_beams": 4, "max_new_tokens": 8}, "eval_limit": 6}
    assert scoring_id(own_scoring(cfg)) == "generate_b4_t8_n6"  # training scored it with eval_limit
    assert scoring_id(own_scoring({**cfg, "evaluate_after_training": False})) == "generate_b4_t8"


OLD_ENTRY = {"subsets": {"piqa": {"accuracy": 0.5, "n": 6, "parse_failures": 0}}, "average": 0.5}


def old_format_run(folder, workdir_cfg):
    """A run folder as written before settings were kept: scores.json keyed by checkpoint name, each entry with its
    mode and beams, predictions/<ckpt>/ (written by hand)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(workdir_cfg)
    (folder / "metrics.jsonl").write_text(json.dumps({"event": "end", "step": 2}) + "\n")
    loglik = {**OLD_ENTRY, "subsets": {"piqa": {**OLD_ENTRY["subsets"]["piqa"], "accuracy": 0.75}}, "average": 0.75}
    scores = {"step_2": {**OLD_ENTRY, "num_beams": 4, "mode": "generate"},
              "best": {"checkpoint": "step_2", **OLD_ENTRY, "num_beams": 4, "mode": "generate"},
              "step_1": {**loglik, "num_beams": 4, "mode": "loglik"}}
    (folder / "scores.json").write_text(json.dumps(scores))
    (folder / "predictions" / "step_2").mkdir(parents=True)
    (folder / "predictions" / "step_2" / "piqa.jsonl").write_text('{"prediction": "1"}\n')
    return folder


OLD_CONFIG = """task: {name: synthetic, num_beams: 4, max_new_tokens: 8, test_subsets: [piqa]}
model: {name: tiny}
method: {name: hira, params: {r: 4}, target_modules: [q_proj]}
train: {lr: 0.001, global_batch_size: 8}
seed: 1
"""


def test_a_folder_written_before_settings_were_kept_still_reads(tmp_path):
    run = old_format_run(tmp_path / "old", OLD_CONFIG)
    scores = RunDir(run).read_scores(own_scoring({"task": {"num_beams": 4, "max_new_tokens": 8}}))
    assert set(scores["scorings"]) == {"generate_b4_t8", "loglik"}
    own = setting_scores(scores, "generate_b4_t8")
    assert own["setting"] == {"mode": "generate", "num_beams": 4, "max_new_tokens": 8, "limit": None}
    assert own["best"] == {"checkpoint": "step_2", **OLD_ENTRY} and list(own["scored"]) == ["step_2"]
    assert list(setting_scores(scores, "loglik")["scored"]) == ["step_1"]
    [found], skipped = find_runs(tmp_path)  # the tables read it under its own setting
    assert not skipped and found.scores["piqa"] == 50 and found.settings["eval.num_beams"] == 4


def test_make_tables_refuses_a_folder_with_no_finished_run_and_writes_nothing(tmp_path, capsys):
    from hira.commands.make_tables import main as make_tables_main

    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "config.yaml").write_text(OLD_CONFIG)  # training never ended
    with pytest.raises(SystemExit) as exit_info:
        make_tables_main([str(tmp_path)])
    assert exit_info.value.code == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["killed"]
    assert capsys.readouterr().err.strip() == (
        f"error: no finished run under {tmp_path}: 1 folder(s) left out; e.g. {tmp_path / 'killed'}: no end event "
        f"in metrics.jsonl (training did not finish)")
    with pytest.raises(UserError, match="--scoring beam4: not a scoring mode or setting; valid: generate, loglik"):
        make_tables(tmp_path, scoring="beam4")


# --- a trained tiny run, scored several ways -------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(workdir, tmp_path_factory):
    """train.py for 2 steps on the test tiny model, not scored (each test scores a copy)."""
    folder = tmp_path_factory.mktemp("records") / "run"
    proc = run_script("train.py", *common_overrides(workdir), "train.max_steps=2", "train.eval_steps=2",
                      "evaluate_after_training=false", f"run_dir={folder}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder


def tree_bytes(folder) -> dict:
    """{relative path: bytes} of every file under folder."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_checkpoint_scored_in_both_modes_keeps_both(trained, tmp_path):
    run = shutil.copytree(trained, tmp_path / "runs" / "run")
    evaluate_run(run, "best", limit=2, num_beams=2)
    generated = tree_bytes(run / "predictions" / "generate_b2_t8_n2")
    evaluate_run(run, "best", limit=2, mode="loglik")
    scores = json.loads((run / "scores.json").read_text())
    assert scores["format"] == 2 and list(scores["scorings"]) == ["generate_b2_t8_n2", "loglik_n2"]
    for name, block in scores["scorings"].items():
        assert block["best"]["checkpoint"] == "step_2" and len(block["best"]["subsets"]) == 8, name
    assert tree_bytes(run / "predictions" / "generate_b2_t8_n2") == generated  # untouched by the loglik scoring
    assert len(list((run / "predictions" / "loglik_n2" / "step_2").glob("*.jsonl"))) == 8

    runs, skipped = find_runs(tmp_path / "runs", "loglik")
    assert not skipped and runs[0].scoring == "loglik" and runs[0].settings["eval.mode"] == "loglik"
    runs, skipped = find_runs(tmp_path / "runs", "generate_b2_t8_n2")
    assert runs[0].scoring == "generate" and runs[0].settings["eval.num_beams"] == 2
    runs, skipped = find_runs(tmp_path / "runs")  # its own setting (the task's 4 beams) was never scored: a run
    assert not skipped and runs[0].scores == {}    # trained with evaluate_after_training=false shows its cost alone
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("evaluate_after_training: false", "evaluate_after_training: true"))
    runs, skipped = find_runs(tmp_path / "runs")
    assert not runs and skipped[0].reason == ("no scores under scoring generate_b4_t8 (no best entry in scores.json; "
                                              "it has generate_b2_t8_n2, loglik_n2)")


@pytest.mark.slow
def test_a_copied_run_folder_reads_and_writes_only_itself(trained, tmp_path):
    """cp -r, the original gone (as on a laptop the cluster's path does not exist on): scoring, watching and
    analysing the copy write into the copy, and nothing anywhere else (the original's path is not recreated)."""
    copy = shutil.copytree(trained, tmp_path / "copy")
    aside = trained.with_name("run_aside")
    trained.rename(aside)  # the original is gone while the copy is used; the other tests get it back
    before = sorted(trained.parent.iterdir())
    try:
        proc = run_script("eval.py", f"run_dir={copy}", "limit=2", "num_beams=2")
        assert proc.returncode == 0, proc.stderr[-3000:]
        evaluate_run(copy, watch=True, poll_s=0.1, limit=2, num_beams=1)  # watch the finished run: one more setting
        analyze_main([str(copy)])  # into <copy>/analysis by default (in-process: scripts/ import the installed hira)
        assert not trained.exists() and sorted(trained.parent.iterdir()) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]
    finally:
        aside.rename(trained)
    scores = RunDir(copy).read_scores()
    for setting in ("generate_b2_t8_n2", "generate_b1_t8_n2"):
        assert setting_scores(scores, setting)["best"]["checkpoint"] == "step_2"
        assert len(list((copy / "predictions" / setting / "step_2").glob("*.jsonl"))) == 8
    assert (copy / "analysis" / "update_spectra.csv").is_file()


SCORING = dict(limit=3, num_beams=2, batch_size=2, subsets="[boolq,piqa,siqa]")  # 3 questions: batches of 2 and 1
IN_PROCESS = {**SCORING, "subsets": ["boolq", "piqa", "siqa"]}
SETTING = "generate_b2_t8_n3"


@pytest.mark.slow
def test_a_killed_scoring_resumes_byte_identical(trained, tmp_path, monkeypatch):
    killed = shutil.copytree(trained, tmp_path / "killed")
    args = [f"run_dir={killed}", *(f"{k}={v}" for k, v in SCORING.items())]
    monkeypatch.setenv(KILL_AFTER, "3")  # SIGKILL after boolq's 2 batches and piqa's first
    proc = run_script("eval.py", *args)
    monkeypatch.delenv(KILL_AFTER)
    assert proc.returncode == -9, proc.stderr[-3000:]
    folder = killed / "predictions" / SETTING / "step_2"
    partial = folder / "piqa.rank0.partial.jsonl"
    assert (folder / "boolq.jsonl").is_file() and not (folder / "piqa.jsonl").exists()
    assert len(partial.read_text().splitlines()) == 2 and not (killed / "scores.json").exists()

    damaged = shutil.copytree(killed, tmp_path / "damaged")  # a row damaged in the middle is refused, not skipped
    bad = damaged / "predictions" / SETTING / "step_2" / partial.name
    rows = bad.read_text().splitlines()
    bad.write_text("\n".join([rows[0], "{not json", rows[1]]) + "\n")
    before = tree_bytes(damaged)
    with pytest.raises(UserError) as refused:
        evaluate_run(damaged, **IN_PROCESS)
    assert str(refused.value) == (f"{bad}:2: damaged prediction row (not JSON: Expecting property name enclosed in "
                                  f"double quotes); delete {bad} to rescore its questions")
    assert tree_bytes(damaged) == before

    with partial.open("a") as f:
        f.write('{"i": 2, "output": "cut by the ki')  # a row the kill cut short: repaired, its question redone
    proc = run_script("eval.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{folder}: kept 5 of 9 questions scored before, scoring the other 4" in proc.stdout

    reference = shutil.copytree(trained, tmp_path / "reference")
    evaluate_run(reference, **IN_PROCESS)  # uninterrupted
    assert (killed / "scores.json").read_bytes() == (reference / "scores.json").read_bytes()
    assert tree_bytes(killed / "predictions") == tree_bytes(reference / "predictions")
    assert not list(folder.glob("*.partial.jsonl"))

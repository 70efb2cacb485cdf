"""The run folder's contract (hira/run_dir.py): a real run's files are where RunDir says, and no other module
spells a run file's name, so the layout keeps one home and cannot drift back into the callers."""

import ast

import pytest
from conftest import ROOT

from hira import run_dir
from hira.run_dir import RunDir, parse_events
from hira.training.checkpoint import list_checkpoints

HYDRA_OWN = {".hydra"}  # Hydra's copy of the composed config, beside the run's own files


@pytest.fixture
def run(finished_run):
    return RunDir(finished_run)


@pytest.mark.slow
def test_a_real_run_is_where_run_dir_says(run):
    path = run.path
    assert run.config == path / "config.yaml" and run.config.is_file()
    assert run.metrics == path / "metrics.jsonl" and run.events()[0]["event"] == "start" and run.training_ended()
    assert run.train_log == path / "train.log" and run.train_log.is_file()
    assert run.checkpoints == path / "checkpoints" and [p.name for p in list_checkpoints(run.checkpoints)] == ["step_2"]
    assert run.best_marker == path / "checkpoints" / "best" and run.best_name() == "step_2"
    own = "generate_b4_t8_n2"  # the synthetic task's beams and new tokens, eval_limit=2
    assert run.scores == path / "scores.json" and run.read_scores()["scorings"][own]["best"]["checkpoint"] == "step_2"
    assert run.predictions(own, "step_2") == path / "predictions" / own / "step_2"
    assert (run.predictions(own, "step_2") / "piqa.jsonl").is_file()
    assert run.result == path / "result.json" and run.result.is_file()
    assert run.has_results()


@pytest.mark.slow
def test_every_file_of_a_real_run_is_one_run_dir_names(run):
    named = {p.name for p in (run.config, run.metrics, run.train_log, run.checkpoints, run.scores, run.result)}
    named.add(run.predictions("setting", "x").parent.parent.name)
    assert {p.name for p in run.path.iterdir()} - HYDRA_OWN == named


def test_an_empty_folder_reads_as_a_run_not_started(tmp_path):
    run = RunDir(str(tmp_path))  # Hydra hands run_dir over as a string
    assert run.path == tmp_path and run.events() == [] and not run.training_ended()
    assert run.best_name() is None and run.read_scores() == {"format": 2, "scorings": {}} and not run.has_results()
    with pytest.raises(AttributeError):
        run.path = tmp_path / "other"  # frozen: a RunDir names one folder for good


def test_a_half_written_metrics_line_is_skipped():
    assert parse_events('{"event": "train", "step": 1}\n{"event": "ev') == [{"event": "train", "step": 1}]


# --- the contract cannot drift: no other source spells a run file's name ------------------------------------------

RUN_FILES = {run_dir.CONFIG_FILE, run_dir.METRICS_FILE, run_dir.SCORES_FILE, run_dir.TRAIN_LOG,
             run_dir.CHECKPOINTS_DIR, run_dir.PREDICTIONS_DIR}


def spelled_run_files(source: str) -> list[str]:
    """String literals in `source` that name a run file: a path (no spaces: prose may mention the files) with one
    of the names as a part, or "best" joined onto a path (`ckpts / "best"`); scores["best"] is data, not a file."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " not in node.value:
            if RUN_FILES & set(node.value.split("/")) or node.value.endswith("/" + run_dir.BEST_MARKER):
                found.append((node.lineno, repr(node.value)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if any(isinstance(side, ast.Constant) and side.value == run_dir.BEST_MARKER
                   for side in (node.left, node.right)):
                found.append((node.lineno, f"/ {run_dir.BEST_MARKER!r}"))
    return [f"line {line}: {text}" for line, text in sorted(found)]


def test_the_scan_finds_a_spelled_name():
    # a scanner that silently found nothing would pass the check below
    source = ('a = run / "metrics.jsonl"\nb = ckpts / "best"\nc = f"{run}/scores.json"\nd = scores["best"]\n'
              'e = "checkpoints/step_1"\nf = "no config.yaml there"\n')
    assert [line.split(":")[0] for line in spelled_run_files(source)] == ["line 1", "line 2", "line 3", "line 5"]


def test_only_run_dir_spells_the_run_files():
    sources = [*ROOT.glob("hira/**/*.py"), ROOT / "train.py", ROOT / "eval.py", *ROOT.glob("scripts/*.py")]
    spelled = {str(p.relative_to(ROOT)): found for p in sources if p.name != "run_dir.py"
               if (found := spelled_run_files(p.read_text()))}
    assert spelled == {}, "name run files through hira.run_dir.RunDir: " + repr(spelled)


def test_an_older_config_reads_with_the_settings_it_lacks_at_the_value_that_run_used(tmp_path):
    (tmp_path / "config.yaml").write_text("task:\n  name: commonsense\nmethod:\n  name: lora\n")
    cfg = RunDir(tmp_path).load_config()
    assert {"task.format": cfg.task.format, "task.loss_on": cfg.task.loss_on} == run_dir.LEGACY_DEFAULTS
    (tmp_path / "config.yaml").write_text("task:\n  name: gsm8k\n  format: gsm8k\n  loss_on: full\n")
    cfg = RunDir(tmp_path).load_config()
    assert (cfg.task.format, cfg.task.loss_on) == ("gsm8k", "full")  # a newer config keeps its own
    (tmp_path / "config.yaml").write_text("- not\n- a run's config\n")  # read as written: no setting is made up
    assert list(RunDir(tmp_path).load_config()) == ["not", "a run's config"]
    (tmp_path / "config.yaml").write_text("foo: 1\n")
    assert dict(RunDir(tmp_path).load_config()) == {"foo": 1}

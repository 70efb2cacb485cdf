"""A run's result record, <run>/result.json: what the run is (its settings), what it scored, what it cost and where
its numbers came from, in one file written at the end of each scoring (train.py and eval.py alike, a scoring-only
run included). The paper tables are built from it (hira/paper/runs.py); the format is documented in
docs/results.md.

The record is rebuilt from the folder each time (scores.json's best entry of every scoring setting, the cost of
hira/training/cost.py, the provenance of hira/provenance.py), so it always agrees with scores.json; what only a
scoring process knows (its wall time, the forgetting measurement) is carried over from the record before.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from hira import distributed
from hira.config.settings import frozen, result_settings
from hira.data.tasks import data_files, subset_files
from hira.evaluation import forgetting
from hira.evaluation.progress import subset_file
from hira.files import read_json, write_json_atomic
from hira.provenance import device_info, file_hashes, git_state, library_versions
from hira.run_dir import RunDir, own_scoring, scoring_id
from hira.training.checkpoint import weights_digest
from hira.training.cost import cost

RESULT_FORMAT = 1
N_QUESTIONS = "eval.questions"  # fingerprint key: {subset: questions scored} of the best checkpoint's scores
RENAMED = {"n q": N_QUESTIONS}  # fingerprint keys records written before a rename hold: old -> new
SCORED_AS = {"mode": "eval.mode", "num_beams": "eval.num_beams"}  # how it was scored: its scoring setting


# --- the fingerprint the tables group by ---------------------------------------------------------------------------

def fingerprint(cfg, best: dict) -> dict:
    """The run's settings as the tables compare them: its config's result keys (hira/config/settings.py), and how
    its best checkpoint was scored (questions per subset, mode, beams). Runs average together only when equal."""
    settings = result_settings(cfg)
    if best:
        settings[N_QUESTIONS] = frozen({s: summary.get("n") for s, summary in best["subsets"].items()})
        settings.update({name: best.get(key) for key, name in SCORED_AS.items()})
    return settings


def thawed(value):
    """A frozen setting as JSON keeps it (tuples -> lists)."""
    return [thawed(v) for v in value] if isinstance(value, tuple) else value


def refrozen(value):
    """A setting read back from JSON, equal to the frozen one it was written from (lists -> tuples)."""
    return tuple(refrozen(v) for v in value) if isinstance(value, list) else value


def read_fingerprint(stored: dict) -> dict:
    """A fingerprint as result.json stores it, under today's key names."""
    return {RENAMED.get(key, key): refrozen(value) for key, value in stored.items()}


# --- building the record -------------------------------------------------------------------------------------------

def subset_entry(summary: dict, predictions: str) -> dict:
    """One test subset as the record keeps it: questions, correct, accuracy and parse failures (a dialogue
    subset: its metrics), and where its per-question rows are."""
    if "accuracy" in summary:
        n = summary["n"]
        counts = {"questions": n, "correct": round(summary["accuracy"] * n), "accuracy": summary["accuracy"],
                  "parse_failures": summary["parse_failures"]}
    else:
        counts = {"questions": summary["n"],
                  **{k: v for k, v in summary.items()
                     if k not in ("n", "messages") and not isinstance(v, (dict, list))}}
    return {**counts, "predictions_file": predictions}


def scoring_entry(run: RunDir, run_cfg, setting_id: str, block: dict, scoring_time_s) -> dict:
    """One scoring setting's best entry: its setting, fingerprint, checkpoint, subsets, average and wall time."""
    best = block["best"]
    folder = run.predictions(setting_id, best["checkpoint"]).relative_to(run.path)
    subsets = {s: subset_entry(summary, str(subset_file(folder, s))) for s, summary in best["subsets"].items()}
    settings = thawed_settings(fingerprint(run_cfg, {**block["setting"], **best}))
    return {"setting": block["setting"], "fingerprint": settings, "checkpoint": best["checkpoint"],
            "subsets": subsets, "average": best.get("average"), "scoring_time_s": scoring_time_s}


def thawed_settings(settings: dict) -> dict:
    return {key: thawed(value) for key, value in settings.items()}


def reported_scoring(cfg: dict, scorings: dict, scored: str) -> str:
    """The run's own scoring setting when it has been scored, else the one just scored."""
    own = scoring_id(own_scoring(cfg))
    return own if own in scorings else scored


def read_data_files(run_cfg, subsets) -> dict:
    """The data files a run read: a training run's training file (its validation split too), and every test
    subset its record reports."""
    files = dict(data_files(run_cfg.task, with_tests=False)) if "train" in run_cfg else {}
    tests = subset_files(run_cfg.task)
    return files | {f"test/{s}": tests[s] for s in subsets if s in tests}


def forgetting_entry(run: RunDir, old: dict | None, text: tuple | None, checkpoint: str | None, measure) -> dict | None:
    """The forgetting measurement of the reported checkpoint: the record's earlier one when it measured the same
    text on the same weights, else measured now with measure(name, text, checkpoint)."""
    if text is None or measure is None or checkpoint is None:  # nothing scored yet: no weights to measure
        return None
    name, body = text
    weights = weights_digest(run.checkpoints / checkpoint)  # None for a model no run trained
    if (old and old.get("sha256") == forgetting.text_sha256(body) and old.get("checkpoint") == checkpoint
            and old.get("weights") == weights and old.get("text") == name):
        return old
    return {**measure(name, body, checkpoint), "weights": weights}


def build_record(run: RunDir, run_cfg, scored: str, scoring_time_s: float, device: str, forgetting_text=None,
                 measure=None) -> dict:
    """The run's record after scoring under `scored` (a setting id) took scoring_time_s seconds."""
    cfg = OmegaConf.to_container(run_cfg, resolve=True)
    scores = run.read_scores(own_scoring(cfg))
    old = read_json(run.result) or {}
    times = {name: block.get("scoring_time_s") for name, block in old.get("scorings", {}).items()}
    times[scored] = round(scoring_time_s, 2)
    scorings = {name: scoring_entry(run, run_cfg, name, block, times.get(name))
                for name, block in scores["scorings"].items() if block.get("best")}
    reported = reported_scoring(cfg, scorings, scored)
    entry = scorings.get(reported, {})
    subsets = sorted({s for block in scorings.values() for s in block["subsets"]})
    text = forgetting.forgetting_text(forgetting_text, str(cfg["model"]["name"]))
    return {
        "format": RESULT_FORMAT,
        "scoring": reported,
        "fingerprint": entry.get("fingerprint"),
        "config": cfg,
        "scorings": scorings,
        "cost": {**cost(run.path), "scoring_time_s": entry.get("scoring_time_s")},
        "provenance": {"git": git_state(), "data": file_hashes(read_data_files(run_cfg, subsets)),
                       "libraries": library_versions(), **device_info(str(device))},
        "forgetting": forgetting_entry(run, old.get("forgetting"), text, entry.get("checkpoint"), measure),
    }


def write_result(run_dir, run_cfg, scored: str, forgetting_text, scoring_time_s: float, device,
                 measure=None) -> dict | None:
    """Write <run>/result.json (atomically; rank 0) after a scoring under the setting `scored` (its id) that took
    scoring_time_s. forgetting_text: eval.forgetting_text (None: the model's default). measure(name, text,
    checkpoint) -> forgetting entry; by default (a training run) the checkpoint's weights merged into the base."""
    if not distributed.is_main():
        return None
    run = RunDir(run_dir)
    if measure is None and "train" in run_cfg:
        def measure(name, text, checkpoint):
            return forgetting.measure_checkpoint(run_cfg, run.checkpoints / checkpoint, str(device), name, text)
    record = build_record(run, run_cfg, scored, scoring_time_s, device, forgetting_text, measure)
    write_json_atomic(run.result, record)
    return record

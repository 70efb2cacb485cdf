"""Finished training runs as the paper tables and figures see them: settings, best-checkpoint scores, cost.

A run directory is any folder holding config.yaml (train.py and eval.py write it first); scores come from
scores.json's "best" entry (the evaluator's score of the checkpoint with the lowest validation loss) under the
run's own scoring setting, or the one named (--scoring: a setting id such as loglik_n30, or a mode), cost from
metrics.jsonl's "end" event; a run whose folder holds a result record (result.json, hira/evaluation/result.py) is
read from it instead. A folder that is not a finished run is reported with the reason, never used.

A run's settings (its fingerprint) are its resolved config.yaml's result keys (hira/config/settings.py: the
schema marks the keys that cannot change a score, and the seeds that repeats vary), plus how its best checkpoint
was scored: the questions per test subset, the decoding mode and beam count. Runs average together only when
their settings are equal.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from hira.adapters.params import method_params
from hira.errors import UserError
from hira.evaluation.result import RESULT_FORMAT, fingerprint, read_fingerprint
from hira.files import read_json
from hira.training.cost import cost
from hira.run_dir import CONFIG_FILE, MODES, SCORING_ID, RunDir, own_scoring, scoring_id, scoring_setting

# The paper's names for target-module placements (Table 5); FC = the MLP's up and down projections.
ATTENTION_LETTERS = {"q_proj": "Q", "k_proj": "K", "v_proj": "V"}
FC = {"up_proj", "down_proj"}


def params_label(params) -> str:
    """A method's size as the paper writes it: r32, "r1=20 r2=12" (HiLoRA), or "" for methods without a rank."""
    params = params or {}
    if "r1" in params and "r2" in params:
        return f"r1={params['r1']} r2={params['r2']}"
    return f"r{params['r']}" if "r" in params else ""


def modules_label(target_modules) -> str:
    """FC+QKV for [q_proj, k_proj, v_proj, up_proj, down_proj]; QV for [q_proj, v_proj]; "" for none."""
    names = set(target_modules or [])
    parts = []
    if FC <= names:
        parts.append("FC")
    letters = "".join(letter for name, letter in ATTENTION_LETTERS.items() if name in names)
    if letters:
        parts.append(letters)
    parts += sorted(names - FC - set(ATTENTION_LETTERS))
    return "+".join(parts)


@dataclass
class Run:
    path: Path
    task: str
    model: str
    method: str
    params: str                 # params_label
    modules: str                # modules_label
    lr: float | None            # None for scoring-only runs (nothing trained)
    batch: int | None
    seed: int | None            # None for scoring-only runs (nothing random)
    hardware: str
    experiment: str | None
    loss_on: str = "response"   # task.loss_on: the tokens the loss is taken on (response | full)
    scores: dict = field(default_factory=dict)   # column -> value on the paper's 0-100 scale ({} if not scored)
    subsets: tuple = ()                          # the test subsets scored
    scoring: str = "generate"                    # how the best checkpoint was scored: generate | loglik
    scoring_id: str | None = None                # the scoring setting read (scores.json and predictions/ key)
    best_checkpoint: str | None = None           # the checkpoint (or model) its best entry names
    peak_memory_gb: float | None = None         # the run's, over every process that trained it
    train_time_s: float | None = None           # summed over those processes
    settings: dict = field(default_factory=dict)  # the fingerprint: dotted key -> value (see the module's doc)
    synthetic: bool = False                     # trained and tested on a synthetic stand-in task
    finished_at: float = 0.0                    # when its last result was written (the newest of a seed wins)
    trainable_params: int | None = None
    trainable_percent: float | None = None
    adapter_bytes: int | None = None            # the best checkpoint's adapter file
    has_record: bool = False                    # read from result.json (False: an older folder, read as before)
    predictions_files: dict = field(default_factory=dict)  # {subset: rows file relative to path}, from result.json

    @property
    def trained(self) -> bool:
        """False for a scoring-only run of eval.py (a base model, a peft folder): no training settings."""
        return any(key.startswith("train.") for key in self.settings)

    @property
    def group(self) -> tuple:
        """Runs with equal settings (they differ in their seed at most) are averaged together."""
        return tuple(sorted(self.settings.items()))


@dataclass(frozen=True)
class Skipped:
    """A folder with a config.yaml that is not a finished run, and why."""
    path: Path
    reason: str


def check_scoring_choice(wanted: str | None) -> None:
    """--scoring names a mode or a setting id (hira/run_dir.py)."""
    if wanted is not None and wanted not in MODES and not SCORING_ID.match(wanted):
        raise UserError(f"--scoring {wanted}: not a scoring mode or setting; valid: {', '.join(MODES)}, or a setting "
                        f"such as generate_b4_t32, loglik, generate_b4_t32_n30 (the keys of a run's scores.json)")


def chosen_scoring(scores_json: dict, cfg, wanted: str | None = None) -> str | None:
    """The setting id whose best entry the tables read: `wanted` when it is an id; else among the settings of the
    wanted mode (default: the run's own, generate with its task's beams and tokens), the run's own question
    count, or the only one. A scoring-only run scored under one setting alone is read under it."""
    scorings = scores_json.get("scorings", {})
    if wanted is not None and wanted not in MODES:
        return wanted if wanted in scorings else None
    if wanted is None and "train" not in cfg and len(scorings) == 1:
        return next(iter(scorings))
    own = own_scoring(cfg)
    mode = wanted or own["mode"]
    decoding = ("num_beams", "max_new_tokens") if mode == "generate" else ()  # a mode names the task's decoding
    candidates = [name for name, block in scorings.items() if block["setting"]["mode"] == mode
                  and all(block["setting"][k] == own[k] for k in decoding)]
    own_id = scoring_id(scoring_setting(mode, own["num_beams"], own["max_new_tokens"], own["limit"]))
    if own_id in candidates:
        return own_id
    return candidates[0] if len(candidates) == 1 else None


def best_entry(scores_json: dict, cfg, wanted: str | None = None) -> dict:
    """The chosen setting's best entry with its setting's mode and beams beside it ({} when there is none)."""
    name = chosen_scoring(scores_json, cfg, wanted)
    block = scores_json.get("scorings", {}).get(name) or {}
    return {**block["setting"], "scoring": name, **block["best"]} if block.get("best") else {}


def best_scores(best: dict) -> tuple[dict, tuple]:
    """Flatten a best entry (best_entry) to {column: value (0-100)}: accuracy subsets, dialogue metrics, average."""
    if not best:
        return {}, ()
    flat = {}
    for subset, summary in best["subsets"].items():
        if "accuracy" in summary:
            flat[subset] = 100 * summary["accuracy"]
        else:  # dialogue metrics are already 0-100; one dialogue subset per task
            flat.update({k: v for k, v in summary.items() if isinstance(v, (int, float)) and k != "n"})
    if best.get("average") is not None and "average" not in flat:
        flat["average"] = 100 * best["average"]
    return flat, tuple(best["subsets"])


def optional_number(cfg, key: str, kind):
    value = OmegaConf.select(cfg, key)
    return None if value is None else kind(value)


def run_settings(cfg: DictConfig, best: dict) -> dict:
    """The run's fingerprint: config keys that can change a score, and how the best checkpoint was scored."""
    return fingerprint(cfg, best)


def is_synthetic(task_cfg) -> bool:
    """A stand-in task the project generates (task=synthetic, *_synthetic), not the paper's data."""
    return bool(task_cfg.get("synthetic")) or str(task_cfg.name).endswith("_synthetic")


def finished_at(run: RunDir) -> float:
    """The modification time of the run's newest result: scores.json, else metrics.jsonl."""
    return max((p.stat().st_mtime for p in (run.scores, run.metrics) if p.is_file()), default=0.0)


def load_run(run_dir: Path, scoring: str | None = None) -> Run:
    """A training run, or a scoring-only run of eval.py (base model, peft folder: no training settings)."""
    run = RunDir(run_dir)
    return read_run(run, run.load_config(), scoring)


def read_scores(run: RunDir, cfg: DictConfig) -> dict:
    """scores.json in format 2 (an older one converted under the run's own setting)."""
    return run.read_scores(own_scoring(OmegaConf.to_container(cfg, resolve=True)))


def record_best(record: dict, cfg, scoring: str | None) -> dict:
    """A result record's chosen scoring (chosen_scoring) as a best entry, its fingerprint beside it ({} if none)."""
    as_scores = {"scorings": {name: {"setting": block["setting"], "best": True}
                              for name, block in record["scorings"].items()}}
    name = chosen_scoring(as_scores, cfg, scoring)
    block = record["scorings"].get(name)
    if not block:
        return {}
    subsets = {s: {"n": e["questions"], **{k: v for k, v in e.items() if k not in ("questions", "predictions_file")}}
               for s, e in block["subsets"].items()}
    return {**block["setting"], "scoring": name, "checkpoint": block["checkpoint"], "subsets": subsets,
            "average": block["average"], "fingerprint": read_fingerprint(block["fingerprint"]),
            "predictions_files": {s: e["predictions_file"] for s, e in block["subsets"].items()}}


def read_record(run: RunDir) -> dict | None:
    """The folder's result.json when it is one this version reads."""
    record = read_json(run.result)
    return record if isinstance(record, dict) and record.get("format") == RESULT_FORMAT else None


def read_run(run: RunDir, cfg: DictConfig, scoring: str | None = None) -> Run:
    """The run from its result record (result.json), or for an older folder without one from scores.json and
    metrics.jsonl as before."""
    record = read_record(run)
    if record is not None:
        cfg = OmegaConf.create(record["config"])
        best = record_best(record, cfg, scoring)
        spent, settings = record["cost"], best.pop("fingerprint", None)
    else:
        best = best_entry(read_scores(run, cfg), cfg, scoring)
        spent, settings = cost(run.path), None
    scores, subsets = best_scores(best)
    method = cfg.method
    seed = cfg.get("seed")
    return Run(path=run.path, task=cfg.task.name, model=cfg.model.name, method=method.name,
               params=params_label(method_params(method)), modules=modules_label(method.get("target_modules")),
               lr=optional_number(cfg, "train.lr", float), batch=optional_number(cfg, "train.global_batch_size", int),
               seed=None if seed is None else int(seed), hardware=OmegaConf.select(cfg, "hardware.name", default="-"),
               experiment=cfg.get("experiment"), loss_on=cfg.task.loss_on,
               scores=scores, subsets=subsets, scoring=best.get("mode", "generate"),
               scoring_id=best.get("scoring"), best_checkpoint=best.get("checkpoint"),
               predictions_files=best.get("predictions_files", {}),
               peak_memory_gb=spent.get("peak_memory_gb"), train_time_s=spent.get("train_time_s"),
               settings=settings if settings is not None else run_settings(cfg, best),
               synthetic=is_synthetic(cfg.task), finished_at=finished_at(run),
               trainable_params=spent.get("trainable_params"), trainable_percent=spent.get("trainable_percent"),
               adapter_bytes=spent.get("adapter_bytes"), has_record=record is not None)


# --- which folders are finished runs ----------------------------------------------------------------------

LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+\]\[[^\]]*\]\[ERROR\] - (.*)")  # Hydra's job log format


def logged_errors(train_log: Path) -> list[tuple[float, str]]:
    """(time, message) of each ERROR line of Hydra's train.log. Its timestamps are the writing machine's local
    time, read here in this machine's: make the tables where the runs ran, or in the same time zone."""
    if not train_log.is_file():
        return []
    found = []
    for line in train_log.read_text(errors="replace").splitlines():
        if match := LOG_LINE.match(line):
            found.append((datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").timestamp(), match[2].strip()))
    return found


def unfinished_reason(run: RunDir, cfg: DictConfig, scoring: str | None = None) -> str | None:
    """Why a readable run folder is not a finished run, or None when it is one.

    An error in train.log counts when it came after the run's last result (an earlier attempt's error, before a
    resume that finished, does not); a training run needs its "end" event; a run needs scores unless it was
    made for the cost table alone (evaluate_after_training=false).
    """
    results_time = finished_at(run)
    late = [message for when, message in logged_errors(run.train_log) if when >= int(results_time)]
    if late:
        return f"error in train.log: {late[-1]}"
    trained = "train" in cfg
    if trained and not run.training_ended():
        return f"no end event in {run.metrics.name} (training did not finish)"
    scores_json = read_scores(run, cfg)
    if not best_entry(scores_json, cfg, scoring) and (not trained or cfg.get("evaluate_after_training", True)):
        if scoring or scores_json["scorings"]:
            return (f"no scores under scoring {scoring or scoring_id(own_scoring(cfg))} (no best entry in "
                    f"{run.scores.name}; it has {', '.join(scores_json['scorings']) or 'none'})")
        return f"no scores (no best entry in {run.scores.name}; python eval.py run_dir={run.path} scores it)"
    return None


UNREADABLE = (OSError, ValueError, yaml.YAMLError, OmegaConfBaseException, KeyError, TypeError, AttributeError)


def first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error).strip() else type(error).__name__


def inspect_folder(run_dir: Path, scoring: str | None = None) -> Run | Skipped:
    """The finished run in run_dir, or why it is none."""
    run = RunDir(run_dir)
    try:
        cfg = run.load_config()
        if not isinstance(cfg, DictConfig) or not all(OmegaConf.select(cfg, f"{k}.name")
                                                       for k in ("model", "method", "task")):
            raise ValueError("no model.name, method.name and task.name")
    except UNREADABLE as e:
        return Skipped(run.path, f"unreadable {run.config.name} ({first_line(e)})")
    try:
        reason = unfinished_reason(run, cfg, scoring)
        return Skipped(run.path, reason) if reason else read_run(run, cfg, scoring)
    except UNREADABLE as e:  # a scores.json or metrics.jsonl that is not what the evaluator and train.py write
        return Skipped(run.path, f"unreadable results ({type(e).__name__}: {first_line(e)})")


def seeds_oldest_first(runs: list[Run]) -> dict:
    """{seed: its runs, oldest finished first}, seeds in order (a scoring-only run's None last): the tables and
    hira-compare use each seed's newest run, the last."""
    by_seed: dict = {}
    for run in sorted(runs, key=lambda r: (r.finished_at, str(r.path))):
        by_seed.setdefault(run.seed, []).append(run)
    return {seed: by_seed[seed] for seed in sorted(by_seed, key=lambda s: (s is None, s))}


def run_folders(root: Path) -> list[Path]:
    """Every folder under root holding a config.yaml, without looking inside one (its checkpoints hold copies,
    Hydra's .hydra/ another)."""
    found = []
    for folder, subfolders, files in os.walk(root):
        if CONFIG_FILE in files and Path(folder).name != ".hydra":
            found.append(Path(folder))
            subfolders.clear()
        subfolders.sort()
    return sorted(found)


def find_runs(root: Path, scoring: str | None = None) -> tuple[list[Run], list[Skipped]]:
    """Every finished run under root (its scores under `scoring`, by default its own setting), and every other
    folder holding a config.yaml with why it was left out."""
    check_scoring_choice(scoring)
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; pass the outputs folder that holds the runs")
    runs, skipped = [], []
    for folder in run_folders(root):
        found = inspect_folder(folder, scoring)
        (skipped if isinstance(found, Skipped) else runs).append(found)
    return runs, skipped

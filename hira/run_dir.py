"""The run folder's contract: the name of every file train.py and eval.py write into a run directory, and the
small readers that training, evaluation, the paper tables and the GPU check all need.

    <run>/config.yaml            the run's settings, resolved (train.py; eval.py for a scoring-only run), as the run
                                 trained with them: written when it starts, never rewritten by a resume
    <run>/resumes.json           {"resumes": [{step, checkpoint, changed: {key: [old, new]}}, ...]}: each resume that
                                 changed a key that cannot change a result (hira/config/settings.py), against config.yaml;
                                 config.yaml keeps the old values (a result key or seed changed is refused instead)
    <run>/metrics.jsonl          one JSON event a line: start, train, eval, nonfinite, resume, end
    <run>/train.log              Hydra's log of train.py (its job name + .log)
    <run>/checkpoints/step_<N>/  one checkpoint (hira/training/checkpoint.py owns what is inside it)
    <run>/checkpoints/best       one line: the name of the checkpoint with the lowest validation loss
    <run>/checkpoints/damaged_step_<N>/  a checkpoint resume found damaged and moved aside (never loaded)
    <run>/wandb_id               logger=wandb: the id of the wandb run this folder logs to (kept across resumes)
    <run>/wandb/                 logger=wandb: wandb's own files (offline-run-*/ per process; wandb.dir moves it)
    <run>/scores.json            per scoring setting: the evaluator's entry per scored checkpoint, and "best"
    <run>/predictions/<setting>/<name>/  the per-example rows of one checkpoint (or model) scored under one setting
    <run>/result.json            the run's result record: settings, scores per scoring setting, cost, provenance
                                 (written at the end of each scoring; docs/results.md documents its format)
    <run>/analysis/              hira-analyze-updates' spectra and figures of this run alone (its default --out)

Every path inside a run folder is relative to the folder: a copied or moved run reads and writes only itself.

A scoring setting is what can change a score besides the weights: the mode (generate | loglik), for generate the
beams and new tokens, and the questions per subset (limit). Its id names it in scores.json and predictions/:
generate_b4_t32, loglik, generate_b4_t32_n30 (the first 30 questions of each subset). scores.json (format 2):

    {"format": 2, "scorings": {<id>: {"setting": {...}, "scored": {<name>: entry}, "best": entry + checkpoint}}}

scores.json written before settings were kept ({<name>: entry with "mode" and "num_beams", "best": ...}) is read
as format 2: each entry under the setting of its mode and beams, with the run's own new tokens and limit.

Ground floor (the standard library and omegaconf): every layer may name a run's files without importing another's
code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

CONFIG_FILE = "config.yaml"  # also the name of each checkpoint's copy of it
# Settings a run's config.yaml lacks when it was written before the key existed, at the value those runs used
# (every run before task.format was a commonsense run; before task.loss_on, the loss was on the response).
LEGACY_DEFAULTS = {"task.loss_on": "response", "task.format": "commonsense"}
METRICS_FILE = "metrics.jsonl"
SCORES_FILE = "scores.json"
RESULT_FILE = "result.json"
RESUMES_FILE = "resumes.json"
TRAIN_LOG = "train.log"
CHECKPOINTS_DIR = "checkpoints"
PREDICTIONS_DIR = "predictions"
ANALYSIS_DIR = "analysis"
BEST_MARKER = "best"
WANDB_ID_FILE = "wandb_id"
STEP_DIR = re.compile(r"step_\d+")  # a complete checkpoint's folder name
SCORES_FORMAT = 2
MODES = ("generate", "loglik")
SCORING_ID = re.compile(r"^(generate_b[1-9][0-9]*_t[1-9][0-9]*|loglik)(_n[1-9][0-9]*)?$")


def scoring_setting(mode: str, num_beams=None, max_new_tokens=None, limit=None) -> dict:
    """A scoring setting as scores.json records it (beams and tokens only for generate, limit None for all)."""
    generate = mode == "generate"
    return {"mode": mode, "num_beams": int(num_beams) if generate else None,
            "max_new_tokens": int(max_new_tokens) if generate else None, "limit": int(limit) if limit else None}


def scoring_id(setting: dict) -> str:
    """The setting's short name: generate_b4_t32, loglik, and _n<limit> when only the first questions are scored."""
    name = (f"generate_b{setting['num_beams']}_t{setting['max_new_tokens']}" if setting["mode"] == "generate"
            else setting["mode"])
    return name + (f"_n{setting['limit']}" if setting.get("limit") else "")


def own_scoring(cfg) -> dict:
    """A run's own scoring setting (from its config.yaml, a mapping): generate with its task's beams and new tokens,
    limited to eval_limit when training scored the run with one."""
    task = cfg["task"]
    limit = cfg.get("eval_limit") if cfg.get("evaluate_after_training", True) else None
    return scoring_setting("generate", task["num_beams"], task["max_new_tokens"], limit)


def upgrade_scores(scores: dict, own: dict | None) -> dict:
    """scores.json in format 2; one written before settings were kept is converted (see the module's doc)."""
    if not scores or scores.get("format") == SCORES_FORMAT:
        return scores or {"format": SCORES_FORMAT, "scorings": {}}
    own = own or scoring_setting("generate", 0, 0)
    upgraded = {"format": SCORES_FORMAT, "scorings": {}}
    for name, entry in scores.items():
        setting = scoring_setting(entry.get("mode", "generate"), entry.get("num_beams"), own["max_new_tokens"],
                                  own["limit"])
        block = upgraded["scorings"].setdefault(scoring_id(setting), {"setting": setting, "scored": {}})
        kept = {k: v for k, v in entry.items() if k not in ("mode", "num_beams")}
        if name == "best":
            block["best"] = kept
        else:
            block["scored"][name] = kept
    return upgraded


def best_marker(checkpoints: str | Path) -> Path:
    """The `best` marker of a checkpoints folder (checkpoint code gets the folder, not the run)."""
    return Path(checkpoints) / BEST_MARKER


def read_best_marker(checkpoints: str | Path) -> str | None:
    """The checkpoint name the marker holds, or None before the run's first validation."""
    marker = best_marker(checkpoints)
    return marker.read_text().strip() if marker.is_file() else None


def parse_events(text: str) -> list[dict]:
    """Events of a metrics file; a line half-written when the process was killed is skipped."""
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def read_metrics(path: str | Path) -> list[dict]:
    """The events of a metrics.jsonl file, [] when there is none yet."""
    path = Path(path)
    return parse_events(path.read_text()) if path.is_file() else []


def setting_scores(scores: dict, setting: str | None = None) -> dict:
    """One setting's {"setting", "scored", "best"} of scores.json (format 2); without a name, that of the only
    setting scored (a run scored one way)."""
    scorings = scores["scorings"]
    if setting is None:
        if len(scorings) != 1:
            raise ValueError(f"scores.json holds {len(scorings)} scoring settings ({', '.join(scorings)}); name one")
        setting = next(iter(scorings))
    return scorings[setting]


@dataclass(frozen=True)
class RunDir:
    """One run folder: where each of its files lives, and what they say."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))  # callers pass str (Hydra's run_dir) or Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def scores(self) -> Path:
        return self.path / SCORES_FILE

    @property
    def result(self) -> Path:
        return self.path / RESULT_FILE

    @property
    def resumes(self) -> Path:
        return self.path / RESUMES_FILE

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    @property
    def best_marker(self) -> Path:
        return best_marker(self.checkpoints)

    @property
    def wandb_id(self) -> Path:
        return self.path / WANDB_ID_FILE

    @property
    def analysis(self) -> Path:
        return self.path / ANALYSIS_DIR

    def load_config(self):
        """config.yaml as written, with the settings an older run's config lacks at the value that run used."""
        cfg = OmegaConf.load(self.config)
        for key, value in LEGACY_DEFAULTS.items():
            if isinstance(cfg, DictConfig) and "task" in cfg and OmegaConf.select(cfg, key) is None:
                OmegaConf.update(cfg, key, value)
        return cfg

    def predictions(self, setting: str, name: str) -> Path:
        """The folder of one checkpoint's (or model's) per-example rows under one scoring setting (its id)."""
        return self.path / PREDICTIONS_DIR / setting / name

    def best_name(self) -> str | None:
        return read_best_marker(self.checkpoints)

    def events(self, kind: str | None = None) -> list[dict]:
        """metrics.jsonl's events, only those of `kind` when given."""
        events = read_metrics(self.metrics)
        return events if kind is None else [e for e in events if e.get("event") == kind]

    def training_ended(self) -> bool:
        """True once training wrote its "end" event (a half-written last line is ignored)."""
        return bool(self.events("end"))

    def has_checkpoints(self) -> bool:
        """Whether a complete checkpoint (step_<N>) is there to continue."""
        return self.checkpoints.is_dir() and any(STEP_DIR.fullmatch(p.name) and p.is_dir()
                                                 for p in self.checkpoints.iterdir())

    def read_resumes(self) -> list[dict]:
        """resumes.json's list, [] when no resume changed anything."""
        return json.loads(self.resumes.read_text())["resumes"] if self.resumes.is_file() else []

    def read_scores(self, own: dict | None = None) -> dict:
        """scores.json's content in format 2 (an empty one before anything was scored); own: the run's own scoring
        setting, which an older scores.json's entries are read under (own_scoring)."""
        return upgrade_scores(json.loads(self.scores.read_text()) if self.scores.is_file() else {}, own)

    def has_results(self) -> bool:
        """Training logged something or the evaluator scored something: a run the tables may show."""
        return self.metrics.is_file() or self.scores.is_file()

"""The run folder's contract: the name of every file train.py and eval.py write into a run directory, and the
small readers that training, evaluation, the paper tables and the GPU check all need.

    <run>/config.yaml            the run's settings, resolved (train.py; eval.py for a scoring-only run)
    <run>/metrics.jsonl          one JSON event a line: start, train, eval, nonfinite, resume, end
    <run>/train.log              Hydra's log of train.py (its job name + .log)
    <run>/checkpoints/step_<N>/  one checkpoint (hira/training/checkpoint.py owns what is inside it)
    <run>/checkpoints/best       one line: the name of the checkpoint with the lowest validation loss
    <run>/checkpoints/damaged_step_<N>/  a checkpoint resume found damaged and moved aside (never loaded)
    <run>/scores.json            the evaluator's entry per scored checkpoint, and "best"
    <run>/predictions/<name>/    the per-example rows of one scored checkpoint or model
    <run>/wandb_id               logger=wandb: the id of the wandb run this folder logs to (kept across resumes)
    <run>/wandb/                 logger=wandb: wandb's own files (offline-run-*/ per process; wandb.dir moves it)

Ground floor, standard library only: every layer may name a run's files without importing another's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CONFIG_FILE = "config.yaml"  # also the name of each checkpoint's copy of it
METRICS_FILE = "metrics.jsonl"
SCORES_FILE = "scores.json"
TRAIN_LOG = "train.log"
CHECKPOINTS_DIR = "checkpoints"
PREDICTIONS_DIR = "predictions"
BEST_MARKER = "best"
WANDB_ID_FILE = "wandb_id"


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

    def predictions(self, name: str) -> Path:
        """The folder of one scored checkpoint's (or model's) per-example rows."""
        return self.path / PREDICTIONS_DIR / name

    def best_name(self) -> str | None:
        return read_best_marker(self.checkpoints)

    def events(self, kind: str | None = None) -> list[dict]:
        """metrics.jsonl's events, only those of `kind` when given."""
        events = read_metrics(self.metrics)
        return events if kind is None else [e for e in events if e.get("event") == kind]

    def training_ended(self) -> bool:
        """True once training wrote its "end" event (a half-written last line is ignored)."""
        return bool(self.events("end"))

    def read_scores(self) -> dict:
        """scores.json's content, {} before anything was scored."""
        return json.loads(self.scores.read_text()) if self.scores.is_file() else {}

    def has_results(self) -> bool:
        """Training logged something or the evaluator scored something: a run the tables may show."""
        return self.metrics.is_file() or self.scores.is_file()

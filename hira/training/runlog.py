"""metrics.jsonl (RunDir.metrics): one JSON line per training log or evaluation event, written by rank 0 only.

With logger=wandb the same events also go to Weights & Biases (offline by default; wandb.mode=online opts in).
wandb is optional: it is imported only when asked for. A run folder logs to one wandb run, whose id it keeps in
<run>/wandb_id: a resumed process continues that run, first sending it the events kept in metrics.jsonl (offline,
each process writes its own offline-run-* folder under the same id, and `wandb sync` joins them).
"""

from __future__ import annotations

import json
import secrets
import string
import time
from pathlib import Path

from omegaconf import OmegaConf

from hira.files import write_text_atomic
from hira.run_dir import RunDir, read_metrics

class WandbSink:
    """Forwards metrics events to a wandb run: numeric fields as <event>/<field>, at the event's step."""

    def __init__(self, run):
        self.run = run

    @classmethod
    def start(cls, cfg, run_dir: Path) -> "WandbSink":
        import wandb  # the check phase made sure it is installed
        settings = cfg.wandb
        run = wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode,
                         dir=str(settings.dir or run_dir), name=Path(run_dir).name,
                         id=wandb_run_id(run_dir), resume="allow",
                         config=OmegaConf.to_container(cfg, resolve=True))
        return cls(run)

    def log(self, record: dict) -> None:
        values = {f"{record['event']}/{k}": v for k, v in record.items()
                  if k not in ("event", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)}
        self.run.log(values, step=record.get("step", 0))

    def replay(self, events: list[dict]) -> None:
        """Send the events that earlier processes of this run logged and this wandb run may lack: a killed process
        loses what wandb had not yet written to its offline file (it flushes every 15 s), and the resumed process
        redoes only the steps after its checkpoint. Online, wandb already holds the steps before its starting_step."""
        for record in events:
            if record.get("step", 0) >= self.run.starting_step:
                self.log(record)

    def finish(self) -> None:
        self.run.finish()


def wandb_run_id(run_dir: Path) -> str:
    """The id of the wandb run this run folder logs to, made on first use and kept in <run>/wandb_id: without it a
    resumed process would open a second wandb run for the same training run."""
    path = RunDir(run_dir).wandb_id
    if path.is_file():
        return path.read_text().strip()
    run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # wandb's own form
    write_text_atomic(path, run_id + "\n")
    return run_id


class MetricsLog:
    def __init__(self, path: Path, enabled: bool = True, sink: WandbSink | None = None):
        self.path, self.enabled, self.start, self.sink = Path(path), enabled, time.time(), sink

    def write(self, event: str, **fields) -> None:
        if not self.enabled:
            return
        record = {"event": event, **fields, "time_s": round(time.time() - self.start, 3)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.sink is not None:
            self.sink.log(record)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.finish()
            self.sink = None


def open_metrics(cfg, run_dir: Path, enabled: bool = True) -> MetricsLog:
    """The run's metrics log, also sending to wandb when cfg.logger=wandb (rank 0 only)."""
    sink = WandbSink.start(cfg, run_dir) if enabled and cfg.get("logger") == "wandb" else None
    if sink is not None:  # a resumed run: the events kept from before its checkpoint (start_or_resume truncated)
        sink.replay(read_metrics(RunDir(run_dir).metrics))
    return MetricsLog(RunDir(run_dir).metrics, enabled, sink)


def truncate_after(path: Path, step: int) -> None:
    """Drop the events a resumed run will redo (those after `step`, and any "end"), replacing the file atomically."""
    kept = [e for e in read_metrics(path) if e.get("step", 0) <= step and e["event"] != "end"]
    write_text_atomic(path, "".join(json.dumps(e) + "\n" for e in kept))

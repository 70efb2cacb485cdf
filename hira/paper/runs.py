"""Finished training runs as the paper tables and figures see them: settings, best-checkpoint scores, cost.

A run directory is any folder holding both config.yaml and metrics.jsonl (train.py writes them); scores come
from scores.json's "best" entry (the evaluator's score of the checkpoint with the lowest validation loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from hira.adapters.params import method_params
from hira.errors import UserError
from hira.run_dir import CONFIG_FILE, RunDir

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
    seed: int
    hardware: str
    experiment: str | None
    loss_on: str = "response"   # task.loss_on: the tokens the loss is taken on (response | full)
    scores: dict = field(default_factory=dict)   # column -> value on the paper's 0-100 scale ({} if not scored)
    subsets: tuple = ()                          # the test subsets scored
    scoring: str = "generate"                    # how the best checkpoint was scored: generate | loglik
    peak_memory_gb: float | None = None         # the run's, over every process that trained it
    train_time_s: float | None = None           # summed over those processes

    @property
    def group(self) -> tuple:
        """Runs that differ only in their seed are averaged together."""
        return (self.task, self.model, self.method, self.params, self.modules, self.lr, self.batch, self.loss_on,
                self.scoring)

    @property
    def label(self) -> str:
        return " ".join(x for x in (self.method, self.params, f"loss on {self.loss_on}") if x)


def best_scores(scores_json: dict) -> tuple[dict, tuple]:
    """Flatten scores.json's best entry to {column: value (0-100)}: accuracy subsets, dialogue metrics, average."""
    best = scores_json.get("best")
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


def load_run(run_dir: Path) -> Run:
    """A training run, or a scoring-only run of eval.py (base model, peft folder: no training settings)."""
    run = RunDir(run_dir)
    cfg = OmegaConf.load(run.config)
    end = run.events("end")  # the last one holds the run's totals (carried across resumes)
    scores_json = run.read_scores()
    scores, subsets = best_scores(scores_json)
    method = cfg.method
    return Run(path=run_dir, task=cfg.task.name, model=cfg.model.name, method=method.name,
               params=params_label(method_params(method)), modules=modules_label(method.get("target_modules")),
               lr=optional_number(cfg, "train.lr", float), batch=optional_number(cfg, "train.global_batch_size", int),
               seed=int(cfg.get("seed", 0)), hardware=OmegaConf.select(cfg, "hardware.name", default="-"),
               experiment=cfg.get("experiment"), loss_on=cfg.task.get("loss_on") or "response",
               scores=scores, subsets=subsets, scoring=scores_json.get("best", {}).get("mode", "generate"),
               peak_memory_gb=end[-1].get("peak_memory_gb") if end else None,
               train_time_s=end[-1].get("train_time_s") if end else None)


def find_runs(root: Path) -> list[Run]:
    """Every finished run under root (training ended or scores written), in path order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; pass the outputs folder that holds the runs")
    runs = []
    for config in sorted(root.rglob(CONFIG_FILE)):
        run_dir = config.parent
        if RunDir(run_dir).has_results():
            run = load_run(run_dir)
            if run.scores or run.train_time_s is not None:
                runs.append(run)
    return runs

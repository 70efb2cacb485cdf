"""Score a run's checkpoints on its task's test sets: predictions jsonl per subset and scores.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import jsonlines
from omegaconf import OmegaConf

from hira.adapters import merge
from hira.data.tasks import load_task, write_json_atomic
from hira.errors import UserError
from hira.evaluation.answers import extract_answer
from hira.evaluation.generation import generate, prompts_for
from hira.models.loading import load_adapted_model
from hira.training.checkpoint import load_adapter, select_checkpoints

log = logging.getLogger(__name__)


def score_subset(subset: str, records: list[dict], generations: list[str], prompts: list[str]):
    """(per-example rows, summary) for one test subset."""
    rows = []
    for rec, gen, prompt in zip(records, generations, prompts):
        pred = extract_answer(subset, gen)
        rows.append({"prompt": prompt, "generation": gen, "prediction": pred, "gold": rec["answer"],
                     "correct": pred == rec["answer"]})
    n = len(rows)
    summary = {"accuracy": sum(r["correct"] for r in rows) / n, "parse_failures": sum(r["prediction"] is None for r in rows),
               "n": n}
    return rows, summary


def format_table(scores: dict) -> str:
    """subset | accuracy | parse failures | n, with the macro average (the paper's "Avg.") last."""
    lines = [f"{'subset':<12} {'accuracy':>9} {'parse fail':>10} {'n':>6}"]
    for subset, s in scores.items():
        lines.append(f"{subset:<12} {100 * s['accuracy']:>8.2f}% {s['parse_failures']:>10d} {s['n']:>6d}")
    average = sum(s["accuracy"] for s in scores.values()) / len(scores)
    lines.append(f"{'average':<12} {100 * average:>8.2f}%")
    return "\n".join(lines)


def evaluate_checkpoint(model, tokenizer, run_cfg, ckpt: Path, tests: dict, eval_cfg) -> dict:
    load_adapter(model, ckpt)
    merge(model)  # decode at base-model speed
    out_dir = Path(run_cfg.run_dir) / "predictions" / ckpt.name
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    for subset, records in tests.items():
        prompts = prompts_for(records)
        generations = generate(model, tokenizer, prompts, eval_cfg.num_beams, eval_cfg.max_new_tokens,
                               eval_cfg.batch_size)
        rows, scores[subset] = score_subset(subset, records, generations, prompts)
        with jsonlines.open(out_dir / f"{subset}.jsonl", "w") as f:
            f.write_all(rows)
    return scores


def evaluate_run(run_dir: str | Path, checkpoints: str = "best", **overrides) -> dict:
    """Score the selected checkpoints of a finished (or running) run; returns {checkpoint: {subset: summary}}."""
    run_dir = Path(run_dir)
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        raise UserError(f"run_dir={run_dir} has no config.yaml; point run_dir at a folder made by train.py")
    run_cfg = OmegaConf.load(config_file)
    eval_cfg = OmegaConf.create({"num_beams": run_cfg.task.num_beams, "max_new_tokens": run_cfg.task.max_new_tokens,
                                 "batch_size": 16, "subsets": None, "limit": None})
    eval_cfg.merge_with({k: v for k, v in overrides.items() if v is not None})
    ckpts = select_checkpoints(run_dir / "checkpoints", checkpoints)
    tests = load_task(run_cfg.task).tests
    if eval_cfg.subsets:
        tests = {s: tests[s] for s in eval_cfg.subsets}
    if eval_cfg.limit:
        tests = {s: recs[: eval_cfg.limit] for s, recs in tests.items()}

    scores_file = run_dir / "scores.json"
    all_scores = json.loads(scores_file.read_text()) if scores_file.is_file() else {}
    for ckpt in ckpts:
        model, tokenizer = load_adapted_model(run_cfg, run_cfg.hardware.device)
        scores = evaluate_checkpoint(model, tokenizer, run_cfg, ckpt, tests, eval_cfg)
        all_scores[ckpt.name] = {"subsets": scores, "num_beams": eval_cfg.num_beams,
                                 "average": sum(s["accuracy"] for s in scores.values()) / len(scores)}
        if checkpoints == "best":
            all_scores["best"] = {"checkpoint": ckpt.name, **all_scores[ckpt.name]}
        write_json_atomic(scores_file, all_scores)
        print(f"\n{run_dir} [{ckpt.name}] beam={eval_cfg.num_beams}\n{format_table(scores)}")
    return all_scores

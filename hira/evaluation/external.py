"""Scoring models no training run of ours made: the untuned base (the tables' "base" row), a peft adapter folder
on top of it, or a merged model folder (any local causal LM, `model=hf model.path=DIR`).

Each is written as a scoring-only run folder (config.yaml, scores.json, predictions/<setting>/<name>/) that
hira-make-tables reads beside the training runs: the method column says `base`, or `peft_<type>` for an adapter folder.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import OmegaConf

from hira import distributed
from hira.config.values import PEFT_CONFIG, peft_folder
from hira.errors import UserError
from hira.evaluation.evaluator import (eval_settings, print_scores, record_scores, score_model, select_tests, set_best,
                                       setting_block, setting_of)
from hira.evaluation import forgetting
from hira.evaluation.result import write_result
from hira.evaluation.shards import join_ranks, rank_device
from hira.files import write_json_atomic
from hira.models.loading import load_base_model
from hira.run_dir import RunDir, own_scoring, scoring_id

def adapter_method(adapter: Path) -> dict:
    """The method entry of a peft adapter folder's run config: name peft_<type> and its rank."""
    problem = peft_folder(str(adapter))  # the check eval.py's schema runs, for callers that skip it
    if problem:
        raise UserError(f"adapter={adapter}: {problem}")
    config_file = Path(adapter) / PEFT_CONFIG
    peft_cfg = json.loads(config_file.read_text())
    params = {"r": peft_cfg["r"]} if "r" in peft_cfg else {}
    return {"name": f"peft_{peft_cfg['peft_type'].lower()}", "adapter": str(Path(adapter).resolve()),
            "params": params, "target_modules": peft_cfg.get("target_modules") or []}


def load_with_adapter(model, adapter: Path):
    """The base model with the peft adapter merged in (merging keeps decoding at base-model speed)."""
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(model, str(adapter))
    try:
        return peft_model.merge_and_unload()
    except (NotImplementedError, ValueError):  # a peft type without merging decodes unmerged
        return peft_model


def scoring_run_config(model_cfg, task_cfg, method: dict, experiment=None):
    """A scoring run's config.yaml; it names no folder (a run folder's paths are its own, relative to it)."""
    return OmegaConf.create({"experiment": experiment, "method": method,
                             "model": OmegaConf.to_container(model_cfg, resolve=True),
                             "task": OmegaConf.to_container(task_cfg, resolve=True)})


def evaluate_model(model_cfg, task_cfg, run_dir: str | Path, adapter: str | None = None, experiment=None,
                   **overrides) -> dict:
    """Score the base model of model_cfg (with a peft adapter folder merged in, if given) on task_cfg's tests.

    Writes run_dir/config.yaml and scores.json (under the scoring setting: {"scored": {name: entry}, "best":
    entry}, name "base" or "adapter"); an existing scores.json keeps its other entries and settings. Returns the
    entry.
    """
    run, started = RunDir(run_dir), time.perf_counter()
    method = adapter_method(Path(adapter)) if adapter else {"name": "base"}
    eval_cfg = eval_settings(task_cfg, overrides)
    tests = select_tests(task_cfg, eval_cfg)  # bad data fails before the model loads
    device = rank_device(eval_cfg.device or "cpu")
    join_ranks(device)
    model, tokenizer = load_base_model(model_cfg, device)
    if adapter:
        model = load_with_adapter(model, Path(adapter))
    name = "adapter" if adapter else "base"
    if distributed.is_main():
        run.path.mkdir(parents=True, exist_ok=True)
        run.config.write_text(OmegaConf.to_yaml(scoring_run_config(model_cfg, task_cfg, method, experiment)))
    scores = score_model(model, tokenizer, tests, eval_cfg, run.predictions(scoring_id(setting_of(eval_cfg)), name))
    if scores is None:  # another rank than 0: its shard went to rank 0, which writes
        return None
    all_scores = run.read_scores(own_scoring({"task": task_cfg}))
    block = setting_block(all_scores, eval_cfg)
    record_scores(block, name, scores)
    set_best(block, name)
    write_json_atomic(run.scores, all_scores)
    print_scores(run.path, name, scores, eval_cfg)

    def measure(text_name, text, checkpoint):  # the base is the model itself, or loaded again beside an adapter
        base = load_base_model(model_cfg, device)[0] if adapter else model
        return forgetting.measure(text_name, text, base, model, tokenizer, checkpoint)

    write_result(run.path, run.load_config(), scoring_id(setting_of(eval_cfg)), eval_cfg.forgetting_text,
                 time.perf_counter() - started, device, measure)
    return block["scored"][name]

"""eval.py beyond training runs: the untuned base model (the tables' base row) and a peft adapter folder."""

import json

import pytest
import torch
from conftest import ROOT, group_settings, run_script, stopped_in_process, tiny_model_config, tiny_settings
from helpers import check_record
from omegaconf import OmegaConf

from hira.adapters import apply, export_peft, merge
from hira.evaluation.evaluator import eval_settings, score_model, select_tests
from hira.evaluation.external import evaluate_model
from hira.models.loading import load_base_model
from hira.paper.tables import make_tables
from hira.run_dir import setting_scores

SUBSETS = ["boolq", "piqa"]


@pytest.fixture(scope="module")
def tiny_cfgs(workdir):
    """(model config, task config) of the session's tiny test model and synthetic data, as eval.py composes them."""
    task_cfg = OmegaConf.load(ROOT / "configs/task/synthetic.yaml").task
    task_cfg.merge_with(group_settings("task", tiny_settings(workdir)))
    return tiny_model_config(workdir), task_cfg


@pytest.mark.slow
def test_base_model_is_scored_as_a_table_row(workdir, tmp_path):
    out = tmp_path / "scored" / "base_tiny"
    proc = run_script("eval.py", "model=tiny", "task=synthetic", *tiny_settings(workdir), f"run_dir={out}", "limit=4",
                    "num_beams=2", f"subsets=[{','.join(SUBSETS)}]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = setting_scores(json.loads((out / "scores.json").read_text()), "generate_b2_t8_n4")
    base = scores["scored"]["base"]
    assert scores["best"]["checkpoint"] == "base" and set(base["subsets"]) == set(SUBSETS)
    assert all(base["subsets"][s]["n"] == 4 for s in SUBSETS)
    assert len((out / "predictions" / "generate_b2_t8_n4" / "base" / "piqa.jsonl").read_text().splitlines()) == 4
    assert OmegaConf.load(out / "config.yaml").method.name == "base"
    markdown = make_tables(tmp_path / "scored").markdown
    base_rows = [line for line in markdown.splitlines() if line.startswith("| base |")]
    assert len(base_rows) == 1  # one row, beside the paper's rows, with the base model's own numbers
    assert f"{100 * base['subsets']['piqa']['accuracy']:.2f}" in base_rows[0]
    record = check_record(out, "generate_b2_t8_n4", trained=False)  # the scoring-only run's result.json
    assert record["cost"]["scoring_time_s"] > 0 and record["cost"]["trainable_params"] is None
    forgetting = record["forgetting"]
    assert forgetting["base_cross_entropy"] == forgetting["tuned_cross_entropy"]  # the base is the model scored


SETTING = "generate_b2_t8_n6"


@pytest.mark.slow  # load_base_model first pretrains the test tiny model (tens of seconds)
def test_peft_adapter_folder_scores_like_our_adapted_model(tiny_cfgs, tmp_path):
    model_cfg, task_cfg = tiny_cfgs
    model, tokenizer = load_base_model(model_cfg)
    torch.manual_seed(0)
    model = apply(model, "lora", ["q_proj", "v_proj", "up_proj"], r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # B starts at zero: give the adapter an effect the decoding can see
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.3)
    export_peft(model, tmp_path / "adapter")
    settings = {"limit": 6, "num_beams": 2, "subsets": SUBSETS}  # the setting generate_b2_t8_n6
    ours = score_model(merge(model), tokenizer, select_tests(task_cfg, eval_settings(task_cfg, settings)),
                       eval_settings(task_cfg, settings), tmp_path / "ours")
    entry = evaluate_model(model_cfg, task_cfg, tmp_path / "peft_run", adapter=tmp_path / "adapter", **settings)
    assert entry["subsets"] == ours
    for subset in SUBSETS:  # the same text decoded, question by question
        assert ((tmp_path / "peft_run" / "predictions" / SETTING / "adapter" / f"{subset}.jsonl").read_text()
                == (tmp_path / "ours" / f"{subset}.jsonl").read_text())
    tests = select_tests(task_cfg, eval_settings(task_cfg, settings))
    score_model(load_base_model(model_cfg)[0], tokenizer, tests, eval_settings(task_cfg, settings), tmp_path / "base")
    generations = [[json.loads(line)["generation"] for line in (tmp_path / run / "piqa.jsonl").open()]
                   for run in ("ours", "base")]
    assert generations[0] != generations[1]  # the adapter really changes what is decoded
    method = OmegaConf.load(tmp_path / "peft_run" / "config.yaml").method
    assert method.name == "peft_lora" and method.params.r == 4


@pytest.mark.parametrize("args, says", [
    ([], "run_dir is required"),
    (["model=tiny"], "model= needs task="),
])
def test_eval_needs_a_run_or_a_model_in_one_line(args, says):
    proc = stopped_in_process("eval.py", *args)
    assert proc.returncode == 2 and says in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

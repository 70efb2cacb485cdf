"""Every method trains a few steps through the one training loop and decodes through the evaluator (in-process,
on the session's tiny model and synthetic data)."""

import math

import pytest
import torch
from conftest import common_overrides, compose_config
from safetensors.torch import load_file

from hira.adapters import adapter_layers, all_methods, load_trainable_state_dict
from hira.data.tasks import load_task
from hira.data.tokenize import tokenized_splits
from hira.evaluation.evaluator import evaluate_run
from hira.models.loading import load_adapted_model
from hira.run_dir import setting_scores
from hira.training import batches
from hira.training.checkpoint import ADAPTER_FILE
from hira.training.loop import train
from hira.training.runlog import read_metrics

STEPS = 3
# Small sizes for the tiny test model (hidden 64, 2 layers).
PARAMS = {
    "hira": ["method.params.r=4"], "lora": ["method.params.r=4", "method.params.alpha=8"],
    "dora": ["method.params.r=4", "method.params.alpha=8"], "vera": ["method.params.r=16"],
    "mora": ["method.params.r=4"], "rasa": ["method.params.r=8", "method.params.alpha=16"],
    "lora_dash": ["method.params.r=4", "method.params.alpha=8", "method.params.t=2", "method.params.s=2"],
    "lora_plus": ["method.params.r=4", "method.params.alpha=8"],
    "hilora": ["method.params.r1=2", "method.params.r2=2"], "hira_rand": ["method.params.r=4"],
    "prompt_tuning": ["method.params.num_virtual_tokens=4"],
    "p_tuning": ["method.params.num_virtual_tokens=4", "method.params.encoder_hidden_size=16"],
    "full": [],
}


def test_every_method_has_a_case():
    assert sorted(PARAMS) == all_methods()


def config(workdir, method):
    overrides = [o for o in common_overrides(workdir) if not o.startswith("method.params")]
    overrides += [f"method={method}", *PARAMS[method], f"run_dir={workdir / 'zoo' / method}", f"train.max_steps={STEPS}",
                  f"train.eval_steps={STEPS}", "train.warmup_steps=0", "task.val_size=8", "train.log_steps=1",
                  "evaluate_after_training=false"]
    return compose_config(overrides)


def seen_examples(cfg, tokenizer) -> dict:
    """The examples of the run's STEPS global batches, as one batch."""
    train_set, _, _ = tokenized_splits(tokenizer, load_task(cfg.task, with_tests=False), cfg.task)
    order = batches.epoch_order(len(train_set), cfg.data_seed, 0)[: STEPS * cfg.train.global_batch_size]
    return batches.make_collator(tokenizer)([train_set[i] for i in order])


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(PARAMS))
def test_method_trains_and_decodes(workdir, method):
    cfg = config(workdir, method)
    assert cfg.train.lr == cfg.method.demo_lr  # the synthetic task runs each method at its own demo lr
    run_dir = train(cfg)

    events = read_metrics(run_dir / "metrics.jsonl")
    start = next(e for e in events if e["event"] == "start")
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == STEPS and all(math.isfinite(x) for x in losses)
    if method == "full":
        assert start["trainable_params"] == start["total_params"]
    else:
        assert 0 < start["trainable_params"] < start["total_params"] / 4

    # the checkpoint holds exactly the method's trainable numbers (and adapter state), moved by training
    weights = load_file(str(run_dir / "checkpoints" / f"step_{STEPS}" / ADAPTER_FILE))
    fresh, tokenizer = load_adapted_model(cfg)  # the same seed: the initial values
    fresh.eval()
    initial = {n: p for n, p in fresh.named_parameters() if p.requires_grad}
    assert set(initial) <= set(weights)
    assert sum(not torch.equal(weights[n], initial[n]) for n in initial) > 0
    if method == "lora_dash":  # t=2 < 3 steps: the dash phase started inside the loop and was saved
        assert all(weights[f"{name}.dash_active"] for name in adapter_layers(fresh))

    # training lowered the loss on the examples it saw
    batch = seen_examples(cfg, tokenizer)
    with torch.no_grad():
        before = fresh(**batch).loss.item()
        load_trainable_state_dict(fresh, weights)
        after = fresh(**batch).loss.item()
    assert after < before

    scores = evaluate_run(run_dir, "best", subsets=["piqa", "boolq"], limit=2, num_beams=2, max_new_tokens=4)
    subsets = setting_scores(scores)["best"]["subsets"]
    assert set(subsets) == {"piqa", "boolq"} and all(s["n"] == 2 for s in subsets.values())
    rows = (run_dir / "predictions" / "generate_b2_t4_n2" / f"step_{STEPS}" / "piqa.jsonl").read_text().splitlines()
    assert len(rows) == 2

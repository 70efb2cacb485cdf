"""What a run records about itself: cost totals over every process of a resumed run (time, memory, training tokens,
and cost(run_dir) for the result record), the gradient norm, and a console free of messages a user cannot act
on."""

import logging
import math

import pytest
from conftest import ROOT, common_overrides, run_script, train_killed_in_save
from omegaconf import OmegaConf

from hira.data.tasks import load_run_inputs
from hira.data.tokenize import tokenized_splits
from hira.models.loading import ensure_model, load_tokenizer
from hira.paper.runs import load_run
from hira.training import batches, checkpoint
from hira.training.cost import cost
from hira.training.loop import Schedule, TrainBatches
from hira.training.runlog import read_metrics

STEPS = ["train.eval_steps=4", "train.log_steps=1", "evaluate_after_training=false"]
NOISE = ("Setting accelerator to CPU", "test.c", "-laio", "untested optimizer")


def end_event(run_dir) -> dict:
    ends = [e for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == "end"]
    assert len(ends) == 1, ends
    return ends[0]


@pytest.fixture(scope="module")
def segments(workdir, tmp_path_factory):
    """One run trained by three processes: killed while saving step 8 (step_4 saved), resumed to step 8, then rerun
    once finished (the same command each time: a resume under another schedule is a new run).

    Returns the run directory, each process's result, and what each one left: the totals step_4 carries for the
    killed one, the "end" event for the others."""
    run_dir = tmp_path_factory.mktemp("records") / "run"
    args = [*common_overrides(workdir), *STEPS, "train.max_steps=8", f"run_dir={run_dir}"]
    procs = [train_killed_in_save(8, *args)]
    assert procs[-1].returncode == -9, procs[-1].stderr[-3000:]
    left = [checkpoint.trainer_state(run_dir / "checkpoints" / "step_4")]
    for _ in range(2):
        procs.append(run_script("train.py", *args))
        assert procs[-1].returncode == 0, procs[-1].stderr[-3000:]
        left.append(end_event(run_dir))
    return run_dir, procs, left


@pytest.mark.slow
def test_train_time_and_peak_memory_add_up_over_segments(segments):
    run_dir, _, (carried, resumed, rerun) = segments  # carried: what the killed process passed on at step_4
    assert carried["step"] == 4 and resumed["step"] == rerun["step"] == 8
    assert carried["train_time_s"] > 0 and resumed["segment_time_s"] > 0
    # the resumed process continues the killed one's sum up to step_4 (its steps 5-8 are redone and counted once)
    assert resumed["train_time_s"] == pytest.approx(carried["train_time_s"] + resumed["segment_time_s"], abs=0.021)
    assert carried["peak_memory_gb"] > 0
    assert resumed["peak_memory_gb"] == max(carried["peak_memory_gb"], resumed["segment_peak_memory_gb"])
    # rerunning the finished run trains nothing and keeps the totals
    assert rerun["segment_time_s"] == 0.0
    assert rerun["train_time_s"] == resumed["train_time_s"]
    assert rerun["peak_memory_gb"] >= resumed["peak_memory_gb"]
    # each checkpoint carries the totals up to it; the tables read the run's totals
    assert checkpoint.trainer_state(run_dir / "checkpoints" / "step_8")["train_time_s"] == \
        pytest.approx(resumed["train_time_s"], abs=0.011)
    run = load_run(run_dir)
    assert (run.train_time_s, run.peak_memory_gb) == (rerun["train_time_s"], rerun["peak_memory_gb"])


def attention_mask_ones(run_dir, steps) -> int:
    """The non-pad input tokens of the micro batches the run trained at `steps`, counted from the collated batches'
    attention masks (one process: its micro batches are the whole global batch)."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    tokenizer = load_tokenizer(ensure_model(cfg.model))
    train_set, _, _ = tokenized_splits(tokenizer, load_run_inputs(cfg), cfg.task)
    schedule = Schedule.from_config(cfg, len(train_set), world=1)
    train_batches = TrainBatches.from_config(cfg, train_set, batches.make_collator(tokenizer), schedule)
    return sum(int(b["attention_mask"].sum()) for step in steps for b in train_batches.for_step(step, "cpu"))


@pytest.mark.slow
def test_training_tokens_add_up_over_segments(segments):
    run_dir, _, (first, resumed, rerun) = segments
    assert first["train_tokens"] == attention_mask_ones(run_dir, range(1, 5))
    assert checkpoint.trainer_state(run_dir / "checkpoints" / "step_4")["train_tokens"] == first["train_tokens"]
    assert resumed["train_tokens"] == rerun["train_tokens"] == attention_mask_ones(run_dir, range(1, 9))
    # tokens_per_s is taken from the unrounded time; the event's train_time_s is rounded to 0.01 s (and the rate to 0.1)
    tokens, seconds = resumed["train_tokens"], resumed["train_time_s"]
    assert tokens / (seconds + 0.005) - 0.05 <= resumed["tokens_per_s"] <= tokens / (seconds - 0.005) + 0.05


@pytest.mark.slow
def test_the_cost_of_a_run_folder(segments):
    run_dir, _, (_, _, rerun) = segments
    start = [e for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == "start"][0]
    best = (run_dir / "checkpoints" / "best").read_text().strip()
    adapter = run_dir / "checkpoints" / best / checkpoint.ADAPTER_FILE
    assert cost(run_dir) == {
        "trainable_params": start["trainable_params"], "total_params": start["total_params"],
        "trainable_percent": 100 * start["trainable_params"] / start["total_params"],
        "adapter_file": f"checkpoints/{best}/{checkpoint.ADAPTER_FILE}", "adapter_bytes": adapter.stat().st_size,
        "peak_memory_gb": rerun["peak_memory_gb"], "train_time_s": rerun["train_time_s"],
        "train_tokens": rerun["train_tokens"], "tokens_per_s": rerun["tokens_per_s"]}
    assert 0 < start["trainable_params"] < start["total_params"] and adapter.stat().st_size > 0


def test_the_cost_of_an_unfinished_or_older_run_folder_has_none_for_what_it_lacks(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"event": "start", "trainable_params": 5, "total_params": 20}\n'
                                            '{"event": "end", "step": 4, "train_time_s": 2.0}\n')
    assert cost(tmp_path) == {"trainable_params": 5, "total_params": 20, "trainable_percent": 25.0,
                              "adapter_file": None, "adapter_bytes": None, "peak_memory_gb": None,
                              "train_time_s": 2.0, "train_tokens": None, "tokens_per_s": None}
    assert set(cost(tmp_path / "nothing").values()) == {None}


@pytest.mark.slow
def test_every_train_event_logs_a_gradient_norm(segments):
    run_dir, _, _ = segments
    norms = [e["grad_norm"] for e in read_metrics(run_dir / "metrics.jsonl") if e["event"] == "train"]
    assert len(norms) == 8
    assert all(isinstance(n, float) and math.isfinite(n) and n > 0 for n in norms), norms
    assert len(set(norms)) == len(norms)  # one per step, not a value repeated


@pytest.mark.slow
def test_console_and_train_log_hold_no_unactionable_noise(segments):
    run_dir, procs, _ = segments
    texts = [p.stdout for p in procs] + [p.stderr for p in procs] + [(run_dir / "train.log").read_text()]
    for noise in NOISE:
        assert not [t for t in texts if noise in t], noise
    assert "val_loss" in procs[1].stdout  # the run's own output still shows (the killed one's may be unflushed)


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_zero_untested_optimizer_warning_is_dropped_and_other_warnings_stay():
    """Under ZeRO, DeepSpeed warns about our (deliberately allowed) guarded AdamW; its other warnings still show.

    Read from a handler on DeepSpeed's logger: its own console handler may hold a stream of an earlier test."""
    import deepspeed
    import torch
    from deepspeed.utils import logger as ds_logger

    from hira import distributed
    from hira.training import engine_config, guard

    distributed.init_distributed("cpu")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    config = engine_config.deepspeed_config(str(ROOT / "ds_configs" / "zero3.json"), 1, 1, 1.0)
    collect = Collect()
    ds_logger.addHandler(collect)
    try:
        deepspeed.initialize(model=model, optimizer=guard.GuardedAdamW(model.parameters()), config=config)
        ds_logger.warning("a warning the user can act on")
    finally:
        ds_logger.removeHandler(collect)
    assert not [m for m in collect.messages if "untested optimizer" in m]
    assert "a warning the user can act on" in collect.messages

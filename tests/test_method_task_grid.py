"""Every method × every task that runs without downloads composes with Hydra at the method's own settings and
trains one optimizer step on the tiny test model (in-process: one tiny base and one small data folder per task,
built once per session; task=synthetic is trained by tests/test_methods_train_e2e.py)."""

import math

import pytest
from conftest import ROOT, TEST_TINY, compose_config, data_folder
from omegaconf import OmegaConf

from hira.adapters import all_methods
from hira.training.loop import train
from hira.training.runlog import read_metrics

pytestmark = pytest.mark.slow  # DeepSpeed engines

# Each stand-in's generator sizes, small: the grid only needs a batch to train on and a few examples to validate on.
TASKS = {
    "synthetic": ["task.synthetic.train_per_subset=4", "task.synthetic.test_per_subset=1"],
    "metamath_synthetic": ["task.synthetic.train_size=16", "task.synthetic.test_size=2"],
    "convai2_synthetic": ["task.synthetic.train_size=6", "task.synthetic.test_size=1"],
}
ONE_STEP = ["train.max_steps=1", "train.eval_steps=1", "train.warmup_steps=0", "train.global_batch_size=2",
            "hardware.micro_batch_size=2", "train.eval_batch_size=4", "task.val_size=4", "train.log_steps=1",
            "evaluate_after_training=false"]


def grid_overrides(workdir, task: str, method: str) -> list[str]:
    return [f"task={task}", f"method={method}", *TEST_TINY, f"model.cache_path={workdir / 'tiny'}",
            f"task.data_dir={data_folder(workdir / 'grid' / task)}", *TASKS[task], *ONE_STEP,
            f"run_dir={workdir / 'grid' / 'runs' / f'{task}-{method}'}"]


def method_yaml(method: str):
    return OmegaConf.load(ROOT / "configs" / "method" / f"{method}.yaml")


# task=synthetic trains every method in tests/test_methods_train_e2e.py (three steps, then decoded), and
# task=metamath_synthetic with a method without a rank through train.py in tests/test_tasks_e2e.py.
TRAINED_ELSEWHERE = {"synthetic"}


@pytest.mark.parametrize("method", all_methods())
@pytest.mark.parametrize("task", sorted(TASKS))
def test_method_trains_one_step_on_task(workdir, task, method):
    cfg = compose_config(grid_overrides(workdir, task, method))
    # the task leaves the method's settings alone: its own params and lr; the tiny base trains at its demo lr
    expected = method_yaml(method)
    assert OmegaConf.to_container(cfg.method) == OmegaConf.to_container(expected)
    assert cfg.train.lr == expected.demo_lr
    if task in TRAINED_ELSEWHERE:
        return

    run_dir = train(cfg)

    events = read_metrics(run_dir / "metrics.jsonl")
    start = next(e for e in events if e["event"] == "start")
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == 1 and math.isfinite(losses[0])
    assert 0 < start["trainable_params"] <= start["total_params"]
    assert (run_dir / "checkpoints" / "step_1").is_dir()

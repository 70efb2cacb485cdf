"""The training loop's state (hira/training/state.py LoopState) goes into a checkpoint and comes back as one unit,
under the trainer_state.json keys checkpoints have always had (old runs resume, new ones read the same)."""

import json

import pytest
from conftest import compose_config

from hira.training import checkpoint
from hira.training.cost import RunCost
from hira.training.loop import Schedule, save
from hira.training.resume import build_trainer_state, restore
from hira.training.state import BestSoFar, LoopState

# trainer_state.json as every checkpoint so far has written it, in this order
TRAINER_STATE_KEYS = ["step", "epoch", "step_in_epoch", "val_loss", "best_step", "best_val_loss", "world_size",
                      "seed", "train_time_s", "peak_memory_gb", "train_tokens", "method", "model", "method_params",
                      "target_modules", "data_seed", "global_batch_size"]


def config():
    return compose_config(["method.params.r=2", "method.target_modules=[q_proj]"])


def mid_run_state() -> LoopState:
    """Step 8 of a run whose best validation was at step 4, two losses not yet logged, 5 s trained so far."""
    return LoopState(step=8, best=BestSoFar(4, 0.5), running=[1.25, 2.5], last_good="step_8",
                     cost=RunCost(earlier_time_s=3.0, segment_time_s=2.0, earlier_tokens=300, segment_tokens=200))


def assert_continues(back: LoopState, state: LoopState) -> None:
    assert (back.step, back.best, back.running, back.last_good) == (state.step, state.best, state.running,
                                                                    state.last_good)
    assert back.cost.totals()["train_time_s"] == state.cost.totals()["train_time_s"]  # the sum carries on
    assert back.cost.totals()["train_tokens"] == state.cost.totals()["train_tokens"] == 500
    assert back.cost.segment_time_s == 0.0 and back.cost.segment_tokens == 0  # the restoring process trained nothing


def test_round_trip_through_the_trainer_state_dict():
    state = mid_run_state()
    saved = json.loads(json.dumps({**state.to_state(), **state.rank_state()}))  # as files hold them
    assert_continues(LoopState.from_state(saved, "step_8"), state)


def test_a_fresh_state_starts_at_step_one_with_no_best():
    state = LoopState()
    assert state.step == 0 and state.best == BestSoFar(-1, float("inf")) and state.last_good is None
    state.record_validation(2, 0.9)
    state.record_validation(4, 1.1)  # worse: the best stays
    assert state.best == BestSoFar(2, 0.9)


def test_trainer_state_keeps_its_keys_and_values():
    cfg, state = config(), mid_run_state()
    saved = build_trainer_state(cfg, state, Schedule(steps_per_epoch=5, total_steps=20, accumulation=1), val_loss=0.75)
    assert list(saved) == TRAINER_STATE_KEYS
    assert {k: saved[k] for k in TRAINER_STATE_KEYS[:9]} == {
        "step": 8, "epoch": 1, "step_in_epoch": 3, "val_loss": 0.75, "best_step": 4, "best_val_loss": 0.5,
        "world_size": 1, "seed": cfg.seed, "train_time_s": 5.0}
    assert saved["method"] == "hira" and saved["data_seed"] == cfg.data_seed


@pytest.fixture
def engine(llama):
    """A one-rank DeepSpeed engine over a random Llama with HiRA on q_proj (conftest undoes the rank setup)."""
    from hira import distributed
    from hira.adapters import apply
    from hira.training.loop import build_engine

    distributed.init_distributed("cpu")
    model = apply(llama, "hira", ["q_proj"], r=2)
    engine, _ = build_engine(config(), model, Schedule(steps_per_epoch=5, total_steps=20, accumulation=1))
    return engine


@pytest.mark.slow
def test_round_trip_through_a_real_checkpoint(engine, tmp_path):
    cfg, state = config(), mid_run_state()
    schedule = Schedule(steps_per_epoch=5, total_steps=20, accumulation=1)
    state.best = BestSoFar(8, 0.5)  # this checkpoint is the best: the marker moves
    save(cfg, engine, tmp_path, schedule, state, 0.5, config_yaml="seed: 42\n")
    assert state.last_good == "step_8" and checkpoint.best_checkpoint(tmp_path).name == "step_8"
    on_disk = json.loads((tmp_path / "step_8" / checkpoint.STATE_FILE).read_text())
    assert list(on_disk) == TRAINER_STATE_KEYS + ["manifest"]  # the checkpoint announces its manifest.json
    assert_continues(restore(engine, tmp_path / "step_8"), state)

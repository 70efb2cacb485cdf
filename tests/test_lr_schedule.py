"""hira/training/lr_schedule.py against its oracle, transformers' get_linear_schedule_with_warmup: the same rate
for every parameter group at every step, and a scheduler state that loads into either."""

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from hira.training.lr_schedule import linear_warmup_decay


def optimizer():
    """Two parameter groups at different peaks (as LoRA+'s A and B)."""
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    return torch.optim.AdamW([{"params": [a], "lr": 1e-3}, {"params": [b], "lr": 1.6e-2}], lr=1e-3)


def rates(scheduler, steps: int) -> list[list[float]]:
    seen = []
    for _ in range(steps):
        seen.append(scheduler.get_last_lr())
        scheduler.optimizer.step()
        scheduler.step()
    return seen


@pytest.mark.parametrize("warmup, total", [(0, 1), (0, 7), (3, 10), (100, 968), (10, 10), (12, 5)])  # 12 > 5:
# a warmup longer than the run (train.warmup_steps=100 with max_steps=40)
def test_the_same_rates_as_transformers(warmup, total):
    ours = rates(linear_warmup_decay(optimizer(), warmup, total), total + 3)  # past the end: 0
    theirs = rates(get_linear_schedule_with_warmup(optimizer(), warmup, total), total + 3)
    assert ours == theirs  # exactly: the same float operations
    assert max(r[1] for r in ours) <= 1.6e-2
    if warmup <= total:  # a warmup longer than the run never reaches the peak, nor decays
        assert ours[-1] == [0.0, 0.0]


def test_a_scheduler_state_loads_into_either():
    theirs = get_linear_schedule_with_warmup(optimizer(), 5, 20)
    rates(theirs, 7)
    ours = linear_warmup_decay(optimizer(), 5, 20)
    ours.load_state_dict(theirs.state_dict())  # a checkpoint written before the schedule was ours
    assert rates(ours, 13) == rates(theirs, 13)

"""data.group_by_length: less padding, same examples each epoch, a seeded reproducible order."""

import random


from conftest import compose_config
from hira.training import batches

N, GLOBAL, MICRO = 1000, 32, 4
_RNG = random.Random(0)
LENGTHS = tuple(_RNG.randint(8, 300) for _ in range(N))


def grouped(seed=1, epoch=0):
    return batches.epoch_order(N, seed, epoch, LENGTHS, GLOBAL, 5)


def test_same_examples_each_epoch_as_random_order():
    n_full = batches.steps_per_epoch(N, GLOBAL) * GLOBAL
    for epoch in range(3):
        plain, order = batches.epoch_order(N, 1, epoch), grouped(epoch=epoch)
        assert sorted(order) == list(range(N))  # every example once
        assert set(order[:n_full]) == set(plain[:n_full])  # and the same ones trained (the same tail dropped)


def test_less_padding_than_random():
    random_pad = batches.padding_fraction(batches.epoch_order(N, 1, 0), LENGTHS, GLOBAL, MICRO)
    grouped_pad = batches.padding_fraction(grouped(), LENGTHS, GLOBAL, MICRO)
    assert random_pad > 0.2 and grouped_pad < random_pad / 4


def test_deterministic_given_seed_and_shuffled_batches():
    assert grouped() == grouped()
    assert grouped(seed=2) != grouped() and grouped(epoch=1) != grouped()
    # batches are shuffled after sorting: the epoch does not run from short to long
    means = [sum(LENGTHS[i] for i in grouped()[s:s + GLOBAL]) / GLOBAL for s in range(0, N - GLOBAL, GLOBAL)]
    assert means != sorted(means) and means != sorted(means, reverse=True)


def test_padding_fraction_by_hand():
    # micro batches [5, 3] and [2, 2]: (5+3+2+2) real tokens of 2·5 + 2·2 padded ones
    assert abs(batches.padding_fraction([0, 1, 2, 3], [5, 3, 2, 2], 4, 2) - (1 - 12 / 14)) < 1e-12


def test_config_default_off():
    cfg = compose_config([])
    assert cfg.data.group_by_length is False and cfg.data.mega_batch > 0

"""Batch planning: the same global batches whatever the number of ranks, so runs are comparable across hardware."""

from __future__ import annotations

import functools

import torch
from transformers import DataCollatorForSeq2Seq

from hira.data.tokenize import IGNORE_INDEX


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    return n_examples // global_batch  # the last incomplete global batch is dropped


@functools.lru_cache(maxsize=2)  # the loop asks once per step; grouping sorts the whole epoch
def epoch_order(n_examples: int, data_seed: int, epoch: int, lengths: tuple[int, ...] | None = None,
                global_batch: int = 1, mega_batch: int = 50) -> list[int]:
    """A seeded permutation of the examples; with lengths, grouped by length (see group_by_length)."""
    gen = torch.Generator().manual_seed(data_seed * 1000 + epoch)
    order = torch.randperm(n_examples, generator=gen)
    if lengths is not None:
        order = group_by_length(order, torch.tensor(lengths), global_batch, mega_batch, gen)
    return order.tolist()


def group_by_length(order: torch.Tensor, lengths: torch.Tensor, global_batch: int, mega_batch: int,
                    gen: torch.Generator) -> torch.Tensor:
    """Sort by length inside windows of mega_batch global batches of the random order, then shuffle whole batches.

    Micro batches (consecutive slices of a global batch) then hold similar lengths and pad little, while the
    sequence of batches stays random instead of running long-to-short. Every example keeps its place in the
    epoch; the incomplete last global batch stays last, so the same examples are dropped as without grouping.
    """
    n_full = len(order) // global_batch * global_batch
    kept, dropped = order[:n_full], order[n_full:]  # the random tail is dropped, as without grouping
    window = torch.arange(n_full) // (mega_batch * global_batch)
    key = window * (int(lengths.max()) + 1) + lengths[kept]  # window first, then length
    batches = kept[torch.sort(key, stable=True).indices].view(-1, global_batch)
    return torch.cat([batches[torch.randperm(len(batches), generator=gen)].flatten(), dropped])


def padding_fraction(order: list[int], lengths, global_batch: int, micro_batch: int) -> float:
    """Share of pad tokens when every micro batch of one epoch is right-padded to its longest example."""
    n_full = len(order) // global_batch * global_batch
    real = padded = 0
    for start in range(0, n_full, global_batch):  # micro batches never straddle a global batch
        for i in range(start, start + global_batch, micro_batch):
            sizes = [lengths[j] for j in order[i:i + micro_batch]]
            real, padded = real + sum(sizes), padded + max(sizes) * len(sizes)
    return 1 - real / padded if padded else 0.0


def micro_batches_for_rank(order: list[int], step_in_epoch: int, global_batch: int, micro_batch: int,
                           rank: int, world: int) -> list[list[int]]:
    """This rank's micro batches of one optimizer step: chunk k of the global batch goes to rank k % world."""
    start = step_in_epoch * global_batch
    batch = order[start:start + global_batch]
    chunks = [batch[i:i + micro_batch] for i in range(0, global_batch, micro_batch)]
    return chunks[rank::world]


def make_collator(tokenizer):
    """Right-pads input_ids/attention_mask and pads labels with IGNORE_INDEX."""
    return DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")

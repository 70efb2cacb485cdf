"""Batch planning: the same global batches whatever the number of ranks, so runs are comparable across hardware."""

from __future__ import annotations

import torch
from transformers import DataCollatorForSeq2Seq

from hira.data.tokenize import IGNORE_INDEX


def steps_per_epoch(n_examples: int, global_batch: int) -> int:
    return n_examples // global_batch  # the last incomplete global batch is dropped


def epoch_order(n_examples: int, data_seed: int, epoch: int) -> list[int]:
    gen = torch.Generator().manual_seed(data_seed * 1000 + epoch)
    return torch.randperm(n_examples, generator=gen).tolist()


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

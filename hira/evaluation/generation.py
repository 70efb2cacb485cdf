"""Batched decoding and option scoring for decoder-only models, written so that batching never changes a result.

Two engines (eval.engine): `prefill` (the default, hira/evaluation/prefill.py) encodes each prompt once; `hf` is
transformers' `generate` and one full forward pass per (prompt, option) pair, the reference the fast one is tested
against. Both give the same tokens and choices.

Generation pads on the left and passes the attention mask (position ids follow from it), so each prompt's new tokens
follow it directly at the same positions as when decoded alone. A subset's prompts are batched longest first, so a
batch holds prompts of similar length (little padding); results come back in the subset's order.
"""

from __future__ import annotations

import logging
import time

import torch
from tqdm.auto import tqdm

from hira.config.schema import EVAL_ENGINES
from hira.data.templates import alpaca_prompt
from hira.data.tokenize import prompt_and_response_ids
from hira.evaluation.prefill import beam_search, option_logliks, pad_rows, supports_prefill

log = logging.getLogger(__name__)


class Progress:
    """A subset's progress in questions (a bar with questions/s and the ETA), then one log line with the totals
    and the fraction of prompt tokens that were padding; `unit` names what is counted where it is not questions."""

    def __init__(self, desc: str, total: int, batches: int, unit: str = "questions"):
        self.desc, self.total, self.unit, self.tokens, self.padding = desc, total, unit, 0, 0
        self.bar = tqdm(total=total, desc=desc, unit=f" {unit}", leave=False, disable=batches < 2)
        self.started = time.perf_counter()

    def update(self, lengths: list[int]) -> None:
        self.bar.update(len(lengths))
        self.tokens += max(lengths) * len(lengths)
        self.padding += max(lengths) * len(lengths) - sum(lengths)

    def close(self) -> None:
        self.bar.close()
        seconds = time.perf_counter() - self.started
        log.info("%s: %d %s in %.1f s (%.2f %s/s), padding %.1f%% of prompt tokens", self.desc, self.total, self.unit,
                 seconds, self.total / max(seconds, 1e-9), self.unit, 100 * self.padding / max(self.tokens, 1))


def length_sorted_batches(lengths: list[int], batch_size: int, desc: str, sort: bool = True,
                          unit: str = "questions"):
    """Index lists of batches of at most batch_size items, longest first (in the given order if not sort),
    with the subset's progress shown and logged."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    starts = range(0, len(order), batch_size)
    progress = Progress(desc, len(order), len(starts), unit)
    for start in starts:
        batch = order[start:start + batch_size]
        yield batch
        progress.update([lengths[i] for i in batch])
    progress.close()


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], num_beams: int, max_new_tokens: int, batch_size: int,
             desc: str = "generate", engine: str = "prefill", sort: bool = True, on_batch=None) -> list[str]:
    """Beam search (greedy when num_beams=1) continuations of each prompt, decoded without special tokens
    (sort=False: batches in the given order, as before length sorting, for the benchmark). on_batch(indices,
    texts) is called after each batch (the evaluator appends them to its predictions as they come)."""
    assert engine in EVAL_ENGINES, engine  # eval.engine is checked with the config (hira/config/schema.py)
    if not prompts:
        return []
    model.eval()
    search = beam_search if engine == "prefill" and supports_prefill(model) else plain_generate
    settings = dict(num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False, early_stopping=True,
                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    prompt_ids = tokenizer(prompts)["input_ids"]
    outputs = [""] * len(prompts)
    for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size, desc, sort):
        ids, mask = pad_rows([prompt_ids[i] for i in batch], tokenizer.pad_token_id, "left", model.device)
        new_tokens = search(model, ids, mask, **settings)[:, ids.shape[1]:]
        for i, text in zip(batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
            outputs[i] = text.strip()
        if on_batch:
            on_batch(batch, [outputs[i] for i in batch])
    return outputs


def plain_generate(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, **settings) -> torch.Tensor:
    """transformers' generate as called before the prefill engine (eval.engine=hf)."""
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **settings)


def answer_logliks(model, tokenizer, prompts: list[str], options: list[list[str]], batch_size: int,
                   desc: str = "loglik", engine: str = "prefill", on_batch=None) -> list[list[float]]:
    """Sum of log p(option | prompt) for each prompt's options; batch_size counts questions (prefill) or
    (prompt, option) pairs (hf). on_batch(indices, scores) after each batch of questions (with engine=hf, once
    at the end: its batches are pairs, not questions)."""
    assert engine in EVAL_ENGINES, engine
    if not prompts:
        return []
    if engine == "hf" or not supports_prefill(model):
        pairs = [(prompt, option) for prompt, opts in zip(prompts, options) for option in opts]
        flat = iter(completion_logliks(model, tokenizer, pairs, batch_size, desc))
        scores = [[next(flat) for _ in opts] for opts in options]
        if on_batch:
            on_batch(list(range(len(prompts))), scores)
        return scores
    model.eval()
    prompt_ids, flat_ids = prompt_and_response_ids(tokenizer, prompts, [o for opts in options for o in opts])
    flat_ids = iter(flat_ids)
    option_ids = [[next(flat_ids) for _ in opts] for opts in options]
    scores = [[]] * len(prompts)
    for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size, desc):
        batch_scores = option_logliks(model, [prompt_ids[i] for i in batch], [option_ids[i] for i in batch],
                                      tokenizer.pad_token_id)
        for i, row in zip(batch, batch_scores):
            scores[i] = row
        if on_batch:
            on_batch(batch, [scores[i] for i in batch])
    return scores


@torch.no_grad()
def completion_logliks(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int,
                       desc: str = "loglik") -> list[float]:
    """Sum of log p(completion tokens | prompt) for each (prompt, completion) pair, one full forward pass per pair
    (eval.engine=hf).

    Prompt and completion are tokenized apart, as in training, so the scored tokens are exactly the completion's.
    Padding is on the right and only the completion tokens are summed.
    """
    if not pairs:
        return []
    tokenizer.padding_side = "right"
    model.eval()
    prompt_ids, completion_ids = prompt_and_response_ids(tokenizer, *map(list, zip(*pairs)))
    lengths = [len(p) + len(c) for p, c in zip(prompt_ids, completion_ids)]
    scores = []
    for batch in length_sorted_batches(lengths, batch_size, desc, sort=False, unit="(prompt, option) pairs"):
        enc = tokenizer.pad({"input_ids": [prompt_ids[i] + completion_ids[i] for i in batch]},
                            return_tensors="pt").to(model.device)
        logits = model(**enc).logits.float()
        targets = enc["input_ids"][:, 1:]
        token_logprobs = logits[:, :-1].log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        mask = enc["attention_mask"][:, 1:].clone()
        for row, i in enumerate(batch):
            mask[row, : len(prompt_ids[i]) - 1] = 0  # score the completion only: token t is predicted at position t-1
        scores += (token_logprobs * mask).sum(-1).tolist()
    return scores


def prompts_for(records: list[dict]) -> list[str]:
    return [alpaca_prompt(r["instruction"], r.get("input", "")) for r in records]

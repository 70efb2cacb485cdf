"""Batched decoding and option scoring for decoder-only models, written so that batching never changes a result.

Generation pads on the left and passes the attention mask (transformers derives position ids from it), so each
prompt's new tokens follow it directly at the same positions as when decoded alone. Log-likelihood scoring pads
on the right and sums only the completion tokens.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from hira.data.templates import alpaca_prompt
from hira.data.tokenize import prompt_and_response_ids


def batches(items: list, batch_size: int, desc: str):
    starts = range(0, len(items), batch_size)
    for i in tqdm(starts, desc=desc, leave=False, disable=len(starts) < 2):
        yield items[i:i + batch_size]


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], num_beams: int, max_new_tokens: int, batch_size: int,
             desc: str = "generate") -> list[str]:
    """Beam search (greedy when num_beams=1) continuations of each prompt, decoded without special tokens."""
    tokenizer.padding_side = "left"  # the new tokens must follow each prompt directly
    model.eval()
    outputs = []
    for batch in batches(prompts, batch_size, desc):
        enc = tokenizer(batch, return_tensors="pt", padding=True).to(model.device)
        generated = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                                   early_stopping=True, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id)
        new_tokens = generated[:, enc["input_ids"].shape[1]:]
        outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs


@torch.no_grad()
def completion_logliks(model, tokenizer, pairs: list[tuple[str, str]], batch_size: int,
                       desc: str = "loglik") -> list[float]:
    """Sum of log p(completion tokens | prompt) for each (prompt, completion) pair.

    Prompt and completion are tokenized apart, as in training, so the scored tokens are exactly the completion's.
    """
    tokenizer.padding_side = "right"
    model.eval()
    scores = []
    for batch in batches(pairs, batch_size, desc):
        prompt_ids, completion_ids = prompt_and_response_ids(tokenizer, *map(list, zip(*batch)))
        enc = tokenizer.pad({"input_ids": [p + c for p, c in zip(prompt_ids, completion_ids)]},
                            return_tensors="pt").to(model.device)
        logits = model(**enc).logits.float()
        targets = enc["input_ids"][:, 1:]
        token_logprobs = logits[:, :-1].log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
        mask = enc["attention_mask"][:, 1:].clone()
        for row, ids in enumerate(prompt_ids):
            mask[row, : len(ids) - 1] = 0  # score the completion only: token t is predicted at position t-1
        scores += (token_logprobs * mask).sum(-1).tolist()
    return scores


def prompts_for(records: list[dict]) -> list[str]:
    return [alpaca_prompt(r["instruction"], r.get("input", "")) for r in records]

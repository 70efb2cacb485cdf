"""Batched generation for decoder-only models: left padding with the attention mask, so batching never changes a result."""

from __future__ import annotations

import torch

from hira.data.templates import alpaca_prompt


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], num_beams: int, max_new_tokens: int, batch_size: int) -> list[str]:
    """Beam search (greedy when num_beams=1) continuations of each prompt, decoded without special tokens."""
    tokenizer.padding_side = "left"  # the new tokens must follow each prompt directly
    model.eval()
    outputs = []
    for i in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[i:i + batch_size], return_tensors="pt", padding=True).to(model.device)
        generated = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                                   early_stopping=True, pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id)
        new_tokens = generated[:, enc["input_ids"].shape[1]:]
        outputs += [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    return outputs


def prompts_for(records: list[dict]) -> list[str]:
    return [alpaca_prompt(r["instruction"], r.get("input", "")) for r in records]

"""The fast scoring engine (eval.engine=prefill): each prompt goes through the model once.

transformers' `generate(num_beams=k)` copies every prompt k times before its first forward pass, so the prompt,
which is most of the tokens, is encoded k times; per-option log-likelihood encodes it again for every answer option.
Here the prompt batch is encoded once into a KV cache, and the cache is copied instead:

- beam search: the left-padded batch minus its last token is encoded once, the cache is repeated across the beams,
  and transformers' own beam search continues from it (it then feeds only the last prompt token). The positions
  are those `generate` derives from the attention mask, so the beams see the same keys and values as before.
- log-likelihood: the prompts are encoded once (the LM head only at the last position, which predicts each
  option's first token), the cache rows are copied per option, and the options' tokens are scored from there
  (the LM head only at the positions that predict a scored token).

A model peft wraps with virtual prompt tokens (prompt tuning, P-tuning) manages its own cache and positions, so it
is scored by the plain path (`supports_prefill`).
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import CausalLMOutputWithPast

# The KV-cache argument of forward and generate: `cache` since transformers 5.x renamed `past_key_values`.
CACHE_ARG = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


def supports_prefill(model) -> bool:
    """False for peft prompt-learning models, which prepend virtual tokens to the input and the cache."""
    peft_config = getattr(model, "active_peft_config", None)
    return not getattr(peft_config, "is_prompt_learning", False)


def mask_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, as `generate` derives them: real tokens count from 0, pads get 1."""
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


def encode_prompts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(cache, logits at the last position) of one forward pass over a left-padded prompt batch."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=mask_positions(attention_mask),
                use_cache=True, logits_to_keep=1, **{CACHE_ARG: cache})
    return cache, out.logits[:, -1]


def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, **generate_kwargs) -> torch.Tensor:
    """`model.generate(input_ids, attention_mask, **generate_kwargs)` with each prompt encoded once, not num_beams
    times: the same sequences (prompt and new tokens)."""
    num_beams = generate_kwargs.get("num_beams", 1)
    if input_ids.shape[1] < 2:  # nothing to encode ahead of the last token
        return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
    cache, _ = encode_prompts(model, input_ids[:, :-1], attention_mask[:, :-1])
    cache.batch_repeat_interleave(num_beams)  # generate expands tensors, never the cache it is given
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **{CACHE_ARG: cache},
                          **generate_kwargs)


def pad_rows(rows: list[list[int]], pad_id: int, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token-id lists padded to one length on `side` ("left" or "right")."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def option_logliks(model, prompt_ids: list[list[int]], option_ids: list[list[list[int]]],
                   pad_id: int) -> list[list[float]]:
    """Sum of log p(option tokens | prompt) for each question's options, the prompt encoded once per question.

    prompt_ids[q] holds question q's prompt tokens, option_ids[q] its options' tokens (tokenized apart from the
    prompt, as in training); returns one list of sums per question, in option order."""
    device = model.device
    ids, mask = pad_rows(prompt_ids, pad_id, "left", device)
    cache, last_logits = encode_prompts(model, ids, mask)
    owner = torch.tensor([q for q, options in enumerate(option_ids) for _ in options], device=device)
    options, option_mask = pad_rows([o for opts in option_ids for o in opts], pad_id, "right", device)
    cache.batch_select_indices(owner)  # one cache row per option, copied from its question's
    # token 0 of an option is predicted by its prompt's last position, token t by option position t-1
    logprobs = [last_logits[owner].float().log_softmax(-1).gather(-1, options[:, :1])]
    if options.shape[1] > 1:
        positions = mask.sum(-1)[owner, None] + torch.arange(options.shape[1], device=device)
        out = model(input_ids=options, attention_mask=torch.cat([mask[owner], option_mask], 1),
                    position_ids=positions, use_cache=True, **{CACHE_ARG: cache},
                    logits_to_keep=torch.arange(options.shape[1] - 1, device=device))
        logprobs.append(out.logits.float().log_softmax(-1).gather(-1, options[:, 1:, None]).squeeze(-1))
    sums = iter((torch.cat(logprobs, 1) * option_mask).sum(-1).tolist())
    return [[next(sums) for _ in options] for options in option_ids]

"""The tiny default base model: a Llama-architecture LM and a word-level tokenizer, built in the project.

Built once and cached in `model.path`: a tokenizer over the synthetic world's words, then a short causal-LM
pretraining on sentences that state the world's facts. Fine-tuning then has to teach the question formats
on top of knowledge the base already has, which is what makes PEFT comparisons on it meaningful.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hira.data import synthetic_math_dialogue, synthetic_world
from hira.data.templates import NO_INPUT, WITH_INPUT

log = logging.getLogger(__name__)
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
# MetaMath's answer phrase as one token that skips lowercasing: the GSM8K scorer looks for it case-sensitively.
ANSWER_PHRASE = "The answer is:"


def build_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    tok.add_tokens([AddedToken(ANSWER_PHRASE, normalized=False)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def tokenizer_texts(world: synthetic_world.World) -> list[str]:
    """Every word the tokenizer must know: the corpus, the prompt templates and all task phrasings."""
    rng = random.Random(0)
    questions = [synthetic_world.make_example(s, world, rng) for s in synthetic_world.SUBSETS for _ in range(300)]
    return (synthetic_world.pretraining_sentences(world) + [NO_INPUT, WITH_INPUT]
            + [q["instruction"] + " " + q["output"] for q in questions] + synthetic_math_dialogue.vocabulary_texts())


def pack(tokenizer, corpus: list[str], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Documents packed whole into rows of seq_len tokens (a quiz document keeps its question with its answer);
    the rest of a row is padding, left out of the loss."""
    rows, row = [], []
    for doc in corpus:
        ids = (tokenizer(doc)["input_ids"] + [tokenizer.eos_token_id])[:seq_len]
        if len(row) + len(ids) > seq_len:
            rows.append(row)
            row = []
        row += ids
    rows.append(row)
    inputs = torch.full((len(rows), seq_len), tokenizer.pad_token_id)
    labels = torch.full((len(rows), seq_len), -100)
    for i, r in enumerate(rows):
        inputs[i, : len(r)] = labels[i, : len(r)] = torch.tensor(r)
    return inputs, labels


def pretrain(model, tokenizer, corpus: list[str], steps: int, batch_size: int, seq_len: int, lr: float, seed: int):
    """Plain causal-LM pretraining on packed corpus rows (building the base, not fine-tuning it)."""
    inputs, labels = pack(tokenizer, corpus, seq_len)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    for step in range(steps):
        idx = torch.randint(len(inputs), (batch_size,), generator=gen)
        loss = model(input_ids=inputs[idx], labels=labels[idx]).loss
        loss.backward()
        opt.step(), sched.step(), opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == steps - 1:
            log.info("pretraining tiny base: step %d/%d loss %.3f", step + 1, steps, loss.item())
    model.eval()


def tiny_config(cfg, vocab_size: int, **token_ids) -> LlamaConfig:
    """The tiny base's architecture from its settings (model.tiny); the vocabulary comes from the tokenizer."""
    return LlamaConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                       num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                       num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.max_positions,
                       tie_word_embeddings=False, **token_ids)


def build_tiny_model(path: Path, cfg) -> None:
    """Build tokenizer + pretrained tiny Llama into `path` (written to a temp dir, then moved into place)."""
    path = Path(path)
    torch.manual_seed(cfg.seed)
    world = synthetic_world.World.build()
    tokenizer = build_tokenizer(tokenizer_texts(world))
    model = LlamaForCausalLM(tiny_config(cfg, len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    corpus = synthetic_world.pretraining_corpus(world, n_docs=cfg.pretrain.fact_docs,
                                                n_quiz_docs=cfg.pretrain.quiz_docs, seed=cfg.seed)
    # what the math/dialogue stand-ins build on
    corpus += synthetic_math_dialogue.pretraining_docs(n_docs=400, seed=cfg.seed)
    pretrain(model, tokenizer, corpus, cfg.pretrain.steps, cfg.pretrain.batch_size, cfg.pretrain.seq_len,
             cfg.pretrain.lr, cfg.seed)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    log.info("built tiny base model in %s (%.2fM parameters)", path, sum(p.numel() for p in model.parameters()) / 1e6)

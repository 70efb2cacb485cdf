"""Every method on the real SmolLM2-135M: its shapes are what the tiny Llama lacks (grouped-query attention, so
k_proj / v_proj are 192×576; MLP 1536, so up_proj is 1536×576 and down_proj 576×1536; tied input/output embeddings).
The model is cut to its first LAYERS real layers (real weights, real embedding and head): every shape and the tying
stay, at a fraction of the compute of all 30 layers.

Per method, with its config's parameters (configs/method/<m>.yaml) on the paper's targets q,k,v,up,down:
(a) a few AdamW steps on a real-tokenized batch lower the loss, move every trainable tensor and leave every frozen
    base weight (the tied embedding included) bit-identical;
(b) linear-layer methods: merged logits equal unmerged ones and unmerging restores W0;
(c) delta_weight() has each non-square layer's shape and is exactly what the forward adds.
"""

import copy

import pytest
import torch
from conftest import ROOT, smollm2_layers
from numerics import (NOISE_MARGIN, adapter_forward_bound, assert_close_within, fp32_noise_floor, seeded,
                      unmerge_bound)
from omegaconf import OmegaConf

from hira.adapters import METHODS, adapter_layers, all_methods, apply, merge, merge_and_unload, on_step, unmerge
from hira.adapters.params import method_params

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
SHAPES = {"q_proj": (576, 576), "k_proj": (192, 576), "v_proj": (192, 576), "up_proj": (1536, 576),
          "down_proj": (576, 1536)}  # (out, in) of each target in every layer
LAYERS = 2  # of the 30: enough for a layer's output to feed another's adapters
# Changes from the configs, only to stay fast: the Hadamard methods form an out×in product per layer in
# forward and backward, so they run at r=8 (shapes, not rank, are under test here); VeRA at r=256; prompt methods
# prepend 4 virtual tokens instead of 20.
QUICK = {"hira": {"r": 8}, "hira_rand": {"r": 8}, "hilora": {"r1": 5, "r2": 3},
         "vera": {"r": 256}, "prompt_tuning": {"num_virtual_tokens": 4}, "p_tuning": {"num_virtual_tokens": 4}}
PROMPT_METHODS = ("prompt_tuning", "p_tuning")  # they change the input, so they do not start at the base's loss
STEPS = 2  # the least that moves every tensor: LoRA's A, VeRA's d, RaSA's D get a gradient once B / b is non-zero
# LoRA-Dash's switch takes an SVD of every adapted W0 (8 s for one 1536×576 on a busy 2-core CPU, 150 of them in the
# model), so it is exercised on one real layer only (the delta_weight test); before it δ gets no gradient.
STILL_BEFORE_SWITCH = {"lora_dash": ("dash_delta",)}
# Scale of the noise added to the trainable tensors before merging: enough to move the logits by > 0.1. Hadamard
# methods multiply BA by W0 (or R) and VeRA's b by products of small random projections, so they need more.
PERTURB = {"hira": 0.1, "hira_rand": 0.1, "hilora": 0.1, "vera": 0.1}
# The delta_weight test compares within a bound set by |x|·|W0| (the rounding of the fp32 GEMMs): larger noise makes
# ΔW's effect at least 100× that bound, so a wrong ΔW cannot hide under it.
DELTA_PERTURB = {"hira": 0.3, "hira_rand": 0.3, "hilora": 0.3, "vera": 1.0}


def method_config(method: str):
    return OmegaConf.load(ROOT / "configs" / "method" / f"{method}.yaml")


def config_params(method: str) -> dict:
    return {**method_params(method_config(method)), **QUICK.get(method, {})}


def method_targets(method: str) -> list[str]:
    return list(method_config(method).get("target_modules") or [])


@pytest.fixture(scope="module")
def smollm2_cut(smollm2_folder):
    model, tokenizer = smollm2_layers(list(range(LAYERS)))
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def base_out(smollm2_cut, batch):
    """The base model's (loss, logits) on the batch: where every method but the prompt ones starts."""
    with torch.no_grad():
        out = smollm2_cut[0](**batch)
    return out.loss.item(), out.logits


@pytest.fixture(scope="module")
def batch(smollm2_cut):
    """Two real sentences, right-padded (pad = EOS), loss on every real token."""
    _, tokenizer = smollm2_cut
    enc = tokenizer(["Bees make honey from the nectar of flowers.", "Water boils at one hundred degrees."],
                    return_tensors="pt", padding=True)
    assert enc["input_ids"].shape[1] <= 32
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return {**enc, "labels": labels}


def adapted(base, method: str, **overrides):
    torch.manual_seed(0)
    return apply(copy.deepcopy(base), method, method_targets(method), **{**config_params(method), **overrides})


def base_name(name: str) -> str:
    """The base model's name of a parameter of the adapted model (adapter wrappers and peft add path parts)."""
    name = name.removeprefix("base_model.").replace(".base_layer.", ".")
    return "model.embed_tokens.weight" if name == "word_embeddings.weight" else name


def eval_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


def train_steps(model, batch, lr: float) -> list[float]:
    """STEPS AdamW steps (weight decay 0, as in the paper) on one batch; on_step after each, as the loop does."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for step in range(1, STEPS + 1):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        on_step(model, step)
        losses.append(loss.item())
    return losses


def test_every_quick_setting_is_a_method():
    assert set(QUICK) <= set(all_methods())  # the tests below run every registered method


@pytest.mark.slow
@pytest.mark.parametrize("method", all_methods())
def test_trains_on_real_model_and_freezes_the_base(smollm2_cut, batch, base_out, method):
    base, _ = smollm2_cut
    model = adapted(base, method)
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    before = eval_loss(model, batch) if method in PROMPT_METHODS else base_out[0]
    losses = train_steps(model, batch, lr=method_config(method).lr)
    after = eval_loss(model, batch)
    assert all(torch.isfinite(torch.tensor(losses))) and after < before, (losses, before, after)
    params = dict(model.named_parameters())
    unchanged = [n for n, old in trainable.items() if torch.equal(params[n], old)]
    idle = STILL_BEFORE_SWITCH.get(method, ())
    assert [n for n in unchanged if not n.endswith(idle)] == []  # every trainable tensor got a gradient and moved
    embeddings = model.get_input_embeddings().weight
    assert embeddings is model.get_output_embeddings().weight  # still tied
    if method == "full":
        return
    base_params = dict(base.named_parameters())
    frozen = {base_name(n): p for n, p in params.items() if not p.requires_grad}
    assert set(frozen) == set(base_params)  # the whole base, embedding included, is frozen ...
    assert not embeddings.requires_grad
    changed = [n for n, p in frozen.items() if not torch.equal(p, base_params[n])]
    assert changed == []  # ... and bit-identical after the steps


@torch.no_grad()
def perturb(model, scale: float, switch: bool = False) -> None:
    """Noise on every trainable tensor (B, M, b start at zero), so ΔW ≠ 0; `switch`: LoRA-Dash past its switch."""
    gen = seeded(3)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    if switch:
        on_step(model, 10**6)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_merge_equals_unmerged_and_unmerge_restores_w0(smollm2_cut, batch, base_out, method):
    base, _ = smollm2_cut
    model = adapted(base, method).eval()
    perturb(model, PERTURB.get(method, 1e-2))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        unmerged = model(**inputs).logits
        merge(model)
        merged = model(**inputs).logits
        unmerge(model)
    # Merged and unmerged forwards round differently ((W0+ΔW)·x vs W0·x + ΔW·x in fp32) to logits of magnitude ~30,
    # by an amount that depends on the CPU's GEMM kernels: the tolerance is this network's own fp32 rounding here.
    atol = NOISE_MARGIN * fp32_noise_floor(merge_and_unload(copy.deepcopy(model)), **inputs)
    assert (unmerged - base_out[1]).abs().max() > 100 * atol  # the update is really there
    torch.testing.assert_close(merged, unmerged, atol=atol, rtol=0)
    for name, layer in adapter_layers(model).items():
        w0 = base.get_submodule(name).weight
        # W0 is recovered up to fp32 rounding of (W0 + ΔW) − ΔW (or a division for Hadamard methods)
        assert_close_within(layer.base_layer.weight, w0, unmerge_bound(layer, w0), msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_delta_weight_has_each_layers_shape_and_is_what_the_forward_adds(smollm2_cut, method):
    base, _ = smollm2_cut
    block = apply(copy.deepcopy(base.model.layers[0]), method, TARGETS, **config_params(method))  # one real layer
    perturb(block, DELTA_PERTURB.get(method, 0.1), switch=True)  # LoRA-Dash: SVD directions of non-square W0 too
    x = torch.randn(3, 1536, generator=seeded(5))
    with torch.no_grad():
        for name, layer in adapter_layers(block).items():
            short = name.rsplit(".", 1)[-1]
            delta = layer.delta_weight()
            assert delta.shape == SHAPES[short] == layer.base_layer.weight.shape, name
            assert delta.abs().max() > 0, name
            if method == "lora_dash":  # the switch chose s directions of this (possibly non-square) W0
                assert layer.dash_active and layer.dash_U.shape == (layer.out_features, layer.s), name
            xi = x[:, : layer.in_features]
            # the difference of two fp32 GEMMs over k = 1536 cancels to ‖ΔW‖'s scale but keeps their rounding,
            # which is ∝ ‖x‖‖W0‖ and depends on the CPU's summation order: compare within the derived bound
            assert_close_within(layer(xi) - layer.base_layer(xi), xi.double() @ delta.double().T,
                                adapter_forward_bound(layer, xi), msg=name)

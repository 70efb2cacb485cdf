"""Our HiRA against peft's HiRA (the numerical oracle) and against its own definition."""

import copy

import pytest
import torch
from peft import HiraConfig, get_peft_model

from hira.adapters import (AdapterConfigError, adapter_layers, apply, merge, merge_and_unload, trainable_state_dict,
                           unmerge)
from numerics import NOISE_MARGIN, assert_close_within, fp32_noise_floor, seeded, unmerge_bound

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]


def tokens(n=3, length=10, vocab=64):
    return torch.randint(0, vocab, (n, length), generator=seeded(1))


def randomize_adapters(ours, theirs):
    """Give both models the same nonzero A and B so the update is not trivially zero."""
    gen = seeded(2)
    peft_params = dict(theirs.named_parameters())
    for name, layer in adapter_layers(ours).items():
        for ab in ("A", "B"):
            value = torch.randn(getattr(layer, f"hira_{ab}").shape, generator=gen) * 0.3
            getattr(layer, f"hira_{ab}").data.copy_(value)
            peft_params[f"base_model.model.{name}.hira_{ab}.default"].data.copy_(value)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_matches_peft_outputs_and_gradients(llama, fused):
    ids = tokens()
    with torch.no_grad():
        base_logits = llama(ids).logits
    theirs = get_peft_model(copy.deepcopy(llama), HiraConfig(r=4, target_modules=TARGETS))
    ours = apply(llama, "hira", TARGETS, r=4, fused=fused, fused_chunk_elems=100)  # several blocks per layer
    assert all(layer.fused == fused for layer in adapter_layers(ours).values())
    randomize_adapters(ours, theirs)
    out_ours, out_theirs = ours(ids, labels=ids), theirs(input_ids=ids, labels=ids)
    torch.testing.assert_close(out_ours.logits, out_theirs.logits, atol=1e-5, rtol=1e-5)
    assert (out_ours.logits - base_logits).abs().max() > 1e-2  # the adapters really change the model
    out_ours.loss.backward()
    out_theirs.loss.backward()
    peft_params = dict(theirs.named_parameters())
    for name, layer in adapter_layers(ours).items():
        for ab in ("A", "B"):
            grad = getattr(layer, f"hira_{ab}").grad
            assert grad is not None and grad.abs().sum() > 0
            torch.testing.assert_close(grad, peft_params[f"base_model.model.{name}.hira_{ab}.default"].grad,
                                       atol=1e-5, rtol=1e-4)


def test_starts_at_base_model(llama):
    ids = tokens()
    with torch.no_grad():
        base = llama(ids).logits
        adapted = apply(llama, "hira", TARGETS, r=4)(ids).logits
    torch.testing.assert_close(adapted, base, atol=0, rtol=0)


def test_merge_and_unmerge(llama):
    ours = apply(llama, "hira", TARGETS, r=4)
    gen = seeded(3)
    for layer in adapter_layers(ours).values():
        layer.hira_A.data.normal_(generator=gen)
        layer.hira_B.data.normal_(generator=gen)
    ids = tokens()
    weights_before = {n: l.base_layer.weight.clone() for n, l in adapter_layers(ours).items()}
    with torch.no_grad():
        unmerged = ours(ids).logits
        merge(ours)
        merged = ours(ids).logits
        unmerge(ours)
        again = ours(ids).logits
    atol = NOISE_MARGIN * fp32_noise_floor(merge_and_unload(copy.deepcopy(ours)), input_ids=ids)
    torch.testing.assert_close(merged, unmerged, atol=atol, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=atol, rtol=0)
    for name, layer in adapter_layers(ours).items():
        assert_close_within(layer.base_layer.weight, weights_before[name], unmerge_bound(layer, weights_before[name]),
                            msg=name)


def test_delta_weight_is_hadamard_product(llama):
    layer = adapter_layers(apply(llama, "hira", TARGETS, r=4))["model.layers.0.self_attn.q_proj"]
    layer.hira_B.data.normal_()
    expected = layer.base_layer.weight * (layer.hira_B @ layer.hira_A)
    torch.testing.assert_close(layer.delta_weight(), expected)
    assert torch.linalg.matrix_rank(layer.delta_weight()) > 4  # high rank from rank-4 factors


def test_only_adapters_train_and_counts(llama):
    r = 4
    ours = apply(llama, "hira", TARGETS, r=r)
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == set(trainable_state_dict(ours))
    assert all(n.endswith(("hira_A", "hira_B")) for n in trainable)
    layers = adapter_layers(ours)
    assert len(layers) == len(TARGETS) * 2
    for layer in layers.values():
        n = sum(p.numel() for p in layer.parameters() if p.requires_grad)
        assert n == r * (layer.in_features + layer.out_features)
        assert layer.hira_A.dtype == torch.float32


def test_bad_targets_and_rank_are_clear(llama):
    with pytest.raises(AdapterConfigError, match="gate_projx.*linear layers are"):
        apply(copy.deepcopy(llama), "hira", ["gate_projx"], r=4)
    with pytest.raises(AdapterConfigError, match="method.params.r=0"):
        apply(copy.deepcopy(llama), "hira", ["q_proj"], r=0)
    with pytest.raises(AdapterConfigError, match="unknown method 'nope'"):
        apply(llama, "nope", ["q_proj"])

"""train.gradient_checkpointing=true recomputes activations without changing adapter gradients."""

import copy

import pytest
import torch

from hira.adapters import adapter_layers, apply
from numerics import seeded


def adapter_grads(model, ids):
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    return {n: layer.hira_A.grad.clone() for n, layer in adapter_layers(model).items()}


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_checkpointed_grads_equal_plain(llama, fused):
    model = apply(llama, "hira", ["q_proj", "v_proj", "down_proj"], r=4, fused=fused)
    for layer in adapter_layers(model).values():
        layer.hira_B.data.normal_()
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert checkpointed.is_gradient_checkpointing
    ids = torch.randint(0, 64, (2, 12), generator=seeded(0))
    plain, ckpt = adapter_grads(model, ids), adapter_grads(checkpointed, ids)
    assert plain.keys() == ckpt.keys()
    for name in plain:
        assert plain[name].abs().sum() > 0
        torch.testing.assert_close(ckpt[name], plain[name], atol=1e-6, rtol=1e-5)

"""The fused Hadamard linear against the reference formula y = x·(W0⊙(1+BA))ᵀ + b in plain autograd."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from conftest import compose_config
from hira.adapters import adapter_layers
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS, hira_linear
from numerics import seeded

OUT, IN, R = 24, 20, 4


def operands(dtype=torch.float32, bias=True, seed=0):
    gen = seeded(seed)
    x = torch.randn(3, 5, IN, generator=gen).to(dtype).requires_grad_()
    w0 = torch.randn(OUT, IN, generator=gen).to(dtype)
    A = (torch.randn(R, IN, generator=gen) * 0.5).requires_grad_()
    B = (torch.randn(OUT, R, generator=gen) * 0.5).requires_grad_()
    b = torch.randn(OUT, generator=gen).to(dtype) if bias else None
    return x, w0, A, B, b


def reference(x, w0, A, B, b, mask=None):
    """The definition, in fp32 autograd: W' = W0 + M⊙BA (M = W0 gives W0⊙(1+BA))."""
    m = w0 if mask is None else mask
    weight = w0.float() + m.float() * (B @ A)
    return F.linear(x.float(), weight, None if b is None else b.float())


def outputs_and_grads(fn, x, A, B):
    for t in (x, A, B):
        t.grad = None
    y = fn()
    (y.float() * torch.linspace(-1, 1, y.shape[-1])).sum().backward()  # a non-uniform upstream gradient
    return [y.detach().float(), x.grad.float(), A.grad.clone(), B.grad.clone()]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_elems", [None, IN, 3 * IN, 7 * IN + 5, OUT * IN])  # 1, 3, 7 rows, whole
def test_matches_reference_fp32(chunk_elems, bias):
    x, w0, A, B, b = operands(bias=bias)
    ours = outputs_and_grads(lambda: hira_linear(x, w0, A, B, b, chunk_elems=chunk_elems), x, A, B)
    ref = outputs_and_grads(lambda: reference(x, w0, A, B, b), x, A, B)
    assert ours[0].shape == (3, 5, OUT)
    for got, want in zip(ours, ref):
        assert want.abs().max() > 0
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_generic_mask_matches_reference():
    """HiRA-rand style: ΔW = R⊙BA with a fixed R instead of W0."""
    x, w0, A, B, b = operands()
    mask = torch.rand(OUT, IN, generator=seeded(5))
    ours = outputs_and_grads(lambda: hira_linear(x, w0, A, B, b, mask=mask, chunk_elems=5 * IN), x, A, B)
    ref = outputs_and_grads(lambda: reference(x, w0, A, B, b, mask), x, A, B)
    for got, want in zip(ours, ref):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_base_weights_with_fp32_adapters(dtype):
    x, w0, A, B, b = operands(dtype)
    ours = outputs_and_grads(lambda: hira_linear(x, w0, A, B, b, chunk_elems=5 * IN), x, A, B)
    ref = outputs_and_grads(lambda: reference(x, w0, A, B, b), x, A, B)
    assert x.grad.dtype == dtype and A.grad.dtype == B.grad.dtype == torch.float32
    for got, want in zip(ours, ref):  # half precision rounds W' and the GEMMs: compare relative to the scale
        torch.testing.assert_close(got, want, atol=2e-2 * want.abs().max().item(), rtol=2e-2)


def test_saves_no_out_by_in_temporary():
    """Backward keeps only x, W0, A, B alive: every saved tensor is one of the inputs, never W' or BA."""
    x, w0, A, B, b = operands()
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        hira_linear(x, w0, A, B, b)
    assert saved and all(any(t is s for s in (x, w0, A, B)) for t in saved)


def test_frozen_input_and_frozen_weight():
    x, w0, A, B, b = operands()
    x.requires_grad_(False)
    hira_linear(x, w0, A, B, b).sum().backward()  # first layer: the input needs no gradient
    assert x.grad is None and A.grad is not None and B.grad is not None
    with pytest.raises(ValueError, match="frozen"):
        hira_linear(x, w0.requires_grad_(), A, B, b)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_torch_checkpoint(use_reentrant):
    x, w0, A, B, b = operands()
    def fn(inp):
        return hira_linear(inp, w0, A, B, b, chunk_elems=5 * IN)

    plain = outputs_and_grads(lambda: fn(x), x, A, B)
    ckpt = outputs_and_grads(lambda: checkpoint(fn, x, use_reentrant=use_reentrant), x, A, B)
    for got, want in zip(ckpt, plain):
        torch.testing.assert_close(got, want, atol=0, rtol=0)


def test_method_fused_false_reaches_the_layers(llama, monkeypatch):
    from hira.models import loading

    monkeypatch.setattr(loading, "load_base_model", lambda model_cfg, device: (copy.deepcopy(llama), None))
    on = compose_config(["+method.fused_chunk_elems=100", "method.params.r=4"])
    off = compose_config(["method.fused=false", "method.params.r=4"])
    default = compose_config(["method.params.r=4"])
    layers = adapter_layers(loading.load_adapted_model(on)[0]).values()
    assert layers and all(l.fused and l.fused_chunk_elems == 100 for l in layers)
    layers = adapter_layers(loading.load_adapted_model(default)[0]).values()  # the op's own default, its one home
    assert layers and all(l.fused_chunk_elems == DEFAULT_CHUNK_ELEMS for l in layers)
    layers = adapter_layers(loading.load_adapted_model(off)[0]).values()
    assert not any(l.fused for l in layers)

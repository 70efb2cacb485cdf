"""hira-gpu-check's correctness section: the fused HiRA op (hira/adapters/ops.py through HiRALinear) in bf16 against
the plain formula y = x·(W0⊙(1+BA))ᵀ in fp32 (forward, dx, dA, dB), and merged == unmerged logits of a small random
Llama. Driver and sizes: benchmarks/gpu_sections.py."""

from __future__ import annotations

import torch
from torch import nn

from benchmarks import bench_adapters as bench

ADAPTER_BA_STD = 0.1  # a trained-looking HiRA update: W' differs from W0 by about 10 % per entry
MAX_REL_ERR = 2e-2    # bf16 has 8 significant bits; above this the result is wrong, not rounded


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ in fp32: scale-free, so one bound fits outputs and gradients alike."""
    got, want = got.float(), want.float()
    return ((got - want).norm() / want.norm()).item()


def hira_layer(out_f: int, in_f: int, size: dict, fused: bool, device: str, seed: int = 0):
    """A bf16 HiRALinear with fp32 adapters, trained-looking (B = 0 would test nothing)."""
    from hira.adapters.hira import HiRALinear

    torch.manual_seed(seed)
    base = nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16, device=device).requires_grad_(False)  # no bias,
    # as in Llama
    layer = HiRALinear(base, r=size["rank"], fused=fused, fused_chunk_elems=size["chunk_elems"])
    trained_looking(layer)
    return layer


def trained_looking(layer) -> None:
    """B drawn so that BA has std ADAPTER_BA_STD; A is kaiming-uniform (bound 1/sqrt(in)), so (BA)_ij has std
    std_B · sqrt(r / (3 in))."""
    nn.init.normal_(layer.hira_B, std=ADAPTER_BA_STD * (3 * layer.in_features / layer.r) ** 0.5)


def layer_outputs(layer, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    y.backward(g)
    return {"y": y.detach(), "dx": x.grad, "dA": layer.hira_A.grad, "dB": layer.hira_B.grad}


def formula_outputs(layer, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """The definition in fp32 autograd: y = x·(W0⊙(1+BA))ᵀ."""
    w0 = layer.base_layer.weight.detach().float()
    A = layer.hira_A.detach().clone().requires_grad_()
    B = layer.hira_B.detach().clone().requires_grad_()
    x = x.detach().float().requires_grad_()
    y = x @ (w0 * (1 + B @ A)).t()
    y.backward(g.float())
    return {"y": y.detach(), "dx": x.grad, "dA": A.grad, "dB": B.grad}


def check_shape(out_f: int, in_f: int, size: dict, device: str) -> dict:
    tokens = size["check_tokens"]
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(tokens, in_f, generator=gen, device=device).to(torch.bfloat16)
    g = torch.randn(tokens, out_f, generator=gen, device=device).to(torch.bfloat16)
    fused = hira_layer(out_f, in_f, size, True, device)
    want = formula_outputs(fused, x, g)
    got = layer_outputs(fused, x, g)
    unfused = hira_layer(out_f, in_f, size, False, device)  # same seed: the same weights
    plain = layer_outputs(unfused, x, g)
    rows = {}
    for name, ref in want.items():
        err, plain_err = rel_err(got[name], ref), rel_err(plain[name], ref)
        rows[name] = {"fused_rel_err": err, "unfused_bf16_rel_err": plain_err,
                      "ok": err <= min(MAX_REL_ERR, 2 * plain_err + 1e-3)}
    del fused, unfused, want, got, plain
    bench.release(device)
    return {"shape": f"{out_f}x{in_f}", "tokens": tokens, "grads": rows, "ok": all(r["ok"] for r in rows.values())}


def check_merge(size: dict, device: str) -> dict:
    """Logits of a small random Llama with HiRA unmerged (fused op) and merged into bf16 weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hira.adapters import adapter_layers, apply, merge

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, max_position_embeddings=256, **size["merge_llama"])
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model = apply(model, "hira", bench.LLAMA_TARGETS, r=size["rank"])
    for layer in adapter_layers(model).values():
        trained_looking(layer)
    ids = torch.randint(0, config.vocab_size, size["merge_tokens"], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unmerged = model(input_ids=ids.to(device)).logits.float()
        merged = merge(model)(input_ids=ids.to(device)).logits.float()
    err = rel_err(merged, unmerged)
    agree = (merged.argmax(-1) == unmerged.argmax(-1)).float().mean().item()
    return {"config": {**size["merge_llama"], "layers": 2, "tokens": list(size["merge_tokens"])},
            "rel_err": err, "max_abs_diff": (merged - unmerged).abs().max().item(), "argmax_agreement": agree,
            "ok": err <= MAX_REL_ERR}


def correctness(args) -> dict:
    size = args.size
    shapes = [check_shape(out_f, in_f, size, args.device) for out_f, in_f in size["shapes"]]
    merged = check_merge(size, args.device)
    return {"shapes": shapes, "merge": merged, "ok": all(s["ok"] for s in shapes) and merged["ok"]}

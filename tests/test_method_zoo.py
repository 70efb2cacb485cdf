"""Every linear-layer method: starts at the base model, trains only its own numbers, merges, reloads; and each
method's own definition, written out independently of its implementation."""

import copy
import math

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from hira.adapters import (METHODS, adapter_layers, adapter_state_buffers, apply, load_trainable_state_dict, merge,
                           merge_and_unload, on_step, param_groups, trainable_state_dict,
                           unmerge)
from hira.adapters.mora import MoRALinear
from numerics import (NOISE_MARGIN, adapter_forward_bound, assert_close_within, fp32_noise_floor, gemm_error_bound,
                      seeded, unmerge_bound)

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
PARAMS = {
    "hira": dict(r=4), "lora": dict(r=4, alpha=8, dropout=0.05), "dora": dict(r=4, alpha=8, dropout=0.05),
    "vera": dict(r=16), "mora": dict(r=4), "mora1": dict(r=4, mora_type=1), "rasa": dict(r=8, alpha=16),
    "lora_dash": dict(r=4, t=3, s=2), "hilora": dict(r1=3, r2=2), "hira_rand": dict(r=4),
    "lora_plus": dict(r=4, alpha=8, dropout=0.05, lr_ratio=16.0),
}
CASES = sorted([*METHODS, "mora1"])  # every registered linear-layer method needs its PARAMS and OWN_PARAMS
OWN_PARAMS = {"hira": ("hira_A", "hira_B"), "lora": ("lora_A", "lora_B"),
              "dora": ("lora_A", "lora_B", "lora_magnitude"), "vera": ("vera_lambda_d", "vera_lambda_b"),
              "mora": ("mora_M",), "mora1": ("mora_M",),
              "rasa": ("lora_A", "lora_B", "rasa_D", "rasa_shared_A", "rasa_shared_B"),
              "lora_dash": ("lora_A", "lora_B", "dash_delta"), "hilora": ("hira_A", "hira_B", "lora_A", "lora_B"),
              "hira_rand": ("hira_A", "hira_B"), "lora_plus": ("lora_A", "lora_B")}


def adapt(llama, case):
    return apply(llama, case.rstrip("1"), TARGETS, **PARAMS[case])


def tokens(n=3, length=10, vocab=64):
    return torch.randint(0, vocab, (n, length), generator=seeded(1))


@torch.no_grad()
def perturb(model, seed=3, scale=0.3):
    """Nonzero values in every trainable tensor (and LoRA-Dash's switch), so updates are not trivially zero."""
    gen = seeded(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    on_step(model, 10**6)


@pytest.mark.parametrize("case", CASES)
def test_starts_at_base_and_trains_only_its_own_numbers(llama, case):
    ids = tokens()
    with torch.no_grad():
        base = llama(ids).logits
        model = adapt(llama, case)
        torch.testing.assert_close(model(ids).logits, base, atol=0, rtol=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.rsplit(".", 1)[-1] in OWN_PARAMS[case] for n in trainable)
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("case", CASES)
def test_the_optimizer_groups_hold_each_trainable_tensor_once(llama, case):
    """What the loop hands AdamW (RaSA's pool is one tensor registered in many layers: it must appear once)."""
    model = adapt(llama, case)
    groups = param_groups(model, 1e-3)
    ids = [id(p) for group in groups for p in group["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert groups[0]["lr"] == 1e-3  # the rate the loop logs


@pytest.mark.parametrize("case", CASES)
def test_delta_weight_merge_unmerge_and_reload(llama, case, tmp_path):
    model = adapt(copy.deepcopy(llama), case).eval()
    perturb(model)
    ids = tokens()
    weights = {n: l.base_layer.weight.clone() for n, l in adapter_layers(model).items()}
    with torch.no_grad():
        unmerged = model(ids).logits
        assert (unmerged - llama(ids).logits).abs().max() > 1e-3
        x = torch.randn(5, 32)
        q = adapter_layers(model)["model.layers.0.self_attn.q_proj"]  # delta_weight() is what the forward adds
        assert_close_within(q(x) - q.base_layer(x), x.double() @ q.delta_weight().double().T,
                            adapter_forward_bound(q, x), msg=case)
        merge(model)
        merged = model(ids).logits
        unmerge(model)
        again = model(ids).logits
    for name, layer in adapter_layers(model).items():
        assert_close_within(layer.base_layer.weight, weights[name], unmerge_bound(layer, weights[name]), msg=name)
    # a merged plain model, saved and loaded by transformers alone
    plain = merge_and_unload(copy.deepcopy(model))
    assert not adapter_layers(plain)
    atol = NOISE_MARGIN * fp32_noise_floor(plain, input_ids=ids)  # merged and unmerged GEMMs round differently
    torch.testing.assert_close(merged, unmerged, atol=atol, rtol=0)
    torch.testing.assert_close(again, unmerged, atol=atol, rtol=0)
    plain.save_pretrained(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(AutoModelForCausalLM.from_pretrained(tmp_path)(ids).logits, unmerged,
                                   atol=atol, rtol=0)
    # save / load of the trainable weights (and adapter state) into a freshly built model
    state = {k: v.clone() for k, v in trainable_state_dict(model).items()}
    assert set(state) == ({n for n, p in model.named_parameters() if p.requires_grad} | set(adapter_state_buffers(model)))
    torch.manual_seed(123)
    fresh = adapt(copy.deepcopy(llama), case).eval()
    load_trainable_state_dict(fresh, state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, unmerged, atol=1e-6, rtol=1e-6)


# --- HiLoRA -------------------------------------------------------------------------------------------------------

def test_hilora_reduces_to_hira_and_to_lora(llama):
    ids = tokens()
    for hilora_params, other, other_params, pairs in (
            (dict(r1=4, r2=0), "hira", dict(r=4), {"hira_A": "hira_A", "hira_B": "hira_B"}),
            (dict(r1=0, r2=4), "lora", dict(r=4, alpha=4, dropout=0.0), {"lora_A": "lora_A", "lora_B": "lora_B"})):
        ours = apply(copy.deepcopy(llama), "hilora", TARGETS, **hilora_params)
        ref = apply(copy.deepcopy(llama), other, TARGETS, **other_params)
        perturb(ref)
        with torch.no_grad():
            for name, layer in adapter_layers(ours).items():
                for mine, theirs in pairs.items():
                    getattr(layer, mine).copy_(getattr(adapter_layers(ref)[name], theirs))
        out_ours, out_ref = ours(ids, labels=ids), ref(ids, labels=ids)
        torch.testing.assert_close(out_ours.logits, out_ref.logits, atol=1e-5, rtol=1e-5)
        out_ours.loss.backward()
        out_ref.loss.backward()
        for name, layer in adapter_layers(ours).items():
            for mine, theirs in pairs.items():
                torch.testing.assert_close(getattr(layer, mine).grad, getattr(adapter_layers(ref)[name], theirs).grad,
                                           atol=1e-5, rtol=1e-4)


def test_hilora_formula(llama):
    layer = adapter_layers(apply(llama, "hilora", TARGETS, r1=3, r2=2))["model.layers.1.mlp.up_proj"]
    perturb(layer)
    w0 = layer.base_layer.weight
    expected = w0 * (layer.hira_B @ layer.hira_A) + layer.lora_B @ layer.lora_A
    torch.testing.assert_close(layer.delta_weight(), expected)


@pytest.mark.parametrize("method", ["hilora", "hira_rand"])
def test_fused_forward_equals_the_plain_formula(llama, method):
    """The fused Hadamard op (default) gives the outputs and gradients of W0 + ΔW computed densely."""
    fused = apply(llama, method, TARGETS, fused_chunk_elems=100, **PARAMS[method])
    perturb(fused)
    assert all(layer.fused for layer in adapter_layers(fused).values())  # the default
    plain = copy.deepcopy(fused)
    for layer in adapter_layers(plain).values():
        layer.fused = False
    ids = tokens()
    for model in (fused, plain):
        model(ids, labels=ids).loss.backward()
    torch.testing.assert_close(fused(ids).logits, plain(ids).logits, atol=1e-5, rtol=1e-5)
    for (name, p), (_, q) in zip(fused.named_parameters(), plain.named_parameters()):
        if p.requires_grad:
            torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)


# --- HiRA-rand ----------------------------------------------------------------------------------------------------

def test_hira_rand_formula_and_mask_regenerated_from_seed(llama):
    torch.manual_seed(0)
    model = apply(copy.deepcopy(llama), "hira_rand", TARGETS, r=4, rand_seed=5)
    torch.manual_seed(1)  # a different global seed must not change R
    again = apply(copy.deepcopy(llama), "hira_rand", TARGETS, r=4, rand_seed=5)
    other_seed = apply(copy.deepcopy(llama), "hira_rand", TARGETS, r=4, rand_seed=6)
    layers, layers_again = adapter_layers(model), adapter_layers(again)
    masks = [layer.hira_R for layer in layers.values()]
    assert all(0 <= m.min() and m.max() < 1 for m in masks) and abs(torch.cat([m.flatten() for m in masks]).mean() - 0.5) < 0.05
    assert not torch.equal(masks[0], layers["model.layers.1.self_attn.q_proj"].hira_R)  # one R per layer
    for name, layer in layers.items():
        torch.testing.assert_close(layer.hira_R, layers_again[name].hira_R, atol=0, rtol=0)
        assert not torch.equal(layer.hira_R, adapter_layers(other_seed)[name].hira_R)
    assert not any("hira_R" in key for key in trainable_state_dict(model)) and "hira_R" not in str(model.state_dict().keys())
    perturb(model)
    layer = layers["model.layers.0.mlp.down_proj"]
    torch.testing.assert_close(layer.delta_weight(), layer.hira_R * (layer.hira_B @ layer.hira_A))
    load_trainable_state_dict(again, trainable_state_dict(model))
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits, atol=0, rtol=0)


# --- MoRA ---------------------------------------------------------------------------------------------------------

def mora_matrix_by_hand(m: torch.Tensor, n_in: int, n_out: int, mora_type: int) -> torch.Tensor:
    """ΔW written element by element from MoRA's definition (input extended cyclically, cut into chunks of r̂)."""
    r = m.shape[0]
    n_chunks = math.ceil(n_in / r)
    w = torch.zeros(n_out, n_in, dtype=torch.float64)
    m = m.double()
    for o in range(n_out):
        if mora_type == 1:  # y_o = Σ_b M[o mod r, b] Σ_c x[(c·r + b) mod in]
            for b in range(r):
                for c in range(n_chunks):
                    w[o, (c * r + b) % n_in] += m[o % r, b]
        else:  # y_o = Σ_b M[a, b] rot_c(x_c)[b], p = o mod (n·r), chunk c = p // r, row a = p mod r
            p = o % (n_chunks * r)
            c, a = divmod(p, r)
            h = r // 2
            for b in range(r):
                theta = c * 10000 ** (-2 * (b % h) / r)
                w[o, (c * r + b) % n_in] += m[a, b] * math.cos(theta)
                partner, sign = (b + h, -1) if b < h else (b - h, 1)
                w[o, (c * r + partner) % n_in] += m[a, b] * sign * math.sin(theta)
    return w.float()


@pytest.mark.parametrize("mora_type", [1, 6])
@pytest.mark.parametrize("n_in,n_out,r", [(10, 14, 1), (14, 10, 1), (12, 12, 3)])
def test_mora_matches_its_written_definition(mora_type, n_in, n_out, r):
    torch.manual_seed(0)
    layer = MoRALinear(nn.Linear(n_in, n_out, bias=False), r=r, mora_type=mora_type)
    assert layer.r_hat == (int(math.sqrt((n_in + n_out) * r) + 0.5) // (2 if mora_type == 6 else 1)
                           * (2 if mora_type == 6 else 1))
    with torch.no_grad():
        layer.mora_M.normal_()
    expected = mora_matrix_by_hand(layer.mora_M.detach(), n_in, n_out, mora_type)
    torch.testing.assert_close(layer.delta_weight(), expected, atol=1e-5, rtol=1e-5)
    x = torch.randn(4, n_in)
    w0 = layer.base_layer.weight
    assert_close_within(layer(x), x.double() @ (w0 + expected).double().T,
                        2 * gemm_error_bound(x, w0, w0 + expected, expected, extra_k=n_in), msg="mora forward")


def test_mora_parameter_count_close_to_lora():
    for n_in, n_out in ((4096, 4096), (4096, 1024), (4096, 14336), (14336, 4096)):
        r_hat = MoRALinear(nn.Linear(n_in, n_out, bias=False, device="meta"), r=32).r_hat
        assert abs(r_hat**2 - 32 * (n_in + n_out)) / (32 * (n_in + n_out)) < 0.005


# --- RaSA ---------------------------------------------------------------------------------------------------------

def test_rasa_pool_formula_and_parameter_count(llama):
    r, n_layers = 8, 2
    k = max(r // 8, 1)
    model = apply(copy.deepcopy(llama), "rasa", TARGETS, r=r, alpha=16)
    lora = apply(copy.deepcopy(llama), "lora", TARGETS, r=r, alpha=16)
    n_rasa = sum(p.numel() for p in model.parameters() if p.requires_grad)
    n_lora = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    assert n_rasa == n_lora + len(TARGETS) * n_layers * (n_layers * k)  # LoRA's count + one diagonal per layer
    layers = adapter_layers(model)
    q0, q1 = layers["model.layers.0.self_attn.q_proj"], layers["model.layers.1.self_attn.q_proj"]
    assert q0.rasa_shared_A is q1.rasa_shared_A and q0.rasa_shared_B is q1.rasa_shared_B  # one pool per module type
    assert q0.rasa_shared_A is not layers["model.layers.0.self_attn.k_proj"].rasa_shared_A
    assert q0.lora_A.shape[0] == r - k and q0.rasa_shared_A.shape[0] == n_layers * k and q0.rasa_D.shape == (n_layers * k,)
    perturb(model)
    s = 16 / r
    expected = s * (q1.lora_B @ q1.lora_A + q1.rasa_shared_B @ torch.diag(q1.rasa_D) @ q1.rasa_shared_A)
    torch.testing.assert_close(q1.delta_weight(), expected)
    # gradients reach the pool from every layer of the type
    model(tokens(), labels=tokens()).loss.backward()
    assert q0.rasa_shared_B.grad is not None and q0.rasa_D.grad.abs().sum() > 0


# --- LoRA-Dash ----------------------------------------------------------------------------------------------------

def test_lora_dash_switches_at_step_t_to_the_fastest_changing_directions(llama):
    t, s = 3, 2
    model = apply(copy.deepcopy(llama), "lora_dash", TARGETS, r=4, alpha=8, t=t, s=s)
    layer = adapter_layers(model)["model.layers.0.mlp.up_proj"]
    gen = seeded(4)
    with torch.no_grad():
        layer.lora_B.normal_(generator=gen)
    on_step(model, t - 1)
    assert not layer.dash_active and layer.dash_U.abs().sum() == 0
    on_step(model, t)
    assert layer.dash_active
    # independently: numpy-free float64 SVD of W0, change rate |u_iᵀ ΔW v_i| / σ_i, top s
    w0 = layer.base_layer.weight.double()
    u, sigma, vh = torch.linalg.svd(w0, full_matrices=False)
    lora_delta = (layer.lora_B @ layer.lora_A).double() * 2.0
    rate = torch.stack([(u[:, i] @ lora_delta @ vh[i]).abs() / sigma[i] for i in range(len(sigma))])
    top = rate.argsort(descending=True)[:s]
    # singular vectors are defined up to sign: compare the rank-one projectors u_i v_iᵀ
    for j, i in enumerate(top.tolist()):
        torch.testing.assert_close(torch.outer(layer.dash_U[:, j], layer.dash_V[j]).double(),
                                   torch.outer(u[:, i], vh[i]), atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        layer.dash_delta.copy_(torch.tensor([0.5, -2.0]))
    expected = (layer.lora_B @ layer.lora_A) * 2.0 + sum(layer.dash_delta[j] * torch.outer(layer.dash_U[:, j], layer.dash_V[j])
                                                         for j in range(s))
    torch.testing.assert_close(layer.delta_weight(), expected, atol=1e-6, rtol=1e-5)
    # the switch is state saved with the weights: a reloaded model is past it, with the same directions
    fresh = apply(copy.deepcopy(llama), "lora_dash", TARGETS, r=4, alpha=8, t=t, s=s)
    load_trainable_state_dict(fresh, trainable_state_dict(model))
    reloaded = adapter_layers(fresh)["model.layers.0.mlp.up_proj"]
    assert reloaded.dash_active and torch.equal(reloaded.dash_U, layer.dash_U)
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(fresh(ids).logits, model(ids).logits, atol=0, rtol=0)
    before = reloaded.dash_U.clone()
    on_step(fresh, t + 1)  # later steps keep the chosen directions
    assert torch.equal(reloaded.dash_U, before)


def test_lora_dash_coefficients_get_no_gradient_before_the_switch(llama):
    model = apply(llama, "lora_dash", TARGETS, r=4, t=100, s=2)
    perturb_lora = adapter_layers(model)["model.layers.0.self_attn.q_proj"]
    with torch.no_grad():
        perturb_lora.lora_B.normal_()
    model(tokens(), labels=tokens()).loss.backward()
    assert all(layer.dash_delta.grad.abs().sum() == 0 for layer in adapter_layers(model).values())

"""LoRA, DoRA and VeRA against peft (the numerical oracle): same outputs, loss and gradients, with dropout active;
LoRA+'s optimizer steps against peft's LoRA+ optimizer; exported adapters load in peft with the same logits."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, VeraConfig, get_peft_model
from peft.optimizers import create_loraplus_optimizer

from hira.adapters import adapter_layers, apply, export_peft, param_groups
from hira.adapters.export import exportable_methods
from numerics import seeded

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]

# method -> (our params, peft config, {our parameter suffix: peft parameter suffix})
CASES = {
    "lora": (dict(r=4, alpha=8, dropout=0.1),
             LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=TARGETS),
             {"lora_A": "lora_A.default.weight", "lora_B": "lora_B.default.weight"}),
    "dora": (dict(r=4, alpha=8, dropout=0.1),
             LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, use_dora=True, target_modules=TARGETS),
             {"lora_A": "lora_A.default.weight", "lora_B": "lora_B.default.weight",
              "lora_magnitude": "lora_magnitude_vector.default.weight"}),
    "vera": (dict(r=16, dropout=0.1, projection_seed=3),
             VeraConfig(r=16, vera_dropout=0.1, projection_prng_key=3, target_modules=TARGETS),
             {"vera_lambda_d": "vera_lambda_d.default", "vera_lambda_b": "vera_lambda_b.default"}),
}


def tokens(n=3, length=10, vocab=64):
    return torch.randint(0, vocab, (n, length), generator=seeded(1))


def pair(llama, method):
    params, config, names = CASES[method]
    theirs = get_peft_model(copy.deepcopy(llama), config)
    ours = apply(llama, method, TARGETS, **params)
    peft_params = dict(theirs.named_parameters())
    mapping = {(layer, ours_name): peft_params[f"base_model.model.{name}.{peft_name}"]
               for name, layer in adapter_layers(ours).items() for ours_name, peft_name in names.items()}
    return ours, theirs, mapping


@pytest.mark.parametrize("method", sorted(CASES))
def test_initialisation_matches_peft(llama, method):
    ours, theirs, mapping = pair(llama, method)
    for (layer, name), theirs_param in mapping.items():
        if name not in ("lora_A", "lora_B"):  # A is random in both: only its distribution is shared
            torch.testing.assert_close(getattr(layer, name), theirs_param, atol=1e-6, rtol=1e-6)
    if method == "vera":  # the shared projections come from the same seed, drawn the same way
        for name, layer in adapter_layers(ours).items():
            a, b = layer.projections()
            peft_layer = theirs.get_submodule(f"base_model.model.{name}")
            torch.testing.assert_close(a, peft_layer.vera_A["default"][:, :layer.in_features], atol=0, rtol=0)
            torch.testing.assert_close(b, peft_layer.vera_B["default"][:layer.out_features], atol=0, rtol=0)


@pytest.mark.parametrize("method", sorted(CASES))
def test_outputs_and_gradients_match_peft(llama, method):
    ours, theirs, mapping = pair(llama, method)
    gen = seeded(2)
    with torch.no_grad():
        for (layer, name), theirs_param in mapping.items():
            value = getattr(layer, name) + torch.randn(theirs_param.shape, generator=gen) * 0.3
            getattr(layer, name).copy_(value)
            theirs_param.copy_(value)
    ids = tokens()
    for mode in ("eval", "train"):  # train: dropout on, the same masks drawn in the same order
        ours.train(mode == "train")
        theirs.train(mode == "train")
        torch.manual_seed(7)
        out_ours = ours(ids, labels=ids)
        torch.manual_seed(7)
        out_theirs = theirs(input_ids=ids, labels=ids)
        torch.testing.assert_close(out_ours.logits, out_theirs.logits, atol=1e-5, rtol=1e-5)
    out_ours.loss.backward()
    out_theirs.loss.backward()
    for (layer, name), theirs_param in mapping.items():
        grad = getattr(layer, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, theirs_param.grad, atol=1e-5, rtol=1e-4)
    # the dense ΔW each layer reports is what peft merges in
    ours.eval()
    theirs.eval()
    with torch.no_grad():
        merged = theirs.merge_and_unload()
        for name, layer in adapter_layers(ours).items():
            torch.testing.assert_close(layer.base_layer.weight + layer.delta_weight(),
                                       merged.get_submodule(name).weight, atol=1e-5, rtol=1e-5)


# Every method that declares a peft equivalent (hira/adapters/export.py) needs an entry here.
EXPORT_PARAMS = {"lora": dict(r=4, alpha=8, dropout=0.1), "dora": dict(r=4, alpha=8),
                 "vera": dict(r=16, projection_seed=3), "hira": dict(r=4), "lora_plus": dict(r=4, alpha=8)}


@pytest.mark.parametrize("method", exportable_methods())
def test_export_peft_loads_in_peft_with_equal_logits(llama, tmp_path, method):
    params = EXPORT_PARAMS[method]
    base = copy.deepcopy(llama)
    ours = apply(llama, method, TARGETS, **params).eval()
    gen = seeded(5)
    with torch.no_grad():
        for p in ours.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    export_peft(ours, tmp_path / method)
    theirs = PeftModel.from_pretrained(base, str(tmp_path / method)).eval()
    ids = tokens()
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids).logits, ours(ids).logits, atol=1e-5, rtol=1e-5)


def adamw_steps(model, optimizer, steps=4):
    for step in range(steps):
        loss = model(tokens(length=8 + step), labels=tokens(length=8 + step)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def test_lora_plus_steps_match_peft_loraplus_optimizer(llama):
    """Our LoRA+ (LoRA + param_groups from lr_scale) and peft's LoRA + create_loraplus_optimizer take the same AdamW
    steps from the same start. Both sides run the same float32 ops on the same inputs in one process (same kernels,
    same summation order), so they agree bit for bit on any CPU; plain LoRA (one rate) lands far from both."""
    lr, ratio, decay = 1e-3, 16.0, 0.01
    ours = apply(copy.deepcopy(llama), "lora_plus", TARGETS, r=4, alpha=8, lr_ratio=ratio)
    theirs = get_peft_model(copy.deepcopy(llama), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    plain = apply(copy.deepcopy(llama), "lora", TARGETS, r=4, alpha=8)
    with torch.no_grad():  # the same random A everywhere (B starts at zero in all three)
        for name, layer in adapter_layers(ours).items():
            theirs.get_submodule(f"base_model.model.{name}").lora_A["default"].weight.copy_(layer.lora_A)
            adapter_layers(plain)[name].lora_A.copy_(layer.lora_A)
    groups = param_groups(ours, lr)
    assert [g["lr"] for g in groups] == [lr, lr * ratio]
    assert {id(p) for p in groups[1]["params"]} == {id(l.lora_B) for l in adapter_layers(ours).values()}
    adamw_steps(ours, torch.optim.AdamW(groups, lr=lr, weight_decay=decay))
    adamw_steps(theirs, create_loraplus_optimizer(theirs, torch.optim.AdamW, lr=lr, loraplus_lr_ratio=ratio,
                                                  loraplus_weight_decay=decay))
    adamw_steps(plain, torch.optim.AdamW(param_groups(plain, lr), lr=lr, weight_decay=decay))
    for name, layer in adapter_layers(ours).items():
        peft_layer = theirs.get_submodule(f"base_model.model.{name}")
        torch.testing.assert_close(layer.lora_B, peft_layer.lora_B["default"].weight, atol=0, rtol=0)
        torch.testing.assert_close(layer.lora_A, peft_layer.lora_A["default"].weight, atol=0, rtol=0)
    moved = {n: (l.lora_B.abs().max().item(), adapter_layers(plain)[n].lora_B.abs().max().item())
             for n, l in adapter_layers(ours).items()}
    assert all(b_plus > 4 * b_lora for b_plus, b_lora in moved.values()), moved

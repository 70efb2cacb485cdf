"""Each method's declared parameters: apply() refuses an unknown key, a wrong type or a missing required key in
one line naming the method, the config key and what is valid, before touching the model; train.py does the same
for the command line's overrides (exit 2, one line, no traceback)."""

import re

import pytest
from conftest import ROOT, run_script
from omegaconf import OmegaConf

from hira.adapters import AdapterConfigError, adapter_layers, all_methods, apply
from hira.adapters.base import OP_OPTIONS, declared_params
from hira.adapters.params import method_params
from hira.config.check import check_train_config
from hira.config.command_line import check_command_line
from hira.errors import UserError

TARGETS = ["q_proj", "v_proj"]


def untouched(model) -> bool:
    return not adapter_layers(model) and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("params, message", [
    (dict(r=4, bogus=1), "method=hira: unknown key method.params.bogus=1; valid keys: method.params.r (int, required), "
                         "method.fused (bool), method.fused_chunk_elems (int or null)"),
    (dict(r="abc"), "method=hira: method.params.r='abc' is not of type int; valid keys: method.params.r (int, required)"),
    (dict(r=4.0), "method=hira: method.params.r=4.0 is not of type int;"),
    (dict(r=True), "method=hira: method.params.r=True is not of type int;"),
    (dict(r=4, fused="yes"), "method=hira: method.fused='yes' is not of type bool;"),
    (dict(), "method=hira: method.params.r is required; valid keys: method.params.r (int, required)"),
])
def test_apply_refuses_bad_params_in_one_line_before_touching_the_model(llama, params, message):
    with pytest.raises(AdapterConfigError) as error:
        apply(llama, "hira", TARGETS, **params)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert untouched(llama)


def test_types_follow_the_declaration(llama):
    with pytest.raises(AdapterConfigError, match=r"^method=lora: method.params.alpha='8' is not of type float or null;"):
        apply(llama, "lora", TARGETS, r=4, alpha="8")
    with pytest.raises(AdapterConfigError, match=r"^method=full: unknown key method.params.r=4; valid keys: none"):
        apply(llama, "full", [], r=4)
    with pytest.raises(AdapterConfigError, match=r"^method=p_tuning: method.params.encoder_hidden_size=1.5 is not of type"
                                                 r" int or null;"):
        apply(llama, "p_tuning", [], encoder_hidden_size=1.5)
    assert untouched(llama)
    # an int is a valid float: LoRA at alpha=8 and dropout=0
    assert adapter_layers(apply(llama, "lora", TARGETS, r=4, alpha=8, dropout=0))


def test_computed_constructor_arguments_are_not_config_keys():
    assert set(declared_params("rasa")) == {"r", "alpha", "dropout", "k"}
    assert set(declared_params("vera")) == {"r", "d_initial", "dropout", "projection_seed"}
    assert set(declared_params("hira_rand")) == {"r", "rand_seed", *OP_OPTIONS}


@pytest.mark.parametrize("method", all_methods())
def test_every_method_yaml_holds_declared_keys_of_the_declared_types(method):
    from hira.adapters.base import check_params

    cfg = OmegaConf.load(ROOT / "configs" / "method" / f"{method}.yaml")
    params = method_params(cfg) | {k: cfg[k] for k in OP_OPTIONS if k in cfg}
    assert cfg.name == method
    check_params(method, params)  # raises on an undeclared key, a wrong type or a missing required key


@pytest.mark.parametrize("args, message", [
    (["method.params.r=abc"], "method=hira: method.params.r='abc' is not of type int"),
    (["method=lora", "method.params.bogus=1"], "method=lora: unknown key method.params.bogus=1"),
    (["-m", "method=lora,hira", "method.params.alpha=8"], "method=hira: unknown key method.params.alpha=8"),
    (["-m", "method=hilora", "method.params.r1=1,x"], "method=hilora: method.params.r1='x' is not of type int"),
    (["method=hira", "method.fused=maybe"], "method=hira: method.fused='maybe' is not of type bool"),
    (["~method.params.r"], "method=hira: method.params.r is required"),
    (["-m", "+experiment=table6", "method.params.bogus=1"], "method=hilora: unknown key method.params.bogus=1"),
])
def test_command_line_overrides_are_checked_against_the_chosen_method(args, message):
    with pytest.raises(UserError, match="^" + re.escape(message)):
        check_command_line("train", args, check_train_config)


def test_command_line_overrides_that_fit_pass():
    check = check_train_config
    check_command_line("train", ["method=lora", "method.params.r=8", "method.params.alpha=16",
                                 "method.params.dropout=0"], check)
    check_command_line("train", ["-m", "method.params.r=4,8"], check)  # every value of a sweep is checked
    check_command_line("train", ["method=rasa", "method.params.k=2"], check)


@pytest.mark.parametrize("args, key", [(["method.params.r=abc"], "method.params.r"),
                                       (["method=lora", "method.params.bogus=1"], "method.params.bogus")])
@pytest.mark.slow
def test_train_py_prints_one_line_and_exits_2(args, key):
    proc = run_script("train.py", *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: method=") and proc.stderr.count("\n") == 1 and key in proc.stderr

"""Trainable-parameter percentages for the real Llama-3-8B and SmolLM2-135M shapes, counted on the meta device
(no weights)."""

import pytest
from conftest import ROOT
from transformers import LlamaConfig

from hira.adapters import all_methods
from hira.adapters.count import ARCHITECTURES, PAPER_PERCENT, count, count_from_config
from hira.commands.count_params import compose_config, main

TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]
LLAMA3 = LlamaConfig(**ARCHITECTURES["meta-llama/Meta-Llama-3-8B"])
BASE = 8_030_261_248  # Llama-3-8B's published parameter count
# per layer: q 4096→4096, k/v 4096→1024, up 4096→14336, down 14336→4096
SHAPES = [(4096, 4096), (4096, 1024), (4096, 1024), (4096, 14336), (14336, 4096)]


def test_lora_count_by_hand_and_paper_convention():
    result = count(LLAMA3, "lora", TARGETS, r=32, alpha=64)
    assert result.total - result.trainable == result.base == BASE
    assert result.trainable == 32 * 32 * sum(i + o for i, o in SHAPES)  # 32 layers × r·(in+out)
    assert round(result.percent, 4) == 0.7002


@pytest.mark.parametrize("method,params", [("lora", dict(r=32)), ("hira", dict(r=32)), ("hira", dict(r=16)),
                                           ("mora", dict(r=32)), ("dora", dict(r=32))])
def test_paper_params_column(method, params):
    """Within 0.01 of the paper. DoRA is 0.7098 %, not the paper's 0.7002 %: its per-row magnitude vectors
    (Σ out = 24,576 per layer, 786,432 in all) are trainable; the paper's column repeats LoRA's count for it."""
    result = count(LLAMA3, method, TARGETS, **params)
    assert abs(result.percent - PAPER_PERCENT[("llama3_8b", method, params["r"])]) < 0.01
    if method == "dora":
        lora = count(LLAMA3, "lora", TARGETS, **params)
        assert result.trainable - lora.trainable == 32 * sum(o for _, o in SHAPES)
    if method == "mora":  # type 6: r̂ = even(⌊√((in+out)·32)+½⌋), r̂² per layer
        assert result.trainable == 32 * (512**2 + 2 * 404**2 + 2 * 768**2)
        assert round(result.percent, 4) == 0.6997


def test_rasa_and_lora_dash_budgets():
    lora = count(LLAMA3, "lora", TARGETS, r=32).trainable
    k, layers = 32 // 8, 32
    assert count(LLAMA3, "rasa", TARGETS, r=32).trainable == lora + len(TARGETS) * layers * layers * k
    assert count(LLAMA3, "lora_dash", TARGETS, r=32, s=8).trainable == lora + len(TARGETS) * layers * 8
    assert count(LLAMA3, "hilora", TARGETS, r1=20, r2=12).trainable == lora


def test_from_the_hydra_configs_and_the_command_line(capsys):
    cfg = compose_config(["model=llama3_8b", "method=hira", "model.path=/nonexistent"])
    assert round(count_from_config(cfg).percent, 4) == 0.7002
    main(["model=llama3_8b", "method=mora"])  # what hira-count-params and scripts/count_params.py run
    out = capsys.readouterr().out
    assert "56,583,168" in out and "(0.6997 %)" in out and "paper 0.6997 %" in out


# --- SmolLM2-135M: grouped-query attention (k/v 192×576), MLP 1536, tied embeddings, 30 layers ----------------------

SMOLLM2 = LlamaConfig(**ARCHITECTURES["HuggingFaceTB/SmolLM2-135M-Instruct"])
SMOLLM2_BASE = 134_515_008  # the converted model's parameter count (tests/test_real_model.py), embedding once
SMOLLM2_SHAPES = [(576, 576), (576, 192), (576, 192), (576, 1536), (1536, 576)]  # (in, out): q, k, v, up, down


def test_smollm2_lora_and_hira_r32_by_hand():
    by_hand = 30 * sum(32 * (n_in + n_out) for n_in, n_out in SMOLLM2_SHAPES)  # Σ r·(in+out) × 30 layers
    assert by_hand == 6_635_520
    lora = count(SMOLLM2, "lora", TARGETS, r=32, alpha=64)
    assert lora.trainable == by_hand and lora.total - lora.trainable == SMOLLM2_BASE
    assert lora.percent == pytest.approx(100 * by_hand / (SMOLLM2_BASE + by_hand))  # the paper's convention: 4.7010 %
    assert 100 * lora.trainable / SMOLLM2_BASE == pytest.approx(4.9329, abs=1e-4)  # of the base alone
    hira = count(SMOLLM2, "hira", TARGETS, r=32)
    assert (hira.trainable, hira.total) == (lora.trainable, lora.total)


@pytest.mark.slow
def test_smollm2_config_folder_counts_as_the_published_architecture(smollm2_folder):
    """The converted folder's config.json and the built-in architecture give the same counts."""
    from transformers import AutoConfig

    from_folder = count(AutoConfig.from_pretrained(smollm2_folder), "mora", TARGETS, r=32)
    assert from_folder == count(SMOLLM2, "mora", TARGETS, r=32)


def test_table_of_every_method(capsys):
    main(["--all", "model=smollm2_135m", "model.path=/nonexistent"])  # the published architecture, no weights
    table = capsys.readouterr().out.strip().splitlines()
    rows = {line.split("|")[1].strip(): line for line in table[2:]}
    assert set(rows) == set(all_methods())
    assert "| 6,635,520 | 4.7010 | 4.9329 |" in rows["lora"] and "| 6,635,520 |" in rows["hira"]
    assert "| 134,515,008 | 100.0000 | 100.0000 |" in rows["full"]
    # docs/methods.md shows the table as the command prints it: a new method or a changed default fails here
    assert "\n".join(table) in (ROOT / "docs" / "methods.md").read_text()


def test_help_and_a_bad_override_are_one_answer_each(capsys):
    main(["--help"])
    assert "hira-count-params --all" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["method=lora", "model=nope"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "nope" in err

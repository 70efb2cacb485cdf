"""Paper regeneration: experiment configs, make_tables.py on real tiny runs, analyze_updates.py against SVD, wandb."""

import json
import math
import statistics
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, common_overrides, run_script
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from safetensors.torch import load_file
from helpers import HEADERS, SUBSETS, TABLE1, TABLE12, table_sections

from hira.adapters import all_methods
from hira.errors import UserError
from hira.paper.rank_analysis import spectrum_metrics
from hira.run_dir import setting_scores
from hira.training import runlog

SCORED = SUBSETS[:4]  # the runs are scored on these; the other columns must show "—"


@pytest.fixture(scope="module")
def outputs(workdir):
    """Two seeds of HiRA r16 on the tiny model, a few steps each, as one `+experiment=mini` sweep."""
    out = workdir / "paper_outputs"
    proc = run_script("train.py", "-m", "+experiment=mini", "method=hira", "seed=1,2", *common_overrides(workdir),
                  "method.params.r=16", "train.max_steps=20", "train.eval_steps=20", f"hydra.sweep.dir={out}",
                  f"task.test_subsets=[{','.join(SCORED)}]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Table 1: commonsense" in proc.stdout  # the sweep's end prints the tables
    runs = sorted(p.parent for p in out.glob("*/scores.json"))
    assert len(runs) == 2
    return out, runs


@pytest.mark.slow
def test_make_tables_on_a_real_sweep(outputs):
    """The tiny sweep's two seeds: one row, mean ± sample std over them; columns not scored "—"; the paper's
    HiRA r16 numbers once, as a reference (tiny model, synthetic task), no Δ, no rows of methods nobody ran."""
    out, runs = outputs
    proc = run_script("scripts/make_tables.py", out, "--out", out / "tables")
    assert proc.returncode == 0, proc.stderr
    markdown = (out / "tables" / "tables.md").read_text()
    assert markdown in proc.stdout and "Left out" not in markdown

    best = [setting_scores(json.loads((run / "scores.json").read_text()))["best"] for run in runs]
    paper = [73.85, 89.12, 81.06, 82.59, 93.06, 87.40, 94.85, 86.74, 86.08]
    rows = table_sections(markdown, TABLE1)["tiny, task synthetic"]
    assert [(row["method"], row["r"], row["setting"], row["n"]) for row in rows] == [
        ("hira", "r16", "", "2"), ("hira", "r16", "paper (Llama-3-8B)", "")]
    hira, reference = rows
    for subset, header in zip(SUBSETS, HEADERS):
        if subset in SCORED:
            values = [100 * b["subsets"][subset]["accuracy"] for b in best]
            assert hira[header] == f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"
        else:
            assert hira[header] == "—"
    averages = [100 * b["average"] for b in best]
    assert hira["Avg."] == f"{statistics.mean(averages):.2f} ± {statistics.stdev(averages):.2f}"
    assert [reference[h] for h in [*HEADERS, "Avg."]] == [f"{v:.2f}" for v in paper]

    cost = table_sections(markdown, TABLE12)["tiny, task synthetic"]
    ends = [[e for e in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if e["event"] == "end"][-1]
            for run in runs]
    memory = [e["peak_memory_gb"] for e in ends]
    assert [row["n"] for row in cost] == ["2"]  # the paper's Table 12 has no HiRA r16 row
    assert cost[0]["Peak memory (GB)"] == f"{statistics.mean(memory):.2f} ± {statistics.stdev(memory):.2f}"
    tex = (out / "tables" / "tables.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$\pm$" in tex and "& 73.85 &" in tex and "Delta" not in tex


def direct_spectrum(delta: np.ndarray) -> dict:
    """The paper's four statistics computed straight from numpy's SVD."""
    sv = np.linalg.svd(delta.astype(np.float64), compute_uv=False)
    p = sv[sv > 0] / sv.sum()
    return {"sv_count": int((sv > 0.005).sum()), "sv_sq_sum": float((sv ** 2).sum()),
            "rank": int(np.linalg.matrix_rank(delta.astype(np.float32))), "effective_rank": float(np.exp(-(p * np.log(p)).sum()))}


@pytest.mark.slow
def test_analyze_updates_matches_svd_of_hira_delta(outputs, workdir, tmp_path):
    _, runs = outputs
    ckpt = runs[0] / "checkpoints" / "step_20"  # the best and only checkpoint
    proc = run_script("scripts/analyze_updates.py", runs[0], runs[1] / "checkpoints" / "step_20", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("fig4_sv_count.png", "fig5_sv_sq_sum.png", "fig7_rank.png", "fig8_effective_rank.png"):
        assert (tmp_path / name).stat().st_size > 1000
    rows = json.loads((tmp_path / "update_spectra.json").read_text())
    assert {r["module"] for r in rows} == {"q_proj", "k_proj", "v_proj", "up_proj", "down_proj"}
    assert len(rows) == 2 * 2 * 5  # two runs × two layers × five modules

    # ΔW = W0 ⊙ (B·A) rebuilt from the saved tensors, independently of the adapter code
    base = load_file(str(workdir / "tiny" / "model.safetensors"))
    adapter = load_file(str(ckpt / "adapter.safetensors"))
    mine = [r for r in rows if r["run"] == rows[0]["run"]]
    for row in mine:
        part = "self_attn" if row["module"][0] in "qkv" else "mlp"
        prefix = f"model.layers.{row['layer']}.{part}.{row['module']}"
        delta = base[f"{prefix}.weight"] * (adapter[f"{prefix}.hira_B"] @ adapter[f"{prefix}.hira_A"])
        want = direct_spectrum(delta.numpy())
        assert (row["sv_count"], row["rank"]) == (want["sv_count"], want["rank"])
        assert row["sv_sq_sum"] == pytest.approx(want["sv_sq_sum"], rel=1e-5)
        assert row["effective_rank"] == pytest.approx(want["effective_rank"], rel=1e-5)
    assert any(r["rank"] > 16 for r in mine)  # HiRA's update is high-rank although r = 16


def test_spectrum_metrics_on_a_hand_made_matrix():
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 5, generator=gen, dtype=torch.float64))
    sigma = torch.tensor([3.0, 1.0, 0.004, 0.0, 0.0], dtype=torch.float64)
    delta = (u[:, :5] * sigma) @ v.T  # 6×5 with singular values 3, 1, 0.004, 0, 0
    got = spectrum_metrics(delta.float())
    p = np.array([3.0, 1.0, 0.004]) / 4.004
    assert got["sv_count"] == 2 and got["rank"] == 3
    assert got["sv_sq_sum"] == pytest.approx(10.000016, rel=1e-5)
    assert got["effective_rank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-4)
    assert spectrum_metrics(torch.zeros(4, 3)) == {"sv_count": 0, "sv_sq_sum": 0.0, "rank": 0, "effective_rank": 0.0}


# --- experiment configs --------------------------------------------------------------------------------------

SWEEPS = {
    "table1": {"model": "llama3_8b,llama2_7b", "seed": "1,2,3,4,5",
               "+arm": "prompt_tuning,p_tuning,lora_r32,dora_r32,mora_r32,hira_r16,hira_r32"},
    "table1_controlled": {"model": "llama3_8b,llama2_7b", "+arm": "lora_r32,dora_r32,hira_r32",
                          "task.loss_on": "response,full", "seed": "1,2,3,4,5"},
    "table2": {"+arm": "lora_r32,dora_r32,hira_r32", "seed": "1,2,3,4,5"},
    "table3": {"+arm": "prompt_tuning,p_tuning,lora_r32,dora_r32,mora_r32,hira_r16,hira_r32", "seed": "1,2,3,4,5"},
    "table4": {"method": "hira,hira_rand", "method.params.r": "32", "seed": "1"},
    "table5": {"method": "hira", "method.params.r": "32", "seed": "1"},
    "table6": {"method": "hilora", "seed": "1"},
    "table12": {"+arm": "lora_r32,hira_r32", "seed": "1"},
    "fig6": {"method": "hira", "method.params.r": "2,4,8,16,24,28,30,32", "seed": "1"},
    "mini": {"seed": "1,2,3"},
    "real_mini": {"method": "lora,dora,hira", "seed": "1"},
    "lr_sweep": {"sweep.lr_factor": "0.25,0.5,1,2,4"},  # the tuning grid (docs/tables.md), on whatever is given
}
TASKS = {"table2": "convai2", "table3": "metamath", "mini": "synthetic", "real_mini": "synthetic",
         "lr_sweep": "synthetic"}
MODELS = {"mini": "tiny", "real_mini": "smollm2_135m", "lr_sweep": "tiny"}


def sweep_jobs(params: dict) -> list[list[str]]:
    """The jobs of a sweep, as Hydra's basic sweeper splits it (inside initialize_config_dir: glob(*) lists a
    config group's options)."""
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
    return BasicSweeper.split_arguments(overrides, None)[0]


def test_every_paper_result_has_an_experiment_config():
    assert sorted(p.stem for p in (ROOT / "configs" / "experiment").glob("*.yaml")) == sorted([*SWEEPS, "common"])


MANY_JOBS = ("table1", "table1_controlled", "table3", "mini")  # 35 to 70 composed jobs each: seconds apiece


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow) if name in MANY_JOBS else name
                                  for name in sorted(SWEEPS)])
def test_experiment_config_composes_with_its_sweep(name):
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={name}"], return_hydra_config=True)
        params = {k: str(v) for k, v in cfg.hydra.sweeper.params.items()}
        assert cfg.experiment == name
        assert {k: params[k] for k in SWEEPS[name]} == SWEEPS[name]
        assert cfg.hydra.callbacks.tables._target_ == "hira.paper.callbacks.PrintTables"
        assert cfg.model.name == MODELS.get(name, "llama3_8b")
        jobs = sweep_jobs(params)
        composed = [compose("train", overrides=[f"+experiment={name}", *job]) for job in jobs]
    n_jobs = {"table1": 70, "table1_controlled": 60, "table2": 15, "table3": 35, "table4": 2, "table5": 8,
              "table6": 7, "table12": 2, "fig6": 8, "mini": 3 * len(all_methods()), "real_mini": 3, "lr_sweep": 5}[name]
    assert len(jobs) == n_jobs
    for job_cfg in composed:
        assert job_cfg.experiment == name and job_cfg.task.name == TASKS.get(name, "commonsense")
    if name == "table5":
        assert [OmegaConf.to_container(c.method.target_modules) for c in composed][:3] == [
            ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"], ["up_proj", "down_proj"], ["q_proj", "v_proj"]]
    if name == "fig6":
        assert [c.method.params.r for c in composed] == [2, 4, 8, 16, 24, 28, 30, 32]
    if name == "table6":
        pairs = list(OverridesParser.create().parse_override(f"method.params={params['method.params']}")
                     .sweep_iterator())
        assert (20, 12) in [(p["r1"], p["r2"]) for p in pairs] and all(p["r1"] + p["r2"] == 32 for p in pairs)
    if name == "table12":
        assert cfg.train.global_batch_size == 72 and not cfg.evaluate_after_training
    if name == "table1":
        hira = [c for c in composed if c.method.name == "hira"]
        assert sorted({c.method.params.r for c in hira}) == [16, 32]
    if name == "table1_controlled":  # each method at r32 under both maskings, all else equal
        settings = {(c.model.name, c.method.name, c.seed, c.task.loss_on): c for c in composed}
        assert len(settings) == 60 and {c.method.params.r for c in composed} == {32}
        for (model, method, seed, loss_on), c in settings.items():
            other = settings[(model, method, seed, "full" if loss_on == "response" else "response")]
            assert OmegaConf.to_container(c.train) == OmegaConf.to_container(other.train)


# --- wandb missing (tests/test_wandb.py runs the real package) ---------------------------------------------

def wandb_cfg(**overrides):
    cfg = OmegaConf.create({"logger": "wandb", "seed": 3, "method": {"name": "hira"},
                            "wandb": {"project": "hira", "entity": None, "mode": "offline", "dir": None}})
    cfg.merge_with(overrides)
    return cfg


def test_wandb_missing_is_one_clear_error_and_default_needs_none(tmp_path, monkeypatch):
    from hira.config.check import check_logger

    monkeypatch.setitem(sys.modules, "wandb", None)  # wandb not installed
    with pytest.raises(UserError, match="^logger=wandb needs the wandb package: pip install wandb"):
        check_logger("wandb")  # the check phase: before the run writes anything (an unknown logger: the schema)
    check_logger("none")
    metrics = runlog.open_metrics(wandb_cfg(logger="none"), tmp_path)
    metrics.write("start", step=0)
    assert metrics.sink is None and (tmp_path / "metrics.jsonl").is_file()

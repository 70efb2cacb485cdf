"""hira/paper/paired.py on simulated outcomes whose truth is known (fast), and hira-compare on real tiny runs (slow)."""

import json
import os
import shutil

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import binomtest

from hira.data import formats
from hira.paper import paired
from hira.run_dir import RunDir, setting_scores

SUBSETS = 8


def simulated_subset(rng, questions: int, seeds_a: int, seeds_b: int, lift: float = 0.0, seed_sd: float = 0.3):
    """(A, B) 0/1 outcomes: question difficulty shared by both groups, a random effect per seed, answer noise;
    `lift` adds that much to B's log-odds."""
    difficulty = rng.normal(0.5, 1.5, questions)

    def group(seeds, shift):
        seed_effect = rng.normal(0, seed_sd, (seeds, 1))
        return (rng.random((seeds, questions)) < expit(difficulty + seed_effect + shift)).astype(int)

    return group(seeds_a, 0.0), group(seeds_b, lift)


def test_identical_groups_interval_contains_zero_and_p_is_high():
    rng = np.random.default_rng(1)
    subsets = {f"s{i}": (a, a.copy()) for i in range(SUBSETS) for a in [simulated_subset(rng, 200, 3, 3)[0]]}
    results = paired.compare_groups(subsets, resamples=2000)
    for name, result in results.items():
        assert result.diff == 0, name
        assert result.ci_low <= 0 <= result.ci_high, name
        assert result.p > 0.5 and not result.significant, name


def test_identical_single_seeds_use_mcnemar_and_find_nothing():
    a = np.random.default_rng(2).integers(0, 2, 300)
    result = paired.compare_groups({"boolq": (a, a.copy())}, resamples=500)["boolq"]
    assert result.p == 1.0 and result.ci_low <= 0 <= result.ci_high


def ten_points_better(rng, questions: int, seeds: int):
    """A answers 60 % of the questions, B the same ones plus 10 % of all questions more (paired)."""
    a = np.zeros((seeds, questions), dtype=int)
    a[:, : int(0.6 * questions)] = 1
    a = a ^ (rng.random(a.shape) < 0.05)  # each seed gets a few of its own answers wrong or right
    b = a.copy()
    b[:, int(0.6 * questions): int(0.7 * questions)] = 1
    return a, b


@pytest.mark.parametrize("seeds", [1, 3])
def test_ten_points_better_on_2000_questions(seeds):
    a, b = ten_points_better(np.random.default_rng(3), 2000, seeds)
    results = paired.compare_groups({"boolq": (a, b)}, resamples=2000)
    boolq = results["boolq"]
    assert boolq.p < 0.001 and boolq.significant
    assert boolq.ci_low > 0 and boolq.ci_low < boolq.diff < boolq.ci_high
    assert boolq.diff == pytest.approx(100 * (b.mean() - a.mean()))
    assert 8 < boolq.diff < 12


def test_repeatable_with_a_seed_and_different_with_another():
    rng = np.random.default_rng(4)
    subsets = {f"s{i}": simulated_subset(rng, 100, 3, 3, lift=0.2) for i in range(3)}
    first = paired.compare_groups(subsets, resamples=500, seed=7)
    assert first == paired.compare_groups(subsets, resamples=500, seed=7)
    assert first["average"].ci_low != paired.compare_groups(subsets, resamples=500, seed=8)["average"].ci_low


def test_calibration_false_positive_rate_at_alpha_005():
    """Both groups drawn from one distribution, 3 seeds each over 8 subsets, 240 comparisons: the subsets' raw p,
    the average's p and the average's interval each reject about 5 % of the time."""
    rng = np.random.default_rng(5)
    comparisons = 240
    subset_hits = average_hits = interval_hits = 0
    for i in range(comparisons):
        subsets = {f"s{k}": simulated_subset(rng, 100, 3, 3) for k in range(SUBSETS)}
        results = paired.compare_groups(subsets, resamples=200, seed=i)
        subset_hits += sum(r.p <= 0.05 for name, r in results.items() if name != paired.AVERAGE)
        average = results[paired.AVERAGE]
        average_hits += average.p <= 0.05
        interval_hits += not average.ci_low <= 0 <= average.ci_high
    assert 0.02 <= subset_hits / (comparisons * SUBSETS) <= 0.08
    assert 0.02 <= average_hits / comparisons <= 0.08
    assert 0.02 <= interval_hits / comparisons <= 0.08


def test_holm_on_a_hand_computed_case():
    # sorted: 0.01 x4 = 0.04; 0.02 x3 = 0.06; 0.03 x2 = 0.06 (held up by the one before); 0.04 x1 = 0.04 -> 0.06
    assert paired.holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert paired.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_holm_decides_significance_across_subsets():
    """Four subsets: only the clearly different one survives; each p_holm is Holm's of the raw p values."""
    rng = np.random.default_rng(6)
    subsets = {f"s{i}": simulated_subset(rng, 400, 3, 3, lift=1.5 if i == 0 else 0.0, seed_sd=0.1)
               for i in range(4)}
    results = paired.compare_groups(subsets, resamples=500)
    names = list(subsets)
    assert [results[n].p_holm for n in names] == pytest.approx(paired.holm([results[n].p for n in names]))
    assert results["s0"].significant
    assert [results[n].significant for n in names] == [results[n].p_holm <= 0.05 for n in names]
    assert results[paired.AVERAGE].p_holm == results[paired.AVERAGE].p  # the average is outside the family


@pytest.mark.parametrize("b_only,a_only", [(12, 3), (0, 5), (7, 7), (1, 0)])
def test_mcnemar_matches_binomtest(b_only, a_only):
    agree = 40
    a = np.array([0] * b_only + [1] * a_only + [1] * agree + [0] * agree)
    b = np.array([1] * b_only + [0] * a_only + [1] * agree + [0] * agree)
    result = paired.compare_groups({"piqa": (a, b)}, resamples=200)["piqa"]
    assert result.p == pytest.approx(binomtest(b_only, b_only + a_only, 0.5).pvalue)
    assert (result.seeds_a, result.seeds_b, result.n_questions) == (1, 1, len(a))


def test_bad_outcomes_are_refused():
    with pytest.raises(ValueError, match="same questions"):
        paired.compare_groups({"s": (np.ones((2, 5)), np.ones((2, 6)))})
    with pytest.raises(ValueError, match="0 or 1"):
        paired.compare_groups({"s": (np.full((2, 5), 0.5), np.ones((2, 5)))})


# --- the run side on hand-written run folders (fast, in-process) ----------------------------------------------

TINY_SUBSETS = ["boolq", "piqa"]


def write_predictions(folder, correct: dict, prompts_from: str = "q"):
    """predictions/step_10/<subset>.jsonl rows as the evaluator writes them, `correct` per question."""
    out = folder / "predictions" / "step_10"
    out.mkdir(parents=True)
    for subset, outcomes in correct.items():
        rows = [{"prompt": f"{prompts_from} {subset} {i}", "generation": "", "prediction": "true", "gold": "true",
                 "correct": bool(c)} for i, c in enumerate(outcomes)]
        (out / f"{subset}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def hand_run(root, name, overrides, seed, accuracy, questions=40, rng=None, prompts_from="q"):
    """A finished run folder (helpers.write_run) with prediction rows of about `accuracy`."""
    from helpers import write_run

    folder = write_run(root / name, overrides, seed=seed, accuracy=accuracy, n=questions, subsets=TINY_SUBSETS)
    rng = rng or np.random.default_rng(seed)
    write_predictions(folder, {s: rng.random(questions) < accuracy for s in TINY_SUBSETS}, prompts_from)
    return folder


@pytest.fixture(scope="module")
def hand_runs(tmp_path_factory):
    """hira at two learning rates (2 seeds each), lora at the first, and a hira run on other questions."""
    root = tmp_path_factory.mktemp("hand_runs")
    for seed in (1, 2):
        hand_run(root, f"hira_{seed}", ["method=hira", "train.lr=1e-3"], seed, 0.8)
        hand_run(root, f"hira_slow_{seed}", ["method=hira", "train.lr=1e-9"], seed, 0.3)
        hand_run(root, f"lora_{seed}", ["method=lora", "train.lr=1e-3"], seed, 0.5)
    hand_run(root / "other", "hira_other", ["method=hira", "train.lr=5e-1"], 1, 0.5, prompts_from="other")
    return root


def snapshot(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*")}


def test_compare_two_learning_rates_in_process(hand_runs, tmp_path, capsys):
    from hira.commands.compare import main

    before = snapshot(hand_runs)
    out = tmp_path / "cmp.json"
    main([str(hand_runs), "--a", "train.lr=1e-3", "method.name=hira", "--b", "train.lr=1e-9", "method.name=hira",
          "--json", str(out), "--resamples", "500"])
    printed = capsys.readouterr().out
    figures = json.loads(out.read_text())
    assert set(figures) == {*TINY_SUBSETS, "average"}
    for name, fig in figures.items():
        assert set(fig) == {"diff", "ci_low", "ci_high", "p", "p_holm", "significant", "n_questions", "seeds_a",
                            "seeds_b"}
        assert (fig["seeds_a"], fig["seeds_b"]) == (2, 2)
        assert fig["ci_low"] <= fig["diff"] <= fig["ci_high"]
    assert figures["boolq"]["n_questions"] == 40 and figures["average"]["n_questions"] == 80
    assert figures["average"]["diff"] < -25 and figures["average"]["ci_high"] < 0 and figures["average"]["p"] < 0.01
    assert "settings that differ: train.lr\n" in printed
    assert "| average |" in printed and "A: train.lr=0.001 method.name=hira (2 seeds: 1, 2)" in printed
    assert snapshot(hand_runs) == before  # no run folder written


def test_naming_a_method_covers_its_own_settings(hand_runs, tmp_path, capsys):
    from hira.commands.compare import main

    main([str(hand_runs), "--a", "method.name=lora", "--b", "method.name=hira", "train.lr=1e-3", "--resamples", "200"])
    assert "settings that differ: method.name, method.params.alpha, method.params.dropout\n" in capsys.readouterr().out


def test_outcomes_follow_the_best_entry(hand_runs):
    from hira.paper.compare import question_outcomes
    from hira.paper.runs import load_run

    run = load_run(hand_runs / "hira_1")
    outcomes, questions = question_outcomes(run, "piqa")
    rows = [json.loads(line) for line in (hand_runs / "hira_1/predictions/step_10/piqa.jsonl").read_text().splitlines()]
    assert outcomes.tolist() == [int(r["correct"]) for r in rows]
    assert questions == question_outcomes(load_run(hand_runs / "lora_1"), "piqa")[1]  # the same questions
    assert questions != question_outcomes(load_run(hand_runs / "other/hira_other"), "piqa")[1]


def refusal(root, *args, capsys) -> str:
    from hira.commands.compare import main

    with pytest.raises(SystemExit) as exit_:
        main([str(root), *args, "--resamples", "200"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize("args,says", [
    (["--a", "method.name=dora", "--b", "method.name=hira"], "group A (method.name=dora): no finished run matches"),
    (["--a", "method.nme=hira", "--b", "method.name=lora"], "no run has the setting method.nme"),
    (["--a", "method.name=lora", "--b", "method.name=hira"], "group B (method.name=hira) holds runs of different "
                                                             "settings, differing in train.lr"),
    (["--a", "train.lr=1e-3", "--b", "train.lr=0.001"], "--a and --b select the same runs"),
    (["--a", "train.lr", "--b", "train.lr=0.001"], "--a 'train.lr': expected KEY=VALUE"),
])
def test_refusals(hand_runs, args, says, capsys):
    assert says in refusal(hand_runs, *args, capsys=capsys)


def test_refuses_groups_differing_in_an_unnamed_key(hand_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("lora_1", "lora_2", "hira_slow_1", "hira_slow_2"):
        shutil.copytree(hand_runs / name, root / name)
    err = refusal(root, "--a", "train.lr=1e-3", "--b", "train.lr=1e-9", capsys=capsys)
    assert "differ in settings not named in --a/--b: method.name, method.params.alpha, method.params.dropout;" in err


def test_refuses_different_questions(hand_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    shutil.copytree(hand_runs / "hira_1", root / "a")
    shutil.copytree(hand_runs / "other" / "hira_other", root / "b")
    err = refusal(root, "--a", "train.lr=1e-3", "--b", "train.lr=0.5", capsys=capsys)
    assert "scored on different questions in boolq" in err


def test_refuses_a_run_without_predictions(hand_runs, tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("hira_1", "hira_slow_1"):
        shutil.copytree(hand_runs / name, root / name)
    shutil.rmtree(root / "hira_slow_1" / "predictions")
    err = refusal(root, "--a", "train.lr=1e-3", "--b", "train.lr=1e-9", capsys=capsys)
    assert f"{root / 'hira_slow_1'} has no predictions for boolq" in err


def test_refuses_json_inside_a_run_folder(hand_runs, capsys):
    target = hand_runs / "hira_1" / "cmp.json"
    err = refusal(hand_runs, "--a", "train.lr=1e-3", "method.name=hira", "--b", "train.lr=1e-9", "method.name=hira",
                  "--json", str(target), capsys=capsys)
    assert "inside the run folder" in err and not target.exists()


def outcomes(folder, subset):
    rows = (folder / "predictions" / "step_10" / f"{subset}.jsonl").read_text().splitlines()
    return np.array([json.loads(line)["correct"] for line in rows], dtype=int)


def test_make_tables_compare_block(hand_runs, tmp_path):
    from hira.paper.tables import make_tables

    before = snapshot(hand_runs)
    report = make_tables(hand_runs, tmp_path, compare={"method.name": "lora"})
    text = (tmp_path / "tables.md").read_text()
    assert "Paired comparison with the reference" in text
    block = text.split("Paired comparison with the reference")[1].split("\n\n", 2)[1]
    rows = {line.split(" | ")[0]: line for line in block.splitlines() if line.startswith("| hira")}
    assert set(rows) == {"| hira r32 lr 0.001", "| hira r32 lr 1e-09", "| hira r32 lr 0.5"}  # against lora
    assert "not comparable" in rows["| hira r32 lr 0.5"] and "different questions" in rows["| hira r32 lr 0.5"]
    cmp = paired.compare_groups({s: tuple(np.stack([outcomes(hand_runs / f"{g}_{seed}", s) for seed in (1, 2)])
                                          for g in ("lora", "hira")) for s in TINY_SUBSETS})
    avg = cmp[paired.AVERAGE]  # the block's figures are hira-compare's
    assert rows["| hira r32 lr 0.001"].startswith(f"| hira r32 lr 0.001 | {avg.diff:+.2f} | [{avg.ci_low:+.2f}, ")
    assert report.tables in text
    assert snapshot(hand_runs) == before


# --- hira-compare and hira-make-tables --compare on real tiny runs (slow: train.py subprocesses) ---------------

TINY_GROUPS = {"default": 1e-2, "slow": 1e-9}  # HiRA's default lr on the tiny model, and one that learns nothing


@pytest.fixture(scope="module")
def tiny_runs(workdir):
    """HiRA at its default lr and at 1e-9, seeds 1 and 2: one train.py sweep of four one-step runs, 4 questions a
    subset; each run folder then moved to <group>_<seed> (a run folder holds its own truth wherever it is)."""
    from conftest import common_overrides, run_script
    from omegaconf import OmegaConf

    sweep, root = workdir / "compare_sweep", workdir / "compare_runs"
    proc = run_script("train.py", "-m", *common_overrides(workdir), "train.max_steps=1", "eval_limit=4", "seed=1,2",
                      f"train.lr={','.join(str(lr) for lr in TINY_GROUPS.values())}", f"hydra.sweep.dir={sweep}",
                      timeout=1200)  # it may also build the session's tiny model
    assert proc.returncode == 0, proc.stderr[-3000:]
    group = {lr: name for name, lr in TINY_GROUPS.items()}
    root.mkdir()
    for config in sweep.glob("*/config.yaml"):
        cfg = OmegaConf.load(config)
        shutil.move(config.parent, root / f"{group[cfg.train.lr]}_{cfg.seed}")
    assert sorted(p.name for p in root.iterdir()) == ["default_1", "default_2", "slow_1", "slow_2"]
    return root


@pytest.fixture
def checkout_first(monkeypatch):
    """scripts/*.py import the installed hira; the subprocess imports this checkout's, the code under test."""
    from conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def best_entry(run_dir) -> dict:
    """The best entry of the run's one scoring setting (scores.json format 2)."""
    return setting_scores(RunDir(run_dir).read_scores())["best"]


def set_warmup(run_dir, steps: int) -> None:
    """Make a run say it trained with another warmup: in config.yaml and in its result record (the tables and
    hira-compare read the record's settings when it has one)."""
    config = run_dir / "config.yaml"
    config.write_text(config.read_text().replace("  warmup_steps: 5\n", f"  warmup_steps: {steps}\n"))
    record = json.loads((run_dir / "result.json").read_text())
    record["config"]["train"]["warmup_steps"] = steps
    for block in record["scorings"].values():
        block["fingerprint"]["train.warmup_steps"] = steps
    (run_dir / "result.json").write_text(json.dumps(record))


def compare_script(root, *args):
    from conftest import run_script

    return run_script("scripts/compare.py", root, *args, "--resamples", "300")


@pytest.mark.slow
def test_compare_script_on_real_runs(tiny_runs, tmp_path, checkout_first):
    before = snapshot(tiny_runs)
    out = tmp_path / "cmp.json"
    proc = compare_script(tiny_runs, "--a", "method.name=hira", "train.lr=1e-2", "--b", "train.lr=1e-9",
                          "--json", out)
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(out.read_text())
    subsets = best_entry(tiny_runs / "default_1")["subsets"]
    assert set(figures) == {*subsets, "average"}
    assert all(figures[s]["n_questions"] == 4 and (figures[s]["seeds_a"], figures[s]["seeds_b"]) == (2, 2)
               for s in subsets)
    expected = {}
    for subset in subsets:  # the differences are the runs' own accuracies, from their scores.json
        accuracy = {g: np.mean([best_entry(tiny_runs / f"{g}_{seed}")["subsets"][subset]["accuracy"]
                                for seed in (1, 2)]) for g in TINY_GROUPS}
        expected[subset] = 100 * (accuracy["slow"] - accuracy["default"])
        assert figures[subset]["diff"] == pytest.approx(expected[subset])
    assert figures["average"]["diff"] == pytest.approx(np.mean(list(expected.values())))
    assert "| average |" in proc.stdout and "settings that differ: train.lr" in proc.stdout
    assert snapshot(tiny_runs) == before


@pytest.mark.slow
def test_compare_refusals_on_real_runs(tiny_runs, tmp_path, capsys):
    """Each refusal on real run folders (in-process: the script itself ran above), one line and exit 2."""
    def refused(root, *args) -> str:
        return refusal(root, *args, capsys=capsys)

    assert "no finished run matches" in refused(tiny_runs, "--a", "method.name=lora", "--b", "train.lr=1e-9")
    assert "--a and --b select the same runs" in refused(tiny_runs, "--a", "train.lr=1e-9", "--b", "train.lr=1e-09")
    root = tmp_path / "runs"
    for name in ("default_1", "default_2", "slow_1"):
        shutil.copytree(tiny_runs / name, root / name)
    set_warmup(root / "slow_1", 6)
    assert "not named in --a/--b: train.warmup_steps;" in refused(root, "--a", "train.lr=1e-2", "--b", "train.lr=1e-9")
    shutil.rmtree(root / "slow_1")
    shutil.copytree(tiny_runs / "slow_1", root / "slow_1")
    piqa = next((root / "slow_1" / "predictions").glob("*/*/piqa.jsonl"))  # predictions/<setting>/<checkpoint>/
    piqa.write_text(piqa.read_text().replace("Below is an instruction", "Above is an instruction", 1))
    assert "different questions in piqa" in refused(root, "--a", "train.lr=1e-2", "--b", "train.lr=1e-9")
    shutil.rmtree(root / "slow_1" / "predictions")
    assert "has no predictions for" in refused(root, "--a", "train.lr=1e-2", "--b", "train.lr=1e-9")


@pytest.mark.slow
def test_make_tables_compare_script_on_real_runs(tiny_runs, tmp_path, checkout_first):
    from conftest import run_script

    before = snapshot(tiny_runs)
    proc = run_script("scripts/make_tables.py", tiny_runs, "--out", tmp_path, "--compare", "train.lr=1e-9")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "tables.md").read_text()
    assert "Paired comparison with the reference hira r4 lr 1e-09 (train.lr=1e-09)" in text
    assert "| hira r4 lr 0.01 |" in text
    assert snapshot(tiny_runs) == before


def test_compare_blocks_go_under_accuracy_tables_only(monkeypatch):
    """A table whose format's scorer extracts no answer (ConvAI2's dialogue metrics) has no per-question outcomes
    to pair: --compare adds its block under the accuracy tables only."""
    from hira.paper import tables
    from hira.paper.render import OURS, Row, Section, Table

    monkeypatch.setattr(tables, "block_against_reference", lambda groups, reference: ["compared"])
    monkeypatch.setattr(tables, "group_label", lambda table, row: row.method)
    made = [Table(fmt.table, fmt.title, list(fmt.columns), [Section("h", "", [Row(OURS, "hira", "r32")])], [])
            for fmt in formats.FORMATS.values()]
    tables.add_comparisons(made, {"method.name": "lora"})
    compared = {table.name: table.sections[0].comparison for table in made}
    assert compared == {"table1": ["compared"], "table3": ["compared"], "table2": []}

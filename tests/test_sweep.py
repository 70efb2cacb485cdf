"""Sweeps (hira/paper/sweep.py, lr_sweep.py; docs/cluster.md, docs/tables.md): a failed cell is recorded and the
sweep goes on, a finished cell is skipped on a rerun, the lr sweep picks each method's rate by validation loss, and
submitit's local executor runs cells in parallel and one cell as two DeepSpeed ranks."""

import json
import os

import pytest
from conftest import common_overrides, run_script

from hira.errors import UserError
from hira.run_dir import RunDir, read_metrics, setting_scores

# a learning rate that breaks the weights at step 2 (the guard stops the run: NonFiniteError, a UserError)
DIVERGES = "1e30"
# 4 steps at lr 1e-3 (test_zero3's rate: two ranks stay within 1e-4 of one process), scored on 1 question
SHORT = ["train.max_steps=4", "train.eval_steps=2", "train.log_steps=1", "train.warmup_steps=0",
         "train.global_batch_size=16", "eval_limit=1", "task.test_subsets=[boolq]"]


def check(args):
    from train import check_arguments

    check_arguments(args)


# --- the checks before any cell runs (in-process) ----------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["-m", "sweep.rerun=bogus"], "sweep.rerun=bogus: valid: missing | all"),
    (["-m", "+experiment=lr_sweep", "sweep.lr_factor=0.5,-1"], "sweep.lr_factor=-1: valid: a number > 0"),
    (["-m", "+experiment=lr_sweep", "sweep.lr_factor=0"], "sweep.lr_factor=0: valid: a number > 0"),
    (["-m", "hydra/launcher=submitit_nope"], "Could not find 'hydra/launcher/submitit_nope'"),
    (["-m", "hydra/launcher=submitit_local_pool", "hydra.launcher.nodes=2"], "hydra.launcher.nodes=2: the local"),
    (["-m", "cluster=nope"], "unknown cluster 'nope'; valid: slurm_a100"),
])
def test_bad_sweep_input_is_one_line(args, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace("|", r"\|")) as error:
        check(args)
    assert "\n" not in str(error.value)


def test_chosen_rate_needs_the_first_stage(tmp_path):
    with pytest.raises(UserError, match=f"no finished tuning run of method=hira with these settings under {tmp_path}"):
        check(["-m", "+experiment=lr_sweep", "sweep.lr_factor=chosen", f"hydra.sweep.dir={tmp_path}"])


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sinfo listing partitions gpu and cpu, and an sbatch, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sinfo").write_text("#!/bin/sh\nprintf 'gpu\\ncpu\\n'\n")
    (bin_dir / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    for tool in ("sinfo", "sbatch"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_slurm_partition_must_exist(fake_slurm):
    with pytest.raises(UserError, match="hydra.launcher.partition=nope: no such SLURM partition; valid: gpu, cpu"):
        check(["-m", "hydra/launcher=submitit_slurm", "hydra.launcher.partition=nope"])
    check(["-m", "cluster=slurm_a100"])  # its partition gpu exists


def test_slurm_launcher_needs_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="submitit_slurm needs SLURM's sinfo and sbatch"):
        check(["-m", "cluster=slurm_a100"])


# --- the cell's folder and status (in-process) -------------------------------------------------------------------

def subdir(overrides):
    from hira.config.command_line import compose_with_hydra
    import hira.paper.sweep  # noqa: F401 (registers ${hira_cell:})

    return compose_with_hydra("train", overrides).hydra.sweep.subdir


def test_cell_folder_is_named_from_its_settings():
    first, again = subdir(["train.lr=0.01"]), subdir(["train.lr=0.01"])
    assert first == again and first.startswith("synthetic_hira_tiny_s42_")
    assert subdir(["train.lr=0.02"]) != first  # another setting, another folder
    assert subdir(["train.lr=0.01", "seed=3"]) == first.replace("_s42_", "_s3_")  # the seed is in the name
    assert subdir(["train.lr=0.01", "train.log_steps=3"]) == first  # not a setting (the schema marks it neutral)


def test_failed_record_is_superseded_by_success(tmp_path, monkeypatch):
    from hira.paper import sweep

    monkeypatch.setattr(sweep, "summary_file", lambda: tmp_path / "summary.jsonl")
    run = RunDir(tmp_path / "cell")
    sweep.record(run, "failed", "step 2: non-finite loss")
    assert json.loads((run.path / "failed.json").read_text())["reason"] == "step 2: non-finite loss"
    assert not sweep.finished_run(run, None)
    sweep.record(run, "done")
    assert not (run.path / "failed.json").exists()
    entries = sweep.read_entries(tmp_path / "summary.jsonl")
    assert [e["status"] for e in entries] == ["failed", "done"] and sweep.summary_exit_code(entries) == 0


def test_summary_has_each_cells_last_status():
    from hira.paper.sweep import summary_exit_code, summary_lines

    entries = [{"status": "failed", "run_dir": "a", "overrides": ["x=1", "lr=9"], "reason": "diverged"},
               {"status": "done", "run_dir": "b", "overrides": ["x=1", "lr=1"]},
               {"status": "skipped", "run_dir": "c", "overrides": ["x=1", "lr=2"]}]
    assert summary_lines(entries) == ["failed   a (lr=9): diverged", "done     b (lr=1)", "skipped  c (lr=2)"]
    assert summary_exit_code(entries) == 1
    assert summary_exit_code(entries + [{**entries[0], "status": "done", "reason": None}]) == 0


def test_out_of_memory_is_a_failure_to_record_and_a_bug_is_not():
    import torch

    from hira.paper.sweep import failure_reason, is_out_of_memory

    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore")
    assert is_out_of_memory(oom) and is_out_of_memory(MemoryError())
    assert failure_reason(oom) == "out of memory (OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB)"
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_rerun_all_moves_results_aside(tmp_path, monkeypatch):
    import hira.cli
    from hira.paper.sweep import move_results_aside

    monkeypatch.setattr(hira.cli, "hydra_files", lambda: {".hydra", "train.log"})
    run = RunDir(tmp_path / "cell")
    (run.path / ".hydra").mkdir(parents=True)
    for name in ("train.log", "config.yaml", "metrics.jsonl"):
        (run.path / name).write_text(name)
    aside = move_results_aside(run)
    assert aside.name.startswith("cell.replaced-") and sorted(p.name for p in aside.iterdir()) == [
        "config.yaml", "metrics.jsonl"]
    assert sorted(p.name for p in run.path.iterdir()) == [".hydra", "train.log"]


# --- sweeps that train (subprocesses) ----------------------------------------------------------------------------

def summary_block(stdout: str) -> list[str]:
    """The sweep's last lines: its summary header and one line per cell."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("sweep summary"))
    return lines[start:]


def cell_status(block: list[str]) -> dict:
    """{lr override: status} from the summary's cell lines."""
    found = {}
    for line in block[1:]:
        status, _, rest = line.partition(" ")
        found[rest.split("train.lr=")[1].split(")")[0].split()[0]] = status
    return found


@pytest.fixture(scope="module")
def failing_sweep(workdir, tmp_path_factory):
    """One diverging and one good cell, the same command run twice (basic launcher)."""
    out = tmp_path_factory.mktemp("sweep")
    args = ["-m", *common_overrides(workdir), *SHORT, f"train.lr={DIVERGES},1e-3", f"hydra.sweep.dir={out}"]
    first = run_script("train.py", *args)
    good = next(out.glob("*/scores.json")).parent
    stamp = (good / "metrics.jsonl").stat().st_mtime_ns
    second = run_script("train.py", *args)
    return out, good, stamp, first, second


@pytest.mark.slow
def test_failed_cell_does_not_stop_the_sweep_and_finished_cells_are_skipped(failing_sweep):
    out, good, stamp, first, second = failing_sweep
    assert first.returncode == 1, first.stderr[-3000:]
    block = summary_block(first.stdout)
    assert block[0].endswith("1 done, 0 skipped, 1 failed")
    assert cell_status(block) == {"1e+30": "failed", "0.001": "done"}
    failed_line = next(line for line in block if line.startswith("failed"))
    assert "step 2: non-finite loss or gradient norm" in failed_line
    bad = next(p.parent for p in out.glob("*/failed.json"))
    assert "non-finite" in json.loads((bad / "failed.json").read_text())["reason"]
    assert RunDir(good).training_ended() and setting_scores(RunDir(good).read_scores())["best"]

    assert second.returncode == 1, second.stderr[-3000:]
    block = summary_block(second.stdout)
    assert cell_status(block) == {"1e+30": "failed", "0.001": "skipped"}
    assert f"skipped: {good} holds this cell's finished run" in second.stdout
    assert (good / "metrics.jsonl").stat().st_mtime_ns == stamp  # not trained again
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted([bad.name, good.name])  # same folders


@pytest.mark.slow
def test_submitit_local_runs_two_cells_at_a_time(failing_sweep, workdir):
    """4 cells through submitit's local executor, 2 at a time: the earlier diverging cell fails again, the finished
    one is skipped, two new ones train; the summary ends the sweep, exit 1."""
    out = failing_sweep[0]
    proc = run_script("train.py", "-m", "hydra/launcher=submitit_local_pool", "hydra.launcher.array_parallelism=2",
                      *common_overrides(workdir), *SHORT, f"train.lr={DIVERGES},1e-3,2e-3,5e-4",
                      "evaluate_after_training=false", f"hydra.sweep.dir={out}")  # not a setting: 1e-3 is skipped
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.count("Submitit 'local' sweep output dir") + proc.stderr.count(
        "Submitit 'local' sweep output dir") == 2  # two arrays of two cells
    block = summary_block(proc.stdout)
    assert block[0].endswith("2 done, 1 skipped, 1 failed")
    assert cell_status(block) == {"1e+30": "failed", "0.001": "skipped", "0.002": "done", "0.0005": "done"}
    trained = [p.parent for p in out.glob("*/metrics.jsonl") if RunDir(p.parent).training_ended()]
    assert len(trained) == 3


@pytest.mark.benchmark  # a 2-task submitit cell beside a 1-process one: outside CI's 15 minutes (pytest -m benchmark)
@pytest.mark.slow
def test_one_cell_as_two_submitit_tasks_matches_one_process(failing_sweep, workdir, tmp_path):
    """tasks_per_node=2: submitit starts two processes whose RANK/WORLD_SIZE/MASTER_* come from its environment; the
    2-rank ZeRO-3 cell trains the numbers the 1-process cell did (tests/test_zero3.py's tolerance)."""
    single = next(p.parent for p in failing_sweep[0].glob("*/scores.json") if OmegaConf_lr(p.parent) == 1e-3)
    proc = run_script("train.py", "-m", "hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2",
                      "hardware=cpu_zero3", *common_overrides(workdir), *SHORT, "train.lr=1e-3",
                      "evaluate_after_training=false", f"hydra.sweep.dir={tmp_path}")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    two = next(tmp_path.glob("*/config.yaml")).parent
    state = json.loads((two / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["world_size"] == 2 and (two / "checkpoints" / "step_4" / "rng_rank1.pt").is_file()
    ours, ref = losses(two), losses(single)
    assert [x[:2] for x in ours] == [x[:2] for x in ref] and len(ref) == 4 + 2
    for (_, _, a), (_, _, b) in zip(ours, ref):
        assert abs(a - b) < 1e-4


def OmegaConf_lr(run_dir) -> float:
    from omegaconf import OmegaConf

    return OmegaConf.load(run_dir / "config.yaml").train.lr


def losses(run_dir):
    return [(e["event"], e["step"], e.get("loss", e.get("val_loss"))) for e in read_metrics(run_dir / "metrics.jsonl")
            if e["event"] in ("train", "eval")]


@pytest.mark.slow
def test_lr_sweep_chooses_by_validation_loss(workdir, tmp_path, capsys):
    """Stage 1: lora and hira at ×0.5 and ×2 their default rate (seed 1); the choice is each method's lowest best
    validation loss; stage 2 trains seed 2 at it; the tables show the tuning table and only the chosen rates."""
    from hira.commands.sweep_select import main as sweep_select
    from hira.paper.tables import make_tables

    tiny = [*common_overrides(workdir), "train.max_steps=2", "train.eval_steps=2", "train.warmup_steps=0",
            "evaluate_after_training=false", f"hydra.sweep.dir={tmp_path}"]
    stage1 = run_script("train.py", "-m", "+experiment=lr_sweep", "method=lora,hira", "sweep.lr_factor=0.5,2", *tiny)
    assert stage1.returncode == 0, stage1.stderr[-3000:]
    tuning = {}
    for config in tmp_path.glob("*_s1_*/config.yaml"):
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(config)
        tuning[(cfg.method.name, cfg.train.lr)] = RunDir(config.parent).events("eval")[-1]["best_val_loss"]
    assert len(tuning) == 4
    expected = {m: min((loss, lr) for (name, lr), loss in tuning.items() if name == m)[1] for m in ("lora", "hira")}

    sweep_select([str(tmp_path)])
    chosen_lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("chosen: ")]
    assert len(chosen_lines) == 2
    for line in chosen_lines:
        method = line.split()[1]
        assert f"lr {expected[method]:g} " in line

    stage2 = run_script("train.py", "-m", "+experiment=lr_sweep", "method=lora,hira", "sweep.lr_factor=chosen",
                        "seed=2", *tiny)
    assert stage2.returncode == 0, stage2.stderr[-3000:]
    from omegaconf import OmegaConf

    second = {OmegaConf.load(c).method.name: OmegaConf.load(c).train.lr for c in tmp_path.glob("*_s2_*/config.yaml")}
    assert second == expected

    report = make_tables(tmp_path)
    tuning_table = report.tables.split("## Learning-rate tuning")[1]
    marked = [line for line in tuning_table.splitlines() if line.endswith("| ✓ |")]
    assert sorted((line.split("|")[1].split()[0], float(line.split("|")[4])) for line in marked) == sorted(
        (m, float(f"{lr:.3g}")) for m, lr in expected.items())
    assert "2 run(s) at other rates left out" in tuning_table
    main_tables = report.tables.split("## Learning-rate tuning")[0]
    assert "| 2 |" in main_tables  # each method's row averages its two seeds at the chosen rate

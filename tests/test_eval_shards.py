"""Data-parallel scoring: 2 gloo ranks on CPU write the same predictions and scores.json, byte for byte, as one
process (eval.py on the tiny model and on SmolLM2 cut to 2 layers, and train.py's scoring when training ends); a rank
that fails fails the command with its rank named."""

import filecmp
import json
import shutil

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import common_overrides, run_script, small_run_overrides, smollm2_layers

from hira.distributed import free_port
from hira.errors import UserError
from hira.evaluation.shards import decode_sharded, shard
from hira.run_dir import setting_scores

pytestmark = pytest.mark.skipif(shutil.which("deepspeed") is None, reason="needs the deepspeed launcher")


def test_shards_interleave_and_cover_every_question():
    assert [shard(7, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [shard(1, r, 2) for r in range(2)] == [[0], []]  # more ranks than questions


SCENARIOS = [(5, None), (1, None), (4, 1)]  # (questions, the rank whose decoding fails)


def gather_on_two_ranks(rank: int, port: int, results) -> None:
    """decode_sharded in each scenario, in one 2-rank gloo group (one spawn: starting processes is the slow part)."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        for n, fail_on in SCENARIOS:
            def decode(indices):
                if rank == fail_on:
                    raise ValueError("out of memory")
                return [f"answer {i}" for i in indices]

            try:
                results[(n, rank)] = decode_sharded(decode, n, "piqa")
            except UserError as e:
                results[(n, rank)] = f"UserError: {e}"
    finally:
        dist.destroy_process_group()


def test_rank_0_gathers_the_outputs_in_order_and_a_failing_rank_is_named():
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(gather_on_two_ranks, args=(free_port(), results), nprocs=2, start_method="spawn")
        results = dict(results)
    assert results[(5, 0)] == [f"answer {i}" for i in range(5)] and results[(5, 1)] is None
    assert results[(1, 0)] == ["answer 0"] and results[(1, 1)] is None  # rank 1's shard is empty
    for rank in (0, 1):  # every rank stops, and says which rank failed
        assert results[(4, rank)] == "UserError: scoring piqa failed on rank 1: ValueError: out of memory"


# --- eval.py under the deepspeed launcher -------------------------------------------------------------------

def run(script: str, *args, launcher=None) -> str:
    """run_script, which must succeed; its stdout (the deepspeed launcher passes every rank's through)."""
    proc = run_script(script, *args, timeout=1200, launcher=launcher)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc.stdout


def two_ranks() -> list[str]:
    """The deepspeed launcher on 2 local ranks, at a free port (another launch on this machine may hold 29500)."""
    return ["deepspeed", "--num_gpus", "2", "--master_port", str(free_port())]


TWO_STEPS = ["train.max_steps=2", "train.eval_steps=2"]


@pytest.fixture(scope="module")
def trained_run(workdir):
    """A run train.py made with the default hardware (one CPU process), two steps."""
    run_dir = workdir / "shards_run"
    run("train.py", *common_overrides(workdir), *TWO_STEPS, "evaluate_after_training=false", f"run_dir={run_dir}")
    return run_dir


@pytest.fixture(scope="module")
def smollm2_run(workdir, smollm2_folder, tmp_path_factory):
    """A run train.py made on SmolLM2 cut to 2 layers (model=hf), two steps: a real BPE tokenizer and attention
    layout. Its first and last layers: the first two alone give every question the same answer, so an answer
    gathered into the wrong place would not show."""
    folder = tmp_path_factory.mktemp("smollm2_2layers")
    model, tokenizer = smollm2_layers([0, 29])
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    run_dir = workdir / "shards_smollm2_run"
    run("train.py", "model=hf", f"model.path={folder}", *small_run_overrides(workdir), "task.val_size=8", *TWO_STEPS,
        "evaluate_after_training=false", f"run_dir={run_dir}")  # the last value wins
    return run_dir


def scored_files(run_dir, into):
    """Copy scores.json and predictions/ aside (the next scoring of the run rewrites them)."""
    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    shutil.copy(run_dir / "scores.json", into / "scores.json")
    shutil.copytree(run_dir / "predictions", into / "predictions")
    (run_dir / "scores.json").unlink()
    shutil.rmtree(run_dir / "predictions")
    return into


def same_tree(a, b) -> bool:
    cmp = filecmp.dircmp(a, b)
    return (not cmp.left_only and not cmp.right_only and not filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)[1]
            and all(same_tree(a / d, b / d) for d in cmp.common_dirs))


def scored_by_one_and_two_ranks(run_dir, settings: list[str], tmp_path):
    """(one, two): the files `eval.py run_dir=<run_dir> settings` wrote in one process, then on 2 ranks."""
    run("eval.py", f"run_dir={run_dir}", *settings)
    one = scored_files(run_dir, tmp_path / "one")
    run("eval.py", f"run_dir={run_dir}", *settings, launcher=two_ranks())
    return one, scored_files(run_dir, tmp_path / "two")


def subset_sizes(scored) -> list[int]:
    best = setting_scores(json.loads((scored / "scores.json").read_text()))["best"]
    return [s["n"] for s in best["subsets"].values()]


def generations(scored) -> list[str]:
    return [json.loads(line)["generation"] for f in sorted((scored / "predictions").rglob("*.jsonl"))
            for line in f.read_text().splitlines()]


@pytest.mark.slow  # deepspeed launches
@pytest.mark.parametrize("settings", [["limit=3", "num_beams=2"],  # shards of 2 and 1 questions per subset
                                      ["limit=1", "eval.mode=loglik"]])  # more ranks than questions
def test_two_ranks_score_byte_identical_to_one_process(trained_run, tmp_path, settings):
    one, two = scored_by_one_and_two_ranks(trained_run, settings, tmp_path)
    assert same_tree(one, two)
    assert subset_sizes(one) == [int(settings[0].split("=")[1])] * 8


@pytest.mark.benchmark  # SmolLM2 on 2 ranks: outside CI's 15 minutes (the tiny model's 2-rank scoring stays in CI)
def test_two_ranks_score_smollm2_byte_identical_to_one_process(smollm2_run, tmp_path):
    one, two = scored_by_one_and_two_ranks(smollm2_run, ["limit=3", "num_beams=2", "subsets=[boolq,piqa]"], tmp_path)
    assert same_tree(one, two)
    assert subset_sizes(one) == [3, 3] and len(set(generations(one))) > 1  # each question its own answer


@pytest.mark.slow  # deepspeed launches
def test_train_on_two_ranks_scores_a_shard_on_each_as_one_process_would(workdir, tmp_path):
    """train.py's scoring when training ends runs on every rank: rank 1 decodes its shard (every 2nd question of
    each subset), and rank 0 writes what `python eval.py` writes for the run alone."""
    run_dir = tmp_path / "run"
    stdout = run("train.py", *common_overrides(workdir), *TWO_STEPS, "evaluate_after_training=true", "eval_limit=3",
                 f"run_dir={run_dir}", launcher=two_ranks())
    assert "rank 1 of 2 scores 8 of 24 questions in 8 subsets" in stdout  # 1 of each subset's 3
    two = scored_files(run_dir, tmp_path / "two")
    run("eval.py", f"run_dir={run_dir}", "limit=3")
    assert same_tree(scored_files(run_dir, tmp_path / "one"), two)


def score_and_die(rank: int, port: int, run_dir: str, settings: dict) -> None:
    """One of 2 gloo scoring ranks that SIGKILLs itself once its first batch is appended. Spawned without a launcher,
    which would kill the other rank as soon as one dies, before it has appended anything."""
    import os

    from hira.evaluation.evaluator import evaluate_run
    from hira.evaluation.progress import KILL_AFTER

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), **{KILL_AFTER: "1"})
    evaluate_run(run_dir, **settings)


@pytest.mark.benchmark  # two launches of 2 ranks: outside CI's 15 minutes, run with pytest -m benchmark
@pytest.mark.slow  # a deepspeed launch
def test_a_killed_two_rank_scoring_resumes_on_two_ranks_as_one_process_scores(trained_run, tmp_path):
    """Each rank appends its shard to its own file; both die by SIGKILL in the middle of the first subset, and the
    rerun on 2 ranks decodes only the questions neither file holds, ending with one process's files byte for byte."""
    from hira.evaluation.evaluator import evaluate_run

    killed, reference = (shutil.copytree(trained_run, tmp_path / name, ignore=shutil.ignore_patterns(
        "scores.json", "predictions", "eval_logs")) for name in ("killed", "reference"))
    settings = dict(limit=3, num_beams=2, batch_size=1, subsets=["boolq", "piqa"])  # rank 0: boolq's questions 0
    # and 2, rank 1: question 1
    ranks = mp.start_processes(score_and_die, args=(free_port(), str(killed), settings), nprocs=2, join=False,
                               start_method="spawn")
    for process in ranks.processes:
        process.join(timeout=600)
    assert [p.exitcode for p in ranks.processes] == [-9, -9]
    folder = killed / "predictions" / "generate_b2_t8_n3" / "step_2"
    shards = {p.name: len(p.read_text().splitlines()) for p in folder.glob("*.partial.jsonl")}
    assert shards == {"boolq.rank0.partial.jsonl": 1, "boolq.rank1.partial.jsonl": 1}
    assert not (folder / "boolq.jsonl").exists() and not (killed / "scores.json").exists()
    stdout = run("eval.py", f"run_dir={killed}", "limit=3", "num_beams=2", "batch_size=1", "subsets=[boolq,piqa]",
                 launcher=two_ranks())
    assert f"{folder}: kept 2 of 6 questions scored before, scoring the other 4" in stdout
    evaluate_run(reference, **settings)
    assert (killed / "scores.json").read_bytes() == (reference / "scores.json").read_bytes()
    assert same_tree(killed / "predictions", reference / "predictions")

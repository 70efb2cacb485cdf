"""Data-parallel scoring: 2 gloo ranks on CPU write the same predictions and scores.json, byte for byte, as one
process; a rank that fails fails the command with its rank named."""

import filecmp
import json
import shutil
import subprocess
import sys

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import ROOT, common_overrides

from hira.distributed import free_port
from hira.errors import UserError
from hira.evaluation.shards import decode_sharded, shard

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

def run(cmd: list[str], timeout: int = 1200) -> None:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]


@pytest.fixture(scope="module")
def trained_run(workdir):
    """A run train.py made with the default hardware (one CPU process), two steps."""
    run_dir = workdir / "shards_run"
    run([sys.executable, "train.py", *common_overrides(workdir), "train.max_steps=2", "train.eval_steps=2",
         "evaluate_after_training=false", f"run_dir={run_dir}"])
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


@pytest.mark.slow  # deepspeed launches
@pytest.mark.parametrize("settings", [["limit=3", "num_beams=2"],  # shards of 2 and 1 questions per subset
                                      ["limit=1", "eval.mode=loglik"]])  # more ranks than questions
def test_two_ranks_score_byte_identical_to_one_process(trained_run, tmp_path, settings):
    run([sys.executable, "eval.py", f"run_dir={trained_run}", *settings])
    one = scored_files(trained_run, tmp_path / "one")
    run(["deepspeed", "--num_gpus", "2", "eval.py", f"run_dir={trained_run}", *settings], timeout=1200)
    two = scored_files(trained_run, tmp_path / "two")
    assert same_tree(one, two)
    subsets = json.loads((one / "scores.json").read_text())["best"]["subsets"]
    assert len(subsets) == 8 and all(s["n"] == int(settings[0].split("=")[1]) for s in subsets.values())

"""The MetaMath -> GSM8K and ConvAI2 paths end to end on CPU: train.py on their synthetic stand-ins, then scoring."""

import json

import pytest
from conftest import TEST_TINY, data_folder, run_script

from hira.run_dir import setting_scores

pytestmark = pytest.mark.slow  # train.py and eval.py subprocesses

SMALL = ["train.global_batch_size=8", "hardware.micro_batch_size=8", "train.max_steps=4", "train.eval_steps=4",
         "train.warmup_steps=1", "task.val_size=8", "task.num_beams=2", "task.max_new_tokens=12"]


def train_stand_in(workdir, task, train_size, test_size, method):
    run_dir = workdir / f"run_{task}"
    proc = run_script("train.py", f"task={task}", *method, *TEST_TINY, *SMALL, f"model.cache_path={workdir / 'tiny'}",
               f"task.data_dir={data_folder(workdir / task)}", f"run_dir={run_dir}", f"task.synthetic.train_size={train_size}",
               f"task.synthetic.test_size={test_size}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir, setting_scores(json.loads((run_dir / "scores.json").read_text()))["best"]["subsets"], proc.stdout


def test_metamath_stand_in_trains_and_is_scored_by_the_gsm8k_scorer(workdir):
    """With HiLoRA, a method without a rank: task=metamath_synthetic method=hilora used to stop with `unexpected
    keyword argument 'r'` (the task wrote method.params.r into every method)."""
    run_dir, scores, stdout = train_stand_in(workdir, "metamath_synthetic", 48, 4, ["method=hilora"])
    assert list(scores) == ["gsm8k"] and scores["gsm8k"]["n"] == 4
    assert "accuracy" in scores["gsm8k"] and "parse fail" in stdout
    predictions = run_dir / "predictions" / "generate_b2_t12" / "step_4"  # the task's beams and tokens (SMALL)
    rows = [json.loads(line) for line in (predictions / "gsm8k.jsonl").read_text().splitlines()]
    test = json.loads((workdir / "metamath_synthetic" / "gsm8k" / "test.json").read_text())
    assert [r["gold"] for r in rows] == [t["answer"] for t in test]
    assert (workdir / "metamath_synthetic" / ".tokenized").is_dir()


def test_convai2_stand_in_trains_and_is_scored_by_the_dialogue_metrics(workdir):
    run_dir, scores, stdout = train_stand_in(workdir, "convai2_synthetic", 24, 2, ["method.params.r=4"])
    dialogues = (workdir / "convai2_synthetic" / "raw" / "valid_self_original.txt").read_text()
    n_utterances = sum("\t" in line for line in dialogues.splitlines())
    assert list(scores) == ["convai2"] and scores["convai2"]["n"] == n_utterances
    assert scores["convai2"]["bleu"] is not None and scores["convai2"]["rouge_l"] is not None
    assert "convai2 (n=" in stdout and "rouge_l" in stdout

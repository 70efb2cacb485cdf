"""The evaluator's scoring, metrics, decoding invariance, log-likelihood mode and watch mode."""

import json
import random
import threading

import pytest
import torch
from omegaconf import OmegaConf
from helpers import WORDS, word_tokenizer
from transformers import LlamaConfig, LlamaForCausalLM, RobertaConfig, RobertaModel

from hira.data.templates import alpaca_prompt
from hira.errors import UserError
from hira.evaluation import evaluator
from hira.evaluation.console import format_table
from hira.evaluation.checkpoints import watch_checkpoints
from hira.evaluation.evaluator import score_by_loglik, score_generations
from hira.evaluation.generation import completion_logliks, generate
from hira.scoring import metrics
from hira.scoring.metrics import BertScoreConfig, accuracy_summary, dialogue_metrics

class NoSynonyms:
    """Stands in for NLTK's wordnet reader: METEOR then matches exact words and stems only."""

    def synsets(self, word):
        return []


# --- accuracy, CI, dispatch by subset ------------------------------------------------------------------------

def test_wilson_interval_hand_computed():
    s = accuracy_summary([True] * 8 + [False] * 2, parse_failures=1)
    # Wilson, z=1.95996: centre (0.8 + z²/20)/(1 + z²/10) = 0.71674, half-width 0.22658
    assert s["accuracy"] == 0.8 and s["n"] == 10 and s["parse_failures"] == 1 and s["ci_method"] == "wilson"
    assert s["ci95"] == pytest.approx([0.49016, 0.94332], abs=1e-4)


def test_gsm8k_subset_is_scored_numerically():
    records = [{"instruction": "q", "input": "", "output": "", "answer": a} for a in ("18", "0.5", "7", "3")]
    generations = ["so 9*2=18. The answer is: 18", "The answer is 1/2", "The answer is: 8", "I think 3"]
    rows, summary = score_generations("gsm8k", records, generations, ["p"] * 4)
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert [r["prediction"] for r in rows] == ["18", "1/2", "8", None]
    assert summary["accuracy"] == 0.5 and summary["parse_failures"] == 1 and summary["n"] == 4


def test_commonsense_subset_counts_parse_failures():
    records = [{"answer": a} for a in ("answer1", "answer2", "answer3")]
    rows, summary = score_generations("social_i_qa", records, ["answer1", "answer1", "no idea"], ["p"] * 3)
    assert summary["accuracy"] == pytest.approx(1 / 3) and summary["parse_failures"] == 1
    assert set(rows[0]) == {"prompt", "generation", "prediction", "gold", "correct"}


def test_unknown_subset_is_one_clear_error():
    with pytest.raises(UserError, match="no scoring rule for test subset 'squad'"):
        score_generations("squad", [{"answer": "x"}], ["x"], ["p"])


def test_table_has_ci_and_table1_row():
    scores = {"piqa": accuracy_summary([True, False], 0), "boolq": accuracy_summary([True, True, True, False], 1)}
    table = format_table(scores)
    assert "95% CI (Wilson)" in table and "parse fail" in table
    header, values = table.splitlines()[-2:]
    assert header.split()[-3:] == ["BoolQ", "PIQA", "Avg."]  # the paper's column order, not the input order
    assert values.split() == ["75.00", "50.00", "62.50"]



def test_subset_lines_follow_the_table1_row_order():
    scores = {s: accuracy_summary([True, False], 0) for s in ("winogrande", "boolq", "arc_e", "arc_c")}
    lines = format_table(scores).splitlines()
    subsets = [line.split()[0] for line in lines[1:5]]
    assert subsets == ["boolq", "arc_c", "arc_e", "winogrande"]
    assert lines[-2].split()[-5:] == ["BoolQ", "ARC-c", "ARC-e", "WinoG", "Avg."]


def test_a_loglik_scoring_names_no_beams(capsys):
    task = OmegaConf.create({"num_beams": 4, "max_new_tokens": 32})
    scores = {"boolq": accuracy_summary([True, False], 0)}
    evaluator.print_scores("run", "step_2", scores, evaluator.eval_settings(task, {"mode": "loglik"}))
    evaluator.print_scores("run", "step_2", scores, evaluator.eval_settings(task, {}))
    loglik, generate = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run [")]
    assert loglik == "run [step_2] loglik" and generate == "run [step_2] generate_b4_t32"

# --- ConvAI2 metrics -----------------------------------------------------------------------------------------

def test_dialogue_metrics_hand_computed(tmp_path):
    preds = ["a b c d e", "the cat sat down"]
    refs = ["a b c d e f g h", "the dog sat down"]
    scores, messages = dialogue_metrics(preds, refs, BertScoreConfig(str(tmp_path / "missing")), NoSynonyms())
    # ROUGE-L: LCS 5 of 5/8 -> F = 2·1·(5/8)/(1+5/8) = 10/13; LCS 3 of 4/4 -> F = 3/4.
    assert scores["rouge_l"] == pytest.approx(100 * (10 / 13 + 3 / 4) / 2)
    # METEOR with exact matches: "a b c d e": P=1, R=5/8, Fmean = 10PR/(R+9P) = 50/77, one chunk of 5:
    # penalty 0.5·(1/5)³ = 0.004.  "the cat sat down": 3 matches, 2 chunks: Fmean 0.75, penalty 0.5·(2/3)³.
    first = 50 / 77 * (1 - 0.5 * (1 / 5) ** 3)
    second = 0.75 * (1 - 0.5 * (2 / 3) ** 3)
    assert scores["meteor"] == pytest.approx(100 * (first + second) / 2)
    assert scores["bleu"] > 0 and scores["bert_f1"] is None and scores["average"] is None
    assert len(messages) == 1 and "hf download roberta-large" in messages[0]


def test_bleu_brevity_penalty_hand_computed(tmp_path):
    scores, _ = dialogue_metrics(["a b c d e"], ["a b c d e f g h"], BertScoreConfig(str(tmp_path / "x")), NoSynonyms())
    assert scores["bleu"] == pytest.approx(100 * torch.exp(torch.tensor(1 - 8 / 5)).item(), abs=1e-3)  # all n-grams match


def test_meteor_without_wordnet_is_reported_not_guessed(tmp_path):
    scores, messages = dialogue_metrics(["hi"], ["hi"], BertScoreConfig(str(tmp_path / "x")), wordnet=None)
    assert scores["meteor"] is None and scores["rouge_l"] == 100.0
    assert any("nltk.downloader wordnet" in m for m in messages)


def test_bertscore_runs_on_a_local_model_folder(tmp_path):
    tokenizer = word_tokenizer(WORDS, post="<s> $A </s>", model_max_length=64)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=80, pad_token_id=0)
    RobertaModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    same = ["the cat sat on the mat", "hello how are you"]
    scores, messages = dialogue_metrics(same, same, BertScoreConfig(str(tmp_path), num_layers=1), NoSynonyms())
    # identical sentences: every token's best match is itself (cosine 1), so P = R = F1 = 100
    assert scores["bert_p"] == pytest.approx(100) and scores["bert_r"] == pytest.approx(100)
    assert scores["bert_f1"] == pytest.approx(100) and messages == []
    assert scores["average"] == pytest.approx(sum(scores[k] for k in metrics.DIALOGUE_METRICS) / 6)
    other, _ = dialogue_metrics(["my name is cat"], ["what is your dog"], BertScoreConfig(str(tmp_path), 1),
                                NoSynonyms())
    assert other["bert_f1"] < 100


def test_convai2_subset_rows_and_summary(tmp_path):
    records = [{"instruction": "hi", "input": "", "output": "hello", "answer": "hello how are you"}]
    rows, summary = score_generations("convai2", records, ["hello how are you"], ["p"],
                                      BertScoreConfig(str(tmp_path / "none")))
    assert summary["n"] == 1 and summary["rouge_l"] == 100.0 and summary["bert_f1"] is None
    assert rows == [{"prompt": "p", "generation": "hello how are you", "gold": "hello how are you"}]
    assert "convai2 (n=1)" in format_table({"convai2": summary})


# --- decoding ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_lm():
    tokenizer = word_tokenizer(WORDS + alpaca_prompt("x").replace("#", " ").split())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(config).eval(), tokenizer


def varied_prompts(n=16):
    rng = random.Random(0)
    return [alpaca_prompt(" ".join(rng.choices(WORDS, k=rng.randint(1, 12)))) for _ in range(n)]


@pytest.mark.parametrize("num_beams", [1, 4])
def test_decoding_is_batch_size_invariant(tiny_lm, num_beams):
    model, tokenizer = tiny_lm
    prompts = varied_prompts()
    outputs = {bs: generate(model, tokenizer, prompts, num_beams, 6, bs) for bs in (1, 4, 16)}
    assert outputs[1] == outputs[4] == outputs[16]
    assert len(set(outputs[1])) > 1  # the prompts really lead to different continuations


def test_completion_logliks_match_a_direct_computation(tiny_lm):
    model, tokenizer = tiny_lm
    pairs = [(p, "the cat sat" if i % 2 else "hello") for i, p in enumerate(varied_prompts(6))]
    batched = completion_logliks(model, tokenizer, pairs, batch_size=4)
    for (prompt, completion), score in zip(pairs, batched):
        ids = tokenizer(prompt + completion, return_tensors="pt")["input_ids"]
        n_prompt = len(tokenizer(prompt)["input_ids"])
        logprobs = model(ids).logits[0].log_softmax(-1)
        direct = sum(logprobs[t - 1, ids[0, t]].item() for t in range(n_prompt, ids.shape[1]))
        assert score == pytest.approx(direct, abs=1e-4)


def test_loglik_mode_picks_the_most_likely_offered_option(monkeypatch):
    records = [{"instruction": "q\n\nAnswer format: answer1/answer2/answer3", "input": "",
                "output": "the correct answer is answer2", "answer": "answer2"},
               {"instruction": "q\n\nAnswer format: answer1/answer2/answer3", "input": "",
                "output": "the correct answer is answer1", "answer": "answer1"}]
    seen = []

    def fake_logliks(model, tokenizer, prompts, options, batch_size, desc, engine, on_batch=None):
        seen.extend(options)
        return [[-3.0, -1.0, -2.0], [-0.5, -4.0, -9.0]]

    monkeypatch.setattr(evaluator, "answer_logliks", fake_logliks)
    rows, summary = score_by_loglik(None, None, "siqa", records, ["p1", "p2"], 8)
    assert seen[0] == [f"the correct answer is answer{i}" for i in (1, 2, 3)]
    assert [r["prediction"] for r in rows] == ["answer2", "answer1"]
    assert summary["accuracy"] == 1.0 and summary["parse_failures"] == 0
    with pytest.raises(UserError, match="mode=loglik scores multiple-choice subsets only"):
        score_by_loglik(None, None, "gsm8k", records, ["p1", "p2"], 8)


# --- watch mode ----------------------------------------------------------------------------------------------

def write_checkpoint(run_dir, step):
    ckpt = run_dir / "checkpoints" / f"step_{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter.safetensors").write_bytes(b"")


def test_watch_scores_each_new_checkpoint_until_training_ends(tmp_path):
    write_checkpoint(tmp_path, 40)
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"event": "eval", "step": 40}) + '\n{"event": "tr')  # a line being written
    scored, both_scored = [], threading.Event()

    def score(ckpt):
        scored.append(ckpt.name)
        if ckpt.name == "step_40":  # training goes on while the first checkpoint is scored
            write_checkpoint(tmp_path, 80)
        if ckpt.name == "step_80":
            both_scored.set()

    def finish_training():
        both_scored.wait(timeout=60)
        write_checkpoint(tmp_path, 100)  # the last checkpoint lands just before the "end" event
        with open(tmp_path / "metrics.jsonl", "a") as f:
            f.write('ain"}\n' + json.dumps({"event": "end", "step": 100}) + "\n")

    trainer = threading.Thread(target=finish_training)
    trainer.start()
    result = watch_checkpoints(tmp_path, score, already_scored=(), poll_s=0.01, timeout_s=60)
    trainer.join()
    assert scored == ["step_40", "step_80", "step_100"] and result == scored


def test_watch_skips_scored_checkpoints_and_times_out_clearly(tmp_path):
    write_checkpoint(tmp_path, 40)
    scored = []
    with pytest.raises(UserError, match="has not finished after 0.05 s"):
        watch_checkpoints(tmp_path, lambda c: scored.append(c.name), ["step_40"], poll_s=0.01, timeout_s=0.05)
    assert scored == []

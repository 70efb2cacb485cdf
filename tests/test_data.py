"""Task data: converters on fixtures in the real files' formats, the authors' split, errors, tokenization and its cache."""

import json
import random
import re
import subprocess
import sys

import pytest
from conftest import ROOT
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from hira.data import layout, metamath_reader, parlai_reader, prepare, synthetic_world
from hira.data.records import DataError
from hira.data.tasks import load_task
from hira.data.templates import alpaca_prompt
from hira.data.tokenize import IGNORE_INDEX, encode_example, tokenized_splits
from hira.evaluation.answers import extract_answer, is_correct

FIXTURES = ROOT / "tests" / "fixtures"
LLM_ADAPTERS = FIXTURES / "llm_adapters"


def task_cfg(name: str, **overrides):
    cfg = OmegaConf.load(ROOT / "configs" / "task" / f"{name}.yaml")
    cfg = cfg.task if "task" in cfg else cfg
    cfg.merge_with(overrides)
    return cfg


# --- commonsense --------------------------------------------------------------------------------------------

def test_split_is_the_authors_seed_58_shuffle():
    records = json.loads((LLM_ADAPTERS / "ft-training_set" / "commonsense_170k.json").read_text())
    expected = list(records)
    random.seed(58)  # the authors' code, verbatim
    random.shuffle(expected)
    train, val = layout.split_train_val(records, 7, 58)
    assert val == expected[-7:] and train == expected[:-7]
    assert len(train) + len(val) == len(records) == 30


def test_prepare_commonsense_writes_llm_adapters_layout(tmp_path):
    dest, lines = prepare.prepare("commonsense", [LLM_ADAPTERS], tmp_path)
    assert dest == tmp_path / "commonsense"
    assert len(json.loads((dest / "commonsense_170k.json").read_text())) == 30
    for folder in ("boolq", "piqa", "social_i_qa", "hellaswag", "winogrande", "ARC-Easy", "ARC-Challenge", "openbookqa"):
        source = json.loads((LLM_ADAPTERS / "dataset" / folder / "test.json").read_text())
        assert json.loads((dest / folder / "test.json").read_text()) == source
    assert lines[0].startswith("commonsense_170k.json: 30 records") and "siqa: 4 test records" in lines


def test_prepare_commonsense_names_missing_subsets(tmp_path):
    with pytest.raises(DataError, match="no <subset>/test.json for .*openbookqa"):
        prepare.prepare("commonsense", [LLM_ADAPTERS / "ft-training_set", LLM_ADAPTERS / "dataset" / "boolq"], tmp_path)


def test_load_task_accepts_llm_adapters_subset_names(tmp_path):
    prepare.prepare("commonsense", [LLM_ADAPTERS], tmp_path)
    cfg = task_cfg("commonsense", data_dir=str(tmp_path / "commonsense"), val_size=5,
                   test_subsets=["social_i_qa", "ARC-Challenge", "obqa"])
    data = load_task(cfg)
    assert list(data.tests) == ["siqa", "arc_c", "obqa"] and len(data.tests["siqa"]) == 4
    assert (len(data.train), len(data.val)) == (25, 5)


# --- MetaMathQA and GSM8K -----------------------------------------------------------------------------------

def test_metamath_records_keep_the_response_and_its_answer():
    records = metamath_reader.metamath_records(FIXTURES / "metamath" / "MetaMathQA-395K.json")
    source = json.loads((FIXTURES / "metamath" / "MetaMathQA-395K.json").read_text())
    assert [r["instruction"] for r in records] == [s["query"] for s in source]
    assert [r["output"] for r in records] == [s["response"] for s in source]
    assert [r["answer"] for r in records] == ["\\sqrt{5}", "752", "19", "\\frac{15}{56}"]
    assert alpaca_prompt(records[2]["instruction"]).endswith(f"{source[2]['query']}\n\n### Response:\n")


def test_gsm8k_both_formats_give_the_same_questions_and_answers():
    jsonl = metamath_reader.gsm8k_records(FIXTURES / "gsm8k" / "test.jsonl")
    llm_adapters = metamath_reader.gsm8k_records(FIXTURES / "gsm8k" / "test.json")
    assert [r["instruction"] for r in jsonl] == [r["instruction"] for r in llm_adapters]
    assert [r["answer"] for r in jsonl] == [r["answer"] for r in llm_adapters] == ["18", "3", "70000"]
    assert "<<" not in jsonl[2]["output"] and jsonl[2]["output"].endswith("\nThe answer is: 70000")
    for rec in jsonl:  # the converted reference is read correctly by the GSM8K scorer
        assert is_correct("gsm8k", extract_answer("gsm8k", rec["output"]), rec["answer"])


def test_malformed_records_name_file_and_index(tmp_path):
    bad = tmp_path / "MetaMathQA.json"
    bad.write_text(json.dumps([{"query": "q", "response": "The answer is: 1"}, {"query": "q", "type": "x"}]))
    with pytest.raises(DataError, match=r"MetaMathQA.json: record 1 lacks key\(s\) response"):
        metamath_reader.metamath_records(bad)
    bad.write_text('[{"query": "q",\n "response": }]')
    with pytest.raises(DataError, match="MetaMathQA.json: invalid JSON at line 2"):
        metamath_reader.metamath_records(bad)
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"question": "q", "answer": "1\\n#### 1"}\n{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(DataError, match="test.jsonl: line 2 has no '#### <number>'"):
        metamath_reader.gsm8k_records(bad)
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps([{"instruction": "i", "input": "", "output": "o", "answer": "a"}, {"instruction": "i"}]))
    with pytest.raises(DataError, match=r"train.json: record 1 lacks key\(s\) input, output, answer"):
        load_task(task_cfg("metamath", data_dir=str(tmp_path), val_size=1))


def test_missing_files_name_the_task_and_the_prepare_command(tmp_path):
    with pytest.raises(DataError) as err:
        load_task(task_cfg("metamath", data_dir=str(tmp_path)))
    message = str(err.value)
    assert f"task metamath: data file {tmp_path / 'train.json'} not found" in message
    assert "python scripts/prepare_data.py metamath --src MetaMathQA-395K.json" in message
    (tmp_path / "train.json").write_text(json.dumps([{"instruction": "i", "input": "", "output": "o", "answer": "a"}] * 3))
    with pytest.raises(DataError, match=r"gsm8k/test.json not found; run `python scripts/prepare_data.py gsm8k"):
        load_task(task_cfg("metamath", data_dir=str(tmp_path), val_size=1))
    with pytest.raises(DataError, match=r"convai2/train.json not found; run `python scripts/prepare_data.py convai2"):
        load_task(task_cfg("convai2", data_dir=str(tmp_path / "convai2")))


def test_empty_dataset_is_an_error(tmp_path):
    (tmp_path / "train.json").write_text("[]")
    with pytest.raises(DataError, match="train.json: expected a non-empty JSON list"):
        load_task(task_cfg("metamath", data_dir=str(tmp_path)))


# --- ConvAI2 ------------------------------------------------------------------------------------------------

def test_convai2_counts_dialogues_and_utterances():
    train = parlai_reader.parse_self_original(FIXTURES / "convai2" / "train_self_original.txt")
    valid = parlai_reader.parse_self_original(FIXTURES / "convai2" / "valid_self_original.txt")
    assert [len(d.turns) for d in train] == [4, 3, 4] and [len(d.turns) for d in valid] == [3, 4]
    assert train[1].persona == ["my mom is my best friend.", "i have four sisters.",
                                "i believe that mermaids are real.", "i love iced tea."]


def test_convai2_examples_show_persona_and_history():
    records = parlai_reader.dialogue_records(parlai_reader.parse_self_original(FIXTURES / "convai2" / "train_self_original.txt"))
    assert len(records) == 11
    third = records[2]
    assert "Persona:\ni like to remodel homes.\ni like to go hunting." in third["instruction"]
    assert third["input"].split("\n") == [
        "Partner: hi , how are you doing ? i'm getting ready to do some cheetah chasing to stay in shape .",
        "You: you must be very fast . hunting is one of my favorite hobbies .",
        "Partner: i am ! for my hobby i like to do canning or some whittling .",
        "You: i also remodel homes when i am not out bow hunting .",
        "Partner: that's neat . when i was in high school i placed 6th in 100m dash !"]
    assert third["output"] == third["answer"] == "that's awesome . do you have a favorite season or time of year ?"


def test_convai2_self_persona_only_and_silence_dropped(tmp_path):
    path = tmp_path / "valid_both_original.txt"
    path.write_text("1 your persona: i like tea.\n2 partner's persona: i like coffee.\n"
                    "3 __SILENCE__\thello !\n4 hi there .\tdo you like tea ?\n")
    [d] = parlai_reader.parse_self_original(path)
    assert d.persona == ["i like tea."]
    first, second = parlai_reader.dialogue_records([d])
    assert first["input"] == "" and "coffee" not in first["instruction"]
    assert second["input"] == "You: hello !\nPartner: hi there ."
    path.write_text("1 your persona: i like tea.\n2 hello without a response\n")
    with pytest.raises(DataError, match="valid_both_original.txt: line 2 is neither a persona line nor"):
        parlai_reader.parse_self_original(path)


@pytest.mark.slow
def test_prepare_data_script_prints_counts(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "convai2", "--src",
                           str(FIXTURES / "convai2"), "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "train (train_self_original.txt): 3 dialogues, 11 utterances" in proc.stdout
    assert "test (valid_self_original.txt): 2 dialogues, 7 utterances" in proc.stdout
    data = load_task(task_cfg("convai2", data_dir=str(tmp_path / "convai2"), val_size=2))
    assert (len(data.train), len(data.val), len(data.tests["convai2"])) == (9, 2, 7)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "metamath", "--src",
                           str(tmp_path / "nowhere.json")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: MetaMathQA file") and "Traceback" not in proc.stderr


# --- tokenization -------------------------------------------------------------------------------------------

RECORD = {"instruction": "what does the fox eat?", "input": "", "output": "the fox eats berries", "answer": ""}


def test_labels_mask_the_prompt_and_end_with_eos(tiny_tokenizer):
    tok = tiny_tokenizer
    prompt_len = len(tok(alpaca_prompt(RECORD["instruction"]))["input_ids"])
    response = encode_example(tok, RECORD, 256, "response")
    full = encode_example(tok, RECORD, 256, "full")
    assert response["input_ids"] == full["input_ids"] == full["labels"]
    assert response["input_ids"][-1] == tok.eos_token_id
    assert response["labels"][:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert response["labels"][prompt_len:] == response["input_ids"][prompt_len:]
    assert tok.decode(response["labels"][prompt_len:-1]) == "the fox eats berries"
    short = encode_example(tok, RECORD, prompt_len + 2, "response")
    assert short["truncated"] and len(short["input_ids"]) == prompt_len + 2 and not short["lost_response"]
    assert encode_example(tok, RECORD, prompt_len, "response")["lost_response"]


def test_tokenized_data_is_cached(tmp_path, tiny_tokenizer, monkeypatch):
    cfg = task_cfg("metamath_synthetic", data_dir=str(tmp_path), val_size=8,
                   synthetic={"train_size": 40, "test_size": 4, "seed": 0})
    data = load_task(cfg, with_tests=False)
    train, val, n_truncated = tokenized_splits(tiny_tokenizer, data, cfg)
    assert len(train) == 32 and len(val) == 8 and n_truncated == 0
    assert train[0] == {k: v for k, v in encode_example(tiny_tokenizer, data.train[0], 128).items()
                        if k in ("input_ids", "attention_mask", "labels")}

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again")
    monkeypatch.setattr("hira.data.tokenize.encode_batch", no_tokenizing)
    again, val_again, _ = tokenized_splits(tiny_tokenizer, data, cfg)
    assert again[:] == train[:] and val_again == val
    cfg.cutoff_len = 16  # another setting is another cache entry
    with pytest.raises(AssertionError, match="tokenized again"):
        tokenized_splits(tiny_tokenizer, data, cfg)


# --- synthetic stand-ins ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, subset", [("metamath_synthetic", "gsm8k"), ("convai2_synthetic", "convai2")])
def test_synthetic_stand_ins_use_the_real_formats(tmp_path, tiny_tokenizer, name, subset):
    cfg = task_cfg(name, data_dir=str(tmp_path), val_size=4, synthetic={"train_size": 30, "test_size": 6, "seed": 0})
    data = load_task(cfg)
    tests = data.tests[subset]
    if subset == "gsm8k":  # written as MetaMathQA json + openai jsonl, read back by the real converters
        assert len(metamath_reader.metamath_records(tmp_path / "raw" / "MetaMathQA-synthetic.json")) == 30
        assert len(tests) == 6 and not {r["instruction"] for r in tests} & {r["instruction"] for r in data.train}
        assert all(is_correct("gsm8k", extract_answer("gsm8k", r["output"]), r["answer"]) for r in tests)
    else:
        dialogues = parlai_reader.parse_self_original(tmp_path / "raw" / "valid_self_original.txt")
        assert len(dialogues) == 6 and len(tests) == sum(len(d.turns) for d in dialogues)
    for rec in data.train + tests:  # the tiny model's tokenizer knows every word
        ids = tiny_tokenizer(alpaca_prompt(rec["instruction"], rec["input"]) + rec["output"])["input_ids"]
        assert tiny_tokenizer.unk_token_id not in ids, rec


def test_tiny_tokenizer_keeps_the_answer_phrase_for_the_gsm8k_scorer(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path)  # as the tiny model's folder holds it
    tok = AutoTokenizer.from_pretrained(tmp_path)
    ids = tok("in 4 days it eats 6 * 4 = 24 grass .\nThe answer is: 24")["input_ids"]
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert decoded == "in 4 days it eats 6 * 4 = 24 grass . The answer is: 24"
    assert extract_answer("gsm8k", decoded) == "24"


@pytest.mark.parametrize("name, fmt, epochs, cutoff, max_new", [("commonsense", "commonsense", 3, 256, 32),
                                                               ("metamath", "gsm8k", 2, 512, 256),
                                                               ("convai2", "convai2", 1, 512, 64)])
def test_task_configs_carry_the_paper_settings(name, fmt, epochs, cutoff, max_new):
    cfg = task_cfg(name)
    assert (cfg.format, cfg.epochs, cfg.cutoff_len, cfg.max_new_tokens) == (fmt, epochs, cutoff, max_new)
    assert cfg.data_dir == f"data/{name}" and cfg.loss_on == "response" and cfg.split_seed == 58


# --- the synthetic world ---------------------------------------------------------------------------------------

def test_demo_test_questions_ask_facts_the_pretraining_corpus_states():
    """Every fact a demo test question asks is stated in the tiny base's pretraining corpus; its quiz documents
    are answered with that fact's word or a label drawn at random, never with a label chosen to be right."""
    syn = task_cfg("synthetic").synthetic
    assert syn.test_per_subset >= 50
    world = synthetic_world.World.build()
    rng = random.Random(syn.seed)
    tests = {s: [synthetic_world.quiz_example(s, world, rng) for _ in range(syn.test_per_subset)] for s in synthetic_world.SUBSETS}
    corpus = " ".join(synthetic_world.pretraining_sentences(world))
    for subset, examples in tests.items():
        for ex, fact in examples:
            assert ex["output"] == f"the correct answer is {ex['answer']}"
            if subset in ("winogrande", "arc_c"):  # the fact word is the animal that has the asked value
                assert any(f"the {fact} is {v} ." in corpus or f"the {fact} lives in the {v} ." in corpus
                           or f"the {fact} eats {v} ." in corpus for v in re.findall(r"[a-z]+", ex["instruction"]))
            else:
                animal = next(a for a in synthetic_world.ANIMALS if a in re.findall(r"[a-z]+", ex["instruction"]))
                assert fact in world.facts[animal].values()
                assert any(f"the {animal} {verb} {fact} ." in corpus for verb in ("is", "lives in the", "eats"))
    quiz = [d for d in synthetic_world.pretraining_corpus(world, n_docs=10, n_quiz_docs=200, seed=0) if "### Response:" in d]
    assert len(quiz) == 200
    answers = [d.rsplit("the correct answer is ", 1)[1] for d in quiz]
    facts = {w for f in world.facts.values() for w in f.values()} | set(synthetic_world.ANIMALS)
    labelled = [a for a in answers if a not in facts]
    assert 0 < len(labelled) < len(answers) and all(a in d.rsplit("Answer format: ", 1)[1] for a, d in
                                                         zip(answers, quiz) if a in labelled)


def test_demo_splits_hold_out_distinct_test_questions():
    syn = task_cfg("synthetic").synthetic
    train, tests = synthetic_world.make_splits(syn.train_per_subset, syn.test_per_subset, seed=syn.seed)
    held_out = {ex["instruction"] for records in tests.values() for ex in records}
    assert all(len({ex["instruction"] for ex in records}) == syn.test_per_subset for records in tests.values())
    assert not held_out & {ex["instruction"] for ex in train} and len(train) == 8 * syn.train_per_subset



def test_every_demo_subset_draws_from_far_more_questions_than_its_test_set():
    """With 32 animals a forward lookup could ask 96 questions, the 50 held out took most of them and arc_e and
    obqa shared one generator (23 distinct training questions): fine-tuning memorized them instead of learning to
    answer. Each subset's draws of the training size now hold well over 150 questions beyond its test set."""
    syn = task_cfg("synthetic").synthetic
    world, rng = synthetic_world.World.build(), random.Random(syn.seed)
    questions = {subset: {synthetic_world.make_example(subset, world, rng)["instruction"] for _ in range(syn.train_per_subset)}
                 for subset in synthetic_world.SUBSETS}
    assert {s: len(q) for s, q in questions.items() if len(q) < syn.test_per_subset + 150} == {}
    assert not questions["arc_e"] & questions["obqa"]

def test_synthetic_files_are_written_once_per_world_version_and_settings(tmp_path, monkeypatch):
    from hira.data import tasks

    cfg = task_cfg("synthetic", data_dir=str(tmp_path), synthetic={"train_per_subset": 20, "test_per_subset": 5, "seed": 0})
    train_file, piqa = tmp_path / cfg.train_file, tmp_path / "piqa" / "test.json"
    tasks.ensure_synthetic_files(cfg)
    train_file.write_text("[]")  # kept while nothing changed: the files are written once, not per run
    tasks.ensure_synthetic_files(cfg)
    assert train_file.read_text() == "[]"
    cfg.synthetic.test_per_subset = 6
    tasks.ensure_synthetic_files(cfg)
    assert len(json.loads(piqa.read_text())) == 6 and len(json.loads(train_file.read_text())) == 8 * 20
    train_file.write_text("[]")
    monkeypatch.setattr(tasks, "WORLD_VERSION", tasks.WORLD_VERSION + 1)  # a new world: the old questions are stale
    tasks.ensure_synthetic_files(cfg)
    assert len(json.loads(train_file.read_text())) == 8 * 20


def test_the_tiny_base_cache_path_names_the_world_version():
    """A base pretrained on another world's facts must not be reused: the cache folder changes with the world."""
    assert OmegaConf.load(ROOT / "configs" / "model" / "tiny.yaml").cache_path.endswith(f"-v{synthetic_world.WORLD_VERSION}")

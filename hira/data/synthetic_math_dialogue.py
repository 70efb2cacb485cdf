"""Synthetic stand-ins for MetaMathQA/GSM8K and ConvAI2, written in the real files' exact formats.

They reuse the synthetic world's animals and foods, so the tiny model's vocabulary covers them, and go through
the same converters as the downloaded files: MetaMathQA json + openai GSM8K jsonl, and ParlAI self_original
text. Math answers are small sums, differences and products; dialogue responses restate a line of the
speaker's persona, so a tiny model can learn both in a few hundred steps.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from hira.data import parlai_reader
from hira.data.synthetic_world import ANIMALS, ATTRIBUTES

SILENCE_REPLY = "hello !"
MAX_NUMBER = 99  # every number the math problems can produce; the tiny tokenizer knows 0..MAX_NUMBER


# --- math ------------------------------------------------------------------------------------------------

def _add(rng):
    a, food, x, y = rng.choice(ANIMALS), rng.choice(ATTRIBUTES["food"]), rng.randint(1, 9), rng.randint(1, 9)
    question = f"the {a} has {x} {food} . it finds {y} more {food} . how many {food} does the {a} have now ?"
    return question, f"the {a} has {x} + {y} = {x + y} {food} now .", f"{x}+{y}", x + y


def _sub(rng):
    a, food, x = rng.choice(ANIMALS), rng.choice(ATTRIBUTES["food"]), rng.randint(2, 18)
    y = rng.randint(1, x - 1)
    question = f"the {a} has {x} {food} and eats {y} of them . how many {food} are left ?"
    return question, f"{x} - {y} = {x - y} {food} are left .", f"{x}-{y}", x - y


def _mul(rng):
    a, food, x, y = rng.choice(ANIMALS), rng.choice(ATTRIBUTES["food"]), rng.randint(2, 9), rng.randint(2, 9)
    question = f"the {a} eats {x} {food} every day . how many {food} does it eat in {y} days ?"
    return question, f"in {y} days it eats {x} * {y} = {x * y} {food} .", f"{x}*{y}", x * y


MATH = (_add, _sub, _mul)


def math_problem(rng: random.Random) -> tuple[str, str, str, int]:
    """(question, worked step, calculator expression, answer)."""
    return rng.choice(MATH)(rng)


def metamath_item(problem) -> dict:
    question, step, _, answer = problem
    return {"query": question, "response": f"{step}\nThe answer is: {answer}", "type": "GSM_AnsAug",
            "original_question": question}


def openai_gsm8k_item(problem) -> dict:
    """openai's test.jsonl form: calculator annotation <<expr=value>> and a final "#### N" line."""
    question, step, expr, answer = problem
    return {"question": question, "answer": step.replace(f"= {answer}", f"= <<{expr}={answer}>>{answer}")
            + f"\n#### {answer}"}


def write_math_sources(raw_dir: Path, n_train: int, n_test: int, seed: int) -> tuple[Path, Path]:
    """MetaMathQA-style training json and GSM8K-style test jsonl; test questions never occur in training."""
    rng = random.Random(seed)
    tests = distinct(lambda: math_problem(rng), n_test, key=lambda p: p[0])
    held_out = {p[0] for p in tests}
    train = []
    while len(train) < n_train:
        problem = math_problem(rng)
        if problem[0] not in held_out:
            train.append(problem)
    raw_dir.mkdir(parents=True, exist_ok=True)
    train_path, test_path = raw_dir / "MetaMathQA-synthetic.json", raw_dir / "gsm8k-synthetic-test.jsonl"
    train_path.write_text(json.dumps([metamath_item(p) for p in train], indent=1))
    test_path.write_text("".join(json.dumps(openai_gsm8k_item(p)) + "\n" for p in tests))
    return train_path, test_path


# --- dialogue --------------------------------------------------------------------------------------------

# Persona line, the partner's question about it, the speaker's answer; {a} animal, {v} the attribute's value.
TOPICS = {
    "animal": ("i am a {a} .", "hello ! what animal are you ?", "i am a {a} ."),
    "home": ("i live in the {v} .", "where do you live ?", "i live in the {v} ."),
    "food": ("i eat {v} .", "what do you like to eat ?", "i like to eat {v} ."),
    "color": ("my color is {v} .", "what color are you ?", "i am {v} ."),
}


def dialogue(rng: random.Random) -> tuple[list, list]:
    """(persona lines, [(partner utterance, response)]) about one random animal persona."""
    a = rng.choice(ANIMALS)
    values = {t: rng.choice(ATTRIBUTES[t]) for t in ("home", "food", "color")}
    persona = [line.format(a=a, v=values.get(t, "")) for t, (line, _, _) in TOPICS.items()]
    asked = rng.sample(list(TOPICS), rng.randint(2, 4))
    turns = [(TOPICS[t][1], TOPICS[t][2].format(a=a, v=values.get(t, ""))) for t in asked]
    if rng.random() < 0.2:  # the speaker opens the dialogue, as in ParlAI's __SILENCE__ turns
        turns.insert(0, (parlai_reader.SILENCE, SILENCE_REPLY))
    return persona, turns


def random_reply(rng: random.Random) -> str:
    """A well-formed reply about a random animal and value: a distractor, not grounded in any persona."""
    topic = rng.choice(list(TOPICS))
    return TOPICS[topic][2].format(a=rng.choice(ANIMALS), v=rng.choice(ATTRIBUTES.get(topic, [""])))


def self_original_lines(persona: list, turns: list, rng: random.Random) -> list[str]:
    """One dialogue in ParlAI's format: numbered persona lines, then utterance\\tresponse\\t\\tcandidates."""
    lines = [f"your persona: {p}" for p in persona]
    for partner, response in turns:
        candidates = [random_reply(rng) for _ in range(3)]
        lines.append(f"{partner}\t{response}\t\t{'|'.join(candidates + [response])}")
    return [f"{n} {line}" for n, line in enumerate(lines, 1)]


def write_dialogue_sources(raw_dir: Path, n_train: int, n_test: int, seed: int) -> Path:
    """train_self_original.txt and valid_self_original.txt with n_train / n_test dialogues."""
    rng = random.Random(seed)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("valid", n_test)):
        lines = [line for _ in range(n) for line in self_original_lines(*dialogue(rng), rng)]
        (raw_dir / f"{name}_self_original.txt").write_text("\n".join(lines) + "\n")
    return raw_dir


def pretraining_docs(n_docs: int, seed: int = 0) -> list[str]:
    """Documents for the tiny base: arithmetic facts and persona small talk with unrelated replies.

    A real base model can do small sums and knows chat phrases; these documents give the tiny one the same
    start (its frozen output layer must have seen the number and dialogue tokens) without showing the
    question formats or persona-grounded replies that fine-tuning is there to teach.
    """
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        if i % 2:
            docs.append(" ".join(_equation(rng) for _ in range(8)))
        else:
            persona, _ = dialogue(rng)
            docs.append(" ".join(persona + [f"{question} {random_reply(rng)}" for _, question, _ in TOPICS.values()]))
    return docs


def _equation(rng):
    _, _, expr, value = math_problem(rng)
    equation = re.sub(r"([-+*])", r" \1 ", expr) + f" = {value} ."
    return f"{equation} The answer is: {value}" if rng.random() < 0.2 else equation


def vocabulary_texts() -> list[str]:
    """Text holding every word the math and dialogue stand-ins can produce, for the tiny tokenizer."""
    rng = random.Random(0)
    math = [f"{q} {step}" for q, step, _, _ in (math_problem(rng) for _ in range(300))]
    dialogue_words = [f"{line} {question} {answer}" for line, question, answer in TOPICS.values()]
    return math + dialogue_words + [" ".join(str(n) for n in range(MAX_NUMBER + 1)),
                                    parlai_reader.INSTRUCTION, "Partner: You:", SILENCE_REPLY]


def distinct(make, n: int, key) -> list:
    found = {}
    for _ in range(100 * n):
        item = make()
        found.setdefault(key(item), item)
        if len(found) == n:
            return list(found.values())
    raise RuntimeError(f"cannot generate {n} distinct synthetic items")

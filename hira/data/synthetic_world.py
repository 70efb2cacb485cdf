"""A small synthetic world, its pretraining corpus, and commonsense-style tasks in LLM-Adapters format.

The world is a fixed set of 128 animals with a colour, a home and a food. The tiny base model is pretrained on
plain sentences stating these facts; the eight task subsets then ask about the same facts in the exact
question formats of LLM-Adapters' commonsense data, so fine-tuning has to teach the answer format and how to
pick the option that matches what the base model already knows.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hira.data.templates import alpaca_prompt

ANIMALS = (
    "fox bear wolf otter heron moose lynx badger crane beaver eagle falcon gecko hare ibis jackal "
    "koala lemur marmot newt ocelot panda quail raven seal tapir urchin viper walrus yak zebra bison "
    "ant bat boar camel cat cobra cod crab crow deer dingo dog dove duck eel elk emu ferret finch frog "
    "goat goose gull hawk hyena iguana kiwi lark lion llama mole mouse mule okapi orca owl ox parrot "
    "pig pony puma rat rhino robin shark sheep shrew skunk sloth snail snake squid stork swan tiger toad "
    "trout tuna turkey vole wasp whale wren alpaca bee beetle bobcat buffalo chimp cougar coyote donkey "
    "dolphin ermine flamingo gerbil gibbon gnu gopher gorilla hamster hippo hornet jaguar kudu leopard "
    "lizard lobster magpie mink mongoose moth narwhal octopus oriole osprey"
).split()
ATTRIBUTES = {
    "color": "red blue green yellow black white brown gray".split(),
    "home": "forest sea desert river mountain cave farm swamp".split(),
    "food": "berries fish grass seeds insects leaves meat nuts".split(),
}
# The world's values: the first VALUES_PER_ATTRIBUTE of each attribute (the math/dialogue stand-ins use the full
# lists, so the tokenizer knows them all whatever this is).
VALUES_PER_ATTRIBUTE = 8
VALUES = {k: v[:VALUES_PER_ATTRIBUTE] for k, v in ATTRIBUTES.items()}
WORLD_SEED = 1234
# Bump with any change to the world or its questions: synthetic data folders are rewritten when it changes, and
# configs/model/tiny.yaml's cache_path names it, so the tiny base is rebuilt for the new world.
WORLD_VERSION = 5

# Subset -> (number of options, option label). Labels are the ones LLM-Adapters' answers use.
SUBSETS = {
    "boolq": (2, None),
    "piqa": (2, "solution"),
    "siqa": (3, "answer"),
    "hellaswag": (4, "ending"),
    "winogrande": (2, "option"),
    "arc_e": (4, "answer"),
    "arc_c": (4, "answer"),
    "obqa": (4, "answer"),
}


@dataclass(frozen=True)
class World:
    facts: dict  # animal -> {attribute: value}

    @classmethod
    def build(cls, seed: int = WORLD_SEED) -> "World":
        rng = random.Random(seed)
        return cls({a: {k: rng.choice(v) for k, v in VALUES.items()} for a in ANIMALS})


def pretraining_sentences(world: World) -> list[str]:
    """Every fact stated in several phrasings: the corpus the tiny base model is pretrained on."""
    out = []
    for animal, f in world.facts.items():
        out += [
            f"the {animal} is {f['color']} .",
            f"a {animal} has {f['color']} fur .",
            f"the {animal} lives in the {f['home']} .",
            f"you can find the {animal} in the {f['home']} .",
            f"the {animal} eats {f['food']} .",
            f"{f['food']} is what the {animal} likes to eat .",
            f"what color is the {animal}? it is {f['color']} .",
            f"where does the {animal} live? in the {f['home']} .",
            f"what does the {animal} eat? it eats {f['food']} .",
        ]
    return out


def pretraining_corpus(world: World, n_docs: int, n_quiz_docs: int, seed: int = 0) -> list[str]:
    """Fact documents, plus quiz-formatted documents: half answered with a random label, half with the fact.

    A real base model has seen exam-style text and knows the facts it asks about, but not this benchmark's
    answer labels. The quiz documents give the tiny base the same: the prompt template and the label words
    (with a random label, so nothing about which option is right), and recalling the asked fact right where
    the answer goes (answered with the fact's word, "the correct answer is red", never with a label). The
    untuned base therefore answers the test formats at chance or with an unparseable word; only fine-tuning
    teaches it to turn the fact it recalls into the right option label.
    """
    rng = random.Random(seed)
    sentences = pretraining_sentences(world)
    docs = [" ".join(rng.sample(sentences, 8)) for _ in range(n_docs)]
    for i in range(n_quiz_docs):
        ex, fact = quiz_example(rng.choice(list(SUBSETS)), world, rng)
        labels = ex["instruction"].rsplit("Answer format: ", 1)[1].split("/")
        docs.append(alpaca_prompt(ex["instruction"]) + f"the correct answer is {fact if i % 2 else rng.choice(labels)}")
    rng.shuffle(docs)
    return docs


# --- questions, one function per subset; each returns (instruction, answer, fact word) -----------------------------

PHRASES = {
    "color": ("what color is the {a}?", "the {a} is"),
    "home": ("where does the {a} live?", "the {a} lives in the"),
    "food": ("what does the {a} eat?", "the {a} eats"),
}


def _options(rng, correct, pool, n):
    """The n options: the block of the canonical value list that holds the correct value, in canonical order.

    Which option is right is then a function of the fact alone, so a small model can learn the mapping from
    the facts its base already knows in a few hundred steps; questions about unseen facts test that transfer.
    """
    start = pool.index(correct) // n * n
    options = [pool[(start + j) % len(pool)] for j in range(n)]
    return options, options.index(correct) + 1


def _listing(label, options):
    return "\n".join(f"{label.capitalize()}{i}: {o}" for i, o in enumerate(options, 1))


def _fmt(label, n):
    return "/".join(f"{label}{i}" for i in range(1, n + 1))


def _boolq(world, rng):
    a, attr = rng.choice(ANIMALS), rng.choice(list(VALUES))
    truth = rng.random() < 0.5
    value = world.facts[a][attr] if truth else rng.choice([v for v in VALUES[attr] if v != world.facts[a][attr]])
    question = {"color": f"is the {a} {value}", "home": f"does the {a} live in the {value}",
                "food": f"does the {a} eat {value}"}[attr]
    return (f"Please answer the following question with true or false, question: {question}?\n\n"
            "Answer format: true/false", "true" if truth else "false", world.facts[a][attr])


def _piqa(world, rng):
    a, attr = rng.choice(ANIMALS), rng.choice(["home", "food"])
    goal, verb = {"home": (f"how do you find the {a}?", "look in the"), "food": (f"how do you feed the {a}?", "give it")}[attr]
    options, k = _options(rng, world.facts[a][attr], VALUES[attr], 2)
    listing = "\n\n".join(f"Solution{i}: {verb} {o}" for i, o in enumerate(options, 1))
    return (f"Please choose the correct solution to the question: {goal}\n\n{listing}\n\n"
            f"Answer format: solution1/solution2", f"solution{k}", world.facts[a][attr])


def _multiple_choice(world, rng, n, label, intro, stem=0):
    """A forward lookup: the animal's value among n options. stem 0 asks a question, 1 starts a statement."""
    a, attr = rng.choice(ANIMALS), rng.choice(list(VALUES))
    options, k = _options(rng, world.facts[a][attr], VALUES[attr], n)
    question = PHRASES[attr][stem].format(a=a)
    return (f"{intro}: {question}\n\n{_listing(label, options)}\n\nAnswer format: {_fmt(label, n)}", f"{label}{k}",
            world.facts[a][attr])


def _siqa(world, rng):
    return _multiple_choice(world, rng, 3, "answer", "Please choose the correct answer to the question")


def _hellaswag(world, rng):
    return _multiple_choice(world, rng, 4, "ending", "Please choose the correct ending to complete the given sentence",
                            stem=1)


def _arc_e(world, rng):
    return _multiple_choice(world, rng, 4, "answer", "Please choose the correct answer to the question")


def _obqa(world, rng):  # OpenBookQA's stems are statements to complete: arc_e's questions stay its own
    return _multiple_choice(world, rng, 4, "answer", "Please choose the correct answer to the question", stem=1)


def _winogrande(world, rng):
    attr = rng.choice(list(VALUES))
    a = rng.choice(ANIMALS)
    b = rng.choice([x for x in ANIMALS if world.facts[x][attr] != world.facts[a][attr]])
    sentence = PHRASES[attr][1].format(a="_") + f" {world.facts[a][attr]}"
    options, k = [a, b], 1
    if rng.random() < 0.5:
        options, k = [b, a], 2
    return (f"Please choose the correct answer to fill in the blank to complete the given sentence: {sentence}\n\n"
            f"Option1: {options[0]} Option2: {options[1]} Answer format: option1/option2", f"option{k}", a)


def _arc_c(world, rng):
    """The reverse lookup: which animal has this value (only one of the options has it)."""
    attr = rng.choice(list(VALUES))
    a = rng.choice(ANIMALS)
    value = world.facts[a][attr]
    others = rng.sample([x for x in ANIMALS if world.facts[x][attr] != value], 3)
    options = others + [a]
    rng.shuffle(options)
    question = {"color": f"which animal is {value}?", "home": f"which animal lives in the {value}?",
                "food": f"which animal eats {value}?"}[attr]
    return (f"Please choose the correct answer to the question: {question}\n\n{_listing('answer', options)}\n\n"
            f"Answer format: {_fmt('answer', 4)}", f"answer{options.index(a) + 1}", a)


QUESTION_MAKERS = {"boolq": _boolq, "piqa": _piqa, "siqa": _siqa, "hellaswag": _hellaswag,
                   "winogrande": _winogrande, "arc_e": _arc_e, "arc_c": _arc_c, "obqa": _obqa}


def quiz_example(subset: str, world: World, rng: random.Random) -> tuple[dict, str]:
    """An LLM-Adapters record for `subset` and the fact word that answers it (a value, or for the reverse
    lookups winogrande and arc_c the animal)."""
    instruction, answer, fact = QUESTION_MAKERS[subset](world, rng)
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}, fact


def make_example(subset: str, world: World, rng: random.Random) -> dict:
    return quiz_example(subset, world, rng)[0]


def make_splits(n_train_per_subset: int, n_test_per_subset: int, seed: int = 0) -> tuple[list, dict]:
    """Training pool (all subsets mixed, like commonsense_170k) and one test list per subset.

    Test questions are distinct and never appear in the training pool; training questions may repeat (a
    forward lookup can ask 128 animals x 3 attributes = 384 questions, piqa 256).
    """
    world, rng = World.build(), random.Random(seed)
    tests = {subset: _distinct(subset, world, rng, n_test_per_subset) for subset in SUBSETS}
    held_out = {ex["instruction"] for records in tests.values() for ex in records}
    train = [ex for subset in SUBSETS for ex in _sample(subset, world, rng, n_train_per_subset, held_out)]
    rng.shuffle(train)
    return train, tests


def _distinct(subset, world, rng, n):
    found = {}
    for _ in range(100 * n):
        ex = make_example(subset, world, rng)
        found.setdefault(ex["instruction"], ex)
        if len(found) == n:
            return list(found.values())
    raise RuntimeError(f"synthetic subset {subset!r} cannot supply {n} distinct questions")


def _sample(subset, world, rng, n, excluded):
    out = []
    while len(out) < n:
        ex = make_example(subset, world, rng)
        if ex["instruction"] not in excluded:
            out.append(ex)
    return out

"""Answer extraction from generated text.

Which rule a subset gets is its format's scorer (hira/data/formats):
choice (commonsense; paper and LLM-Adapters): the first of the subset's answer labels in the response wins,
case-sensitive.
number (GSM8K, MetaMath): the number after the last "The answer is" (colon optional), compared numerically with
the gold.
"""

from __future__ import annotations

import re
from fractions import Fraction

from hira.data import formats

# Choice subsets -> their answer labels, and the subsets scored by their final number (from the format registry).
CHOICE_LABELS = {subset: list(labels) for fmt in formats.FORMATS.values() if fmt.scorer == "choice"
                      for subset, labels in fmt.labels.items()}
PATTERNS = {subset: re.compile("|".join(labels)) for subset, labels in CHOICE_LABELS.items()}
NUMBER_SUBSETS = tuple(subset for fmt in formats.FORMATS.values() if fmt.scorer == "number" for subset in fmt.subsets)
ANSWER_IS = re.compile(r"The answer is:?")
# An optionally signed number: 1,234 / 12.5 / .5 / 3/4, possibly after a currency sign.
NUMBER = re.compile(r"([-+]?)\s*\$?\s*((?:\d[\d,]*)?\.?\d+(?:\s*/\s*\d[\d,]*(?:\.\d+)?)?)")


def extract_number(text: str) -> str | None:
    """The number after the last "The answer is" in `text`, without commas ("1,200.5" -> "1200.5"), or None."""
    last = None
    for last in ANSWER_IS.finditer(text):
        pass
    if last is None:
        return None
    match = NUMBER.search(text, last.end())
    if match is None:
        return None
    sign = "-" if match.group(1) == "-" else ""
    return sign + re.sub(r"[,\s]", "", match.group(2))


def to_fraction(number: str) -> Fraction | None:
    """Exact value of a number string ("18", "18.0", "-3/4", "1,200"), or None if it is not one."""
    try:
        return Fraction(number.replace(",", "").strip())
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(subset: str, text: str) -> str | None:
    """The answer in `text` to a question of test subset `subset` (LLM-Adapters names accepted), or None on a parse
    failure."""
    subset = formats.canonical_subset(subset)
    if subset in NUMBER_SUBSETS:
        return extract_number(text)
    if subset not in PATTERNS:
        raise ValueError(f"no answer extraction for test subset {subset!r}; "
                         f"valid: {', '.join([*PATTERNS, *NUMBER_SUBSETS])}")
    match = PATTERNS[subset].search(text.strip())
    return match.group(0) if match else None


def is_correct(subset: str, prediction: str | None, gold: str) -> bool:
    """Commonsense: same label. GSM8K: same number (so "18" matches a gold "18.0" and "0.75" matches "3/4")."""
    if prediction is None:
        return False
    if formats.canonical_subset(subset) in NUMBER_SUBSETS:
        value, gold_value = to_fraction(prediction), to_fraction(str(gold))
        return value is not None and value == gold_value
    return prediction == gold


ANSWER_FORMAT = re.compile(r"Answer format: (\S+)")


def offered_labels(subset: str, record: dict) -> list[str]:
    """The labels a commonsense question offers, from its "Answer format: a/b/c" line (all labels if absent)."""
    labels = CHOICE_LABELS[formats.canonical_subset(subset)]
    match = ANSWER_FORMAT.search(record["instruction"])
    offered = [label for label in match.group(1).split("/") if label in labels] if match else []
    return offered or labels


def answer_completion(record: dict, label: str) -> str:
    """The gold response with its answer label swapped for `label` ("the correct answer is <label>")."""
    output, gold = record["output"], record["answer"]
    return output.replace(gold, label) if gold and gold in output else f"the correct answer is {label}"

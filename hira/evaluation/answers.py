"""Answer extraction from generated text, by test subset name (LLM-Adapters names accepted).

Each rule is its format's scorer's (hira/scoring/scorers.py, named by the format in hira/data/formats); these
functions find the subset's format and ask its scorer, so a new format's rule needs nothing here.
"""

from __future__ import annotations

from hira.data import formats
from hira.scoring.scorers import ChoiceScorer

WHAT = {"extracts": "answer extraction", "loglik": "answer options"}  # what a scorer that cannot lacks


def scoring_subsets(can) -> list[str]:
    """The subsets whose scorer `can` (a Scorer attribute: extracts, loglik), in the registry's order."""
    return [subset for fmt in formats.FORMATS.values() if getattr(fmt.scorer, can) for subset in fmt.subsets]


def answer_scorer(subset: str, can: str = "extracts"):
    """(canonical subset, its format's scorer) for a subset whose scorer `can`; ValueError naming the valid ones."""
    fmt = formats.subset_format(subset)
    if fmt is None or not getattr(fmt.scorer, can):
        raise ValueError(f"no {WHAT[can]} for test subset {subset!r}; valid: {', '.join(scoring_subsets(can))}")
    return formats.canonical_subset(subset), fmt.scorer


def extract_answer(subset: str, text: str) -> str | None:
    """The answer in `text` to a question of test subset `subset` (LLM-Adapters names accepted), or None on a parse
    failure."""
    canonical, scorer = answer_scorer(subset)
    return scorer.extract(canonical, text)


def is_correct(subset: str, prediction: str | None, gold: str) -> bool:
    """Commonsense: same label. GSM8K: same number (so "18" matches a gold "18.0" and "0.75" matches "3/4")."""
    return answer_scorer(subset)[1].is_correct(prediction, gold)


def offered_labels(subset: str, record: dict) -> list[str]:
    """The labels a multiple-choice question offers, from its "Answer format: a/b/c" line (all labels if absent)."""
    canonical, scorer = answer_scorer(subset, "loglik")
    return scorer.options(canonical, record)


def answer_completion(record: dict, label: str) -> str:
    """The gold response with its answer label swapped for `label` ("the correct answer is <label>")."""
    return ChoiceScorer.completion(record, label)

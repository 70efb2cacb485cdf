"""A task format's scorer: how one of its answers is read from a response, judged against the gold, how a subset's
rows are summarised, and the lines the console prints for its subsets. The format owns it (TaskFormat.scorer,
hira/data/formats/base.py), as an lm-evaluation-harness task owns its process_results: the evaluator asks the
subset's format for its scorer and never branches on what kind it is.

choice (commonsense; paper and LLM-Adapters): the first of the subset's answer labels in the response wins,
case-sensitive; mode=loglik can score it by the most likely offered label.
number (GSM8K, MetaMath): the number after the last "The answer is" (colon optional), compared numerically with
the gold.
dialogue (ConvAI2): no answer to extract; the subset is summarised by the dialogue metrics of the paper's Table 2.
"""

from __future__ import annotations

import re
from fractions import Fraction

from hira.scoring.metrics import DIALOGUE_METRICS, BertScoreConfig, accuracy_summary, dialogue_metrics, mean_accuracy

ANSWER_IS = re.compile(r"The answer is:?")
# An optionally signed number: 1,234 / 12.5 / .5 / 3/4, possibly after a currency sign.
NUMBER = re.compile(r"([-+]?)\s*\$?\s*((?:\d[\d,]*)?\.?\d+(?:\s*/\s*\d[\d,]*(?:\.\d+)?)?)")
ANSWER_FORMAT = re.compile(r"Answer format: (\S+)")
ACCURACY_HEADER = f"{'subset':<12} {'accuracy':>9} {'95% CI (Wilson)':>17} {'parse fail':>10} {'n':>6}"


class Scorer:
    """The scoring rule of one format. A subclass sets `name` and overrides what it does differently."""

    name = ""  # how docs and tests call it: choice | number | dialogue | a new format's own
    extracts = True  # whether an answer is read from each response (extract, is_correct)
    loglik = False  # whether mode=loglik can score it: its answers are offered options (options, completion)
    summary = "accuracy"  # the console block its subsets print in: subsets of one block share its header

    def extract(self, subset: str, text: str) -> str | None:
        """The answer in `text` to a question of `subset` (a canonical name), or None on a parse failure."""
        raise NotImplementedError

    def is_correct(self, prediction: str | None, gold: str) -> bool:
        return prediction is not None and prediction == gold

    def score(self, subset: str, records: list[dict], generations: list[str], prompts: list[str],
              bert_cfg: BertScoreConfig | None = None):
        """(per-example rows, summary) of a subset's generated responses."""
        predictions = [self.extract(subset, gen) for gen in generations]
        return self.score_answers(records, predictions, generations, prompts)

    def score_answers(self, records: list[dict], predictions: list, generations: list[str], prompts: list[str]):
        """(per-example rows, accuracy summary) of extracted or chosen answers."""
        rows = [{"prompt": prompt, "generation": gen, "prediction": pred, "gold": rec["answer"],
                 "correct": self.is_correct(pred, rec["answer"])}
                for rec, pred, gen, prompt in zip(records, predictions, generations, prompts)]
        summary = accuracy_summary([r["correct"] for r in rows], sum(r["prediction"] is None for r in rows))
        return rows, summary

    def header(self) -> str | None:
        """The header line above this block's subset lines, or None."""
        return ACCURACY_HEADER

    def line(self, subset: str, summary: dict) -> str:
        """One subset's line in the console table: accuracy, its Wilson interval, parse failures and n."""
        low, high = summary["ci95"]
        return (f"{subset:<12} {100 * summary['accuracy']:>8.2f}% {f'[{100 * low:.1f}, {100 * high:.1f}]':>17} "
                f"{summary['parse_failures']:>10d} {summary['n']:>6d}")

    def footer(self, summaries: dict) -> list[str]:
        """The lines under this block's subsets ({subset: summary}): their average accuracy."""
        return [f"{'average':<12} {100 * mean_accuracy(summaries):>8.2f}%"]


class ChoiceScorer(Scorer):
    """A label among the ones the question offers; `labels`: subset -> its answer labels."""

    name = "choice"
    loglik = True

    def __init__(self, labels: dict):
        self.labels = {subset: tuple(names) for subset, names in labels.items()}
        self.patterns = {subset: re.compile("|".join(names)) for subset, names in self.labels.items()}

    def extract(self, subset: str, text: str) -> str | None:
        match = self.patterns[subset].search(text.strip())
        return match.group(0) if match else None

    def options(self, subset: str, record: dict) -> list[str]:
        """The labels a question offers, from its "Answer format: a/b/c" line (all labels if absent)."""
        labels = list(self.labels[subset])
        match = ANSWER_FORMAT.search(record["instruction"])
        offered = [label for label in match.group(1).split("/") if label in labels] if match else []
        return offered or labels

    @staticmethod
    def completion(record: dict, label: str) -> str:
        """The gold response with its answer label swapped for `label` ("the correct answer is <label>")."""
        output, gold = record["output"], record["answer"]
        return output.replace(gold, label) if gold and gold in output else f"the correct answer is {label}"


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


class NumberScorer(Scorer):
    """The final number, compared by value (so "18" matches a gold "18.0" and "0.75" matches "3/4")."""

    name = "number"

    def extract(self, subset: str, text: str) -> str | None:
        return extract_number(text)

    def is_correct(self, prediction: str | None, gold: str) -> bool:
        if prediction is None:
            return False
        value, gold_value = to_fraction(prediction), to_fraction(str(gold))
        return value is not None and value == gold_value


class DialogueScorer(Scorer):
    """The dialogue metrics of the whole subset's responses against the gold ones (no per-example answer)."""

    name = "dialogue"
    extracts = False
    summary = "dialogue"

    def score(self, subset: str, records: list[dict], generations: list[str], prompts: list[str],
              bert_cfg: BertScoreConfig | None = None):
        scores, messages = dialogue_metrics(generations, [r["answer"] for r in records], bert_cfg or BertScoreConfig())
        for message in messages:
            print(f"warning: {message}")
        rows = [{"prompt": p, "generation": g, "gold": r["answer"]} for r, g, p in zip(records, generations, prompts)]
        return rows, {**scores, "n": len(rows), "messages": messages}

    def header(self) -> str | None:
        return None

    def footer(self, summaries: dict) -> list[str]:
        return []

    def line(self, subset: str, summary: dict) -> str:
        names = [*DIALOGUE_METRICS, "average"]
        return f"{subset} (n={summary['n']}): " + " ".join(f"{name} {two_decimals(summary[name])}" for name in names)


def two_decimals(value) -> str:
    """A metric as the console prints it: two decimals, or n/a when it could not be computed."""
    return "n/a" if value is None else f"{value:.2f}"

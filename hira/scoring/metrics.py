"""Scores: accuracy with a Wilson 95% interval, and the ConvAI2 dialogue metrics of the paper's Table 2.

Every dialogue metric comes from its field library (sacrebleu, rouge-score, nltk, bert-score) and is reported
on a 0-100 scale like the paper. A metric whose resources are missing (BERTScore's model, NLTK's wordnet for
METEOR) is reported as None with a message saying how to get them; the others are still computed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

DIALOGUE_METRICS = ("bleu", "bert_f1", "bert_r", "bert_p", "meteor", "rouge_l")


def accuracy_summary(correct: list[bool], parse_failures: int) -> dict:
    """accuracy, its 95% Wilson score interval (scipy), parse failures and n."""
    from scipy.stats import binomtest  # imported when scoring: scipy.stats takes ~0.8 s, every command imports this

    n, k = len(correct), sum(correct)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"accuracy": k / n, "ci95": [ci.low, ci.high], "ci_method": "wilson", "parse_failures": parse_failures,
            "n": n}


def mean_accuracy(scores: dict) -> float | None:
    """The macro-average accuracy of the subsets scored by accuracy ({subset: summary}), None if there are none."""
    accuracies = [s["accuracy"] for s in scores.values() if "accuracy" in s]
    return sum(accuracies) / len(accuracies) if accuracies else None


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu defaults: 13a tokenisation, 4-grams)."""
    import sacrebleu

    return sacrebleu.corpus_bleu(predictions, [references]).score


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, Porter stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references)]
    return 100 * sum(scores) / len(scores)


def find_wordnet():
    """NLTK's wordnet reader, or None when its data is not installed (it cannot be downloaded at run time)."""
    import nltk
    from nltk.corpus import wordnet

    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            return None
    return wordnet


METEOR_HINT = ("METEOR needs NLTK's wordnet data (synonym matching): on a machine with internet run "
               "`python -m nltk.downloader wordnet` and copy ~/nltk_data here (or set NLTK_DATA)")


def meteor(predictions: list[str], references: list[str], wordnet) -> float:
    """Mean sentence METEOR (nltk: exact, stem and wordnet-synonym matches), whitespace tokens, lower-cased."""
    from nltk.translate.meteor_score import meteor_score

    scores = [meteor_score([ref.split()], pred.split(), wordnet=wordnet) for pred, ref in zip(predictions, references)]
    return 100 * sum(scores) / len(scores)


@dataclass
class BertScoreConfig:
    model: str = "roberta-large"  # a hub name in the local cache, or a local folder
    num_layers: int = 17          # bert-score's default layer for roberta-large
    batch_size: int = 64


def bert_score_prf(predictions: list[str], references: list[str], cfg: BertScoreConfig) -> tuple[float, float, float]:
    """BERTScore (precision, recall, F1), no baseline rescaling, as in the paper."""
    import bert_score

    p, r, f = bert_score.score(predictions, references, model_type=str(cfg.model), num_layers=cfg.num_layers,
                               batch_size=cfg.batch_size, device="cpu" if not _cuda() else None)
    return 100 * p.mean().item(), 100 * r.mean().item(), 100 * f.mean().item()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def bert_score_hint(cfg: BertScoreConfig) -> str:
    return (f"BERTScore skipped: model {cfg.model!r} is neither a local folder nor in the HF cache; on a machine "
            f"with internet run `hf download roberta-large --local-dir <folder>`, copy it here and set "
            f"eval.bertscore.model=<folder> (eval.bertscore.num_layers={cfg.num_layers})")


def dialogue_metrics(predictions: list[str], references: list[str], bert_cfg: BertScoreConfig,
                     wordnet="find") -> tuple[dict, list[str]]:
    """({metric: value or None, "average": mean of the six or None}, messages about metrics that were skipped)."""
    scores, messages = {"bleu": bleu(predictions, references), "rouge_l": rouge_l(predictions, references)}, []
    wordnet = find_wordnet() if wordnet == "find" else wordnet
    scores["meteor"] = meteor(predictions, references, wordnet) if wordnet is not None else None
    if wordnet is None:
        messages.append(METEOR_HINT)
    try:
        scores["bert_p"], scores["bert_r"], scores["bert_f1"] = bert_score_prf(predictions, references, bert_cfg)
    except (OSError, ValueError) as e:  # transformers: OSError for a model neither cached nor a folder
        log.debug("BERTScore load failed: %s", e)
        scores.update(bert_p=None, bert_r=None, bert_f1=None)
        messages.append(bert_score_hint(bert_cfg))
    scores = {name: scores[name] for name in DIALOGUE_METRICS}
    values = list(scores.values())
    scores["average"] = None if None in values else sum(values) / len(values)
    return scores, messages

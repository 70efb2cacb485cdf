"""Helpers more than one test module uses: run folders written by hand as train.py and eval.py leave them (for the
tables), tables.md read back into rows, a run's result record checked field by field, and a word-level tokenizer
for decoding tests. Fixtures live in conftest.py."""

import functools
import hashlib
import json
import math
import os
import re

import torch
from conftest import compose_config
from omegaconf import OmegaConf
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from hira.evaluation.forgetting import WINDOW
from hira.evaluation.result import RESULT_FORMAT, thawed_settings
from hira.paper.runs import best_entry, read_scores, run_settings
from hira.run_dir import RunDir

# --- run folders and tables.md (hira-make-tables) ----------------------------------------------------------------

SUBSETS = ["boolq", "piqa", "siqa", "arc_c", "arc_e", "obqa", "hellaswag", "winogrande"]  # Table 1 order
HEADERS = ["BoolQ", "PIQA", "SIQA", "ARC-c", "ARC-e", "OBQA", "HellaS", "WinoG"]
FULL = {"boolq": 3270, "piqa": 1838, "siqa": 1954, "hellaswag": 10042, "winogrande": 1267, "arc_e": 2376,
        "arc_c": 1172, "obqa": 500}  # the real test sets' sizes (docs/data.md)
TABLE1 = "Table 1: commonsense reasoning accuracy (%)"
TABLE12 = "Table 12: peak memory and training time"


@functools.lru_cache(maxsize=None)
def composed_yaml(overrides: tuple) -> str:
    """train.py's config for these overrides, before resolving (composing takes about a second: done once)."""
    return OmegaConf.to_yaml(compose_config(list(overrides)))


def composed(overrides, seed: int, run_dir) -> dict:
    """What train.py writes to config.yaml: the config resolved, with this seed and run directory."""
    cfg = OmegaConf.create(composed_yaml(tuple(overrides)))
    cfg.seed, cfg.run_dir = seed, str(run_dir)
    return OmegaConf.to_container(cfg, resolve=True)


def write_run(folder, overrides=(), seed=1, accuracy=0.5, n=50, subsets=SUBSETS, end=True, scored=True, age_s=0.0,
              train_time_s=100.0):
    """A run folder as train.py leaves it: every subset scored `accuracy` on `n` questions (or {subset: n});
    its results `age_s` seconds old."""
    folder.mkdir(parents=True)
    cfg = composed(overrides, seed, folder)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if end:
        (folder / "metrics.jsonl").write_text(json.dumps({"event": "end", "step": 10, "train_time_s": train_time_s,
                                                          "peak_memory_gb": 1.5}) + "\n")
    if scored:
        write_scores(folder, accuracy, n, subsets)
    age(folder, age_s)
    return folder


def write_scores(folder, accuracy, n, subsets, mode="generate"):
    counts = n if isinstance(n, dict) else dict.fromkeys(subsets, n)
    entry = {"subsets": {s: {"accuracy": accuracy, "n": counts[s], "parse_failures": 0} for s in subsets},
             "num_beams": 4, "mode": mode, "average": accuracy}
    (folder / "scores.json").write_text(json.dumps({"step_10": entry, "best": {"checkpoint": "step_10", **entry}}))


def age(folder, seconds):
    """Make the folder's result files `seconds` older (which of two runs of one seed is newer)."""
    for name in ("scores.json", "metrics.jsonl"):
        path = folder / name
        if path.is_file():
            when = path.stat().st_mtime - seconds
            os.utime(path, (when, when))


def table_sections(markdown: str, title: str) -> dict[str, list[dict]]:
    """{section heading: rows as {header: cell}} of one table of tables.md; a setting shown as a tag (S1) is
    read back through the section's legend ("- S1: max_steps 2, ...")."""
    text = markdown.split(f"### {title}\n")[1].split("\n### ")[0].split("\n## ")[0]
    sections = {}
    for block in text.split("\n**")[1:]:
        heading = block.split("**")[0]
        lines = [[c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
                 for line in block.splitlines() if line.startswith("|")]
        legend = dict(re.findall(r"^- (S\d+): (.*)$", block, re.M))
        rows = [dict(zip(lines[0], cells)) for cells in lines[2:]]
        sections[heading] = [{**row, "setting": legend.get(row["setting"], row["setting"])} for row in rows]
    return sections


def ours(rows: list[dict]) -> list[dict]:
    return [row for row in rows if row["n"]]


# --- result.json (hira/evaluation/result.py) ---------------------------------------------------------------------

LIBRARIES = {"python", "torch", "transformers", "peft", "deepspeed"}
COST = {"trainable_params", "total_params", "trainable_percent", "adapter_file", "adapter_bytes", "peak_memory_gb",
        "train_time_s", "train_tokens", "tokens_per_s", "scoring_time_s"}


def check_record(run_dir, scoring: str, trained: bool = True) -> dict:
    """Every field of run_dir's result.json present and true to the folder: the subsets' counts to scores.json and
    the prediction rows, the fingerprint to the tables' own, the cost to the files, the hashes to the data files."""
    run = RunDir(run_dir)
    record = json.loads(run.result.read_text())
    assert set(record) == {"format", "scoring", "fingerprint", "config", "scorings", "cost", "provenance",
                           "forgetting"}
    assert record["format"] == RESULT_FORMAT and record["scoring"] == scoring
    cfg = OmegaConf.load(run.config)
    assert record["config"] == OmegaConf.to_container(cfg, resolve=True)
    best = best_entry(read_scores(run, cfg), cfg, scoring)
    assert record["fingerprint"] == thawed_settings(run_settings(cfg, best))
    entry = record["scorings"][scoring]
    assert entry["checkpoint"] == best["checkpoint"] and entry["average"] == best["average"]
    assert entry["scoring_time_s"] > 0
    for subset, summary in best["subsets"].items():
        kept = entry["subsets"][subset]
        rows = [json.loads(line) for line in (run.path / kept["predictions_file"]).read_text().splitlines()]
        assert kept == {"questions": summary["n"], "correct": sum(r["correct"] for r in rows),
                        "accuracy": summary["accuracy"], "parse_failures": summary["parse_failures"],
                        "predictions_file": f"predictions/{scoring}/{best['checkpoint']}/{subset}.jsonl"}
        assert len(rows) == summary["n"]
    spent = record["cost"]
    assert set(spent) == COST and spent["scoring_time_s"] == entry["scoring_time_s"]
    if trained:
        assert all(spent[k] is not None for k in COST), spent
        assert spent["adapter_bytes"] == (run.path / spent["adapter_file"]).stat().st_size
        assert spent["trainable_percent"] == 100 * spent["trainable_params"] / spent["total_params"]
    origin = record["provenance"]
    assert re.fullmatch(r"[0-9a-f]{40}", origin["git"]["commit"]) and isinstance(origin["git"]["dirty"], bool)
    assert set(origin["libraries"]) == LIBRARIES and origin["libraries"]["torch"] == torch.__version__
    assert origin["world_size"] == 1 and origin["device_count"] >= 1 and origin["device"]
    roles = {f"test/{s}" for s in best["subsets"]} | ({"train", "validation"} if trained else set())
    assert set(origin["data"]) == roles
    for role, file in origin["data"].items():
        with open(file["path"], "rb") as f:
            assert file["sha256"] == hashlib.sha256(f.read()).hexdigest(), role
    forgetting = record["forgetting"]
    assert forgetting["checkpoint"] == best["checkpoint"]
    assert math.isfinite(forgetting["base_cross_entropy"]) and math.isfinite(forgetting["tuned_cross_entropy"])
    return record


def direct_cross_entropy(model, tokenizer, text: str) -> float:
    """The mean token cross-entropy as transformers computes a causal LM's loss, window by window, weighted by
    the tokens each window predicts."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    total = count = 0
    with torch.no_grad():
        for start in range(0, len(ids), WINDOW):
            chunk = torch.tensor([ids[start:start + WINDOW]])
            if chunk.shape[1] > 1:
                total += model(input_ids=chunk, labels=chunk).loss.item() * (chunk.shape[1] - 1)
                count += chunk.shape[1] - 1
    return total / count


# --- a word-level tokenizer for decoding tests --------------------------------------------------------------------

WORDS = "the cat sat on mat dog ran a hello how are you i am fine what is your name my".split()


def word_tokenizer(words, post="<s> $A", **kwargs) -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(words) - set(specials)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single=post, special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", **kwargs)

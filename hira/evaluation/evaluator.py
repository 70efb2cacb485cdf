"""Score a run's checkpoints on its task's test sets: predictions/<setting>/<ckpt>/<subset>.jsonl and scores.json,
each under its scoring setting (hira/run_dir.py: mode, beams, new tokens, questions per subset), so scoring under
one setting never touches another's. Outputs are appended batch by batch (hira/evaluation/progress.py), and a
rerun of the same scoring decodes only the questions it has not (a killed scoring resumes).

Scoring is dispatched by the subset's format (hira/data/formats): the eight commonsense subsets and gsm8k are
scored by accuracy of the extracted answer (mode=generate, the paper's) or of the most likely answer option
(mode=loglik, commonsense only); convai2 by the dialogue metrics of the paper's Table 2.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import OmegaConf

from hira import distributed
from hira.adapters import merge
from hira.checkout import CONFIG_DIR
from hira.config.check import check_scoring, check_subsets
from hira.config.handed_on import check_unless_handed_on
from hira.data import formats
from hira.data.tasks import load_task
from hira.errors import UserError
from hira.evaluation.checkpoints import select_checkpoints, wait_for_config, watch_checkpoints
from hira.evaluation.console import format_table
from hira.evaluation.generation import answer_logliks, generate, prompts_for
from hira.evaluation.progress import Appender, check_settings, cut_short, finish_subset, kept_outputs
from hira.evaluation.result import write_result
from hira.evaluation.shards import announce_shard, decode_sharded, join_ranks, rank_device
from hira.files import write_json_atomic
from hira.models.loading import load_adapted_model
from hira.run_dir import RunDir, own_scoring, scoring_id, scoring_setting
from hira.scoring.metrics import BertScoreConfig, mean_accuracy
from hira.training.checkpoint import load_adapter, weights_digest

log = logging.getLogger(__name__)


def subset_scorer(subset: str):
    """The scorer of a test subset's format (hira/scoring/scorers.py): how its answers are read, judged and
    summarised."""
    fmt = formats.subset_format(subset)
    if fmt is None:
        raise UserError(f"no scoring rule for test subset {subset!r}; valid: {', '.join(formats.all_subsets())}")
    return fmt.scorer


def score_generations(subset: str, records: list[dict], generations: list[str], prompts: list[str],
                      bert_cfg: BertScoreConfig | None = None):
    """(per-example rows, summary) for one test subset decoded by generation, by its format's scorer."""
    return subset_scorer(subset).score(formats.canonical_subset(subset), records, generations, prompts, bert_cfg)


def loglik_predictions(model, tokenizer, subset: str, records: list[dict], prompts: list[str], batch_size: int,
                       engine: str = "prefill", on_batch=None) -> list[str]:
    """Per question, the offered answer whose response has the highest log-likelihood (no parse failures);
    on_batch(indices, chosen answers) after each batch."""
    scorer = subset_scorer(subset)
    if not scorer.loglik:
        raise UserError(f"mode=loglik scores multiple-choice subsets only, not {subset!r}; use mode=generate")
    options = [scorer.options(formats.canonical_subset(subset), rec) for rec in records]
    completions = [[scorer.completion(rec, label) for label in labels] for rec, labels in zip(records, options)]

    def chosen(scores, labels) -> str:
        return max(zip(scores, labels))[1]

    def batch_chosen(indices, rows):
        on_batch(indices, [chosen(row, options[i]) for i, row in zip(indices, rows)])

    logliks = answer_logliks(model, tokenizer, prompts, completions, batch_size, f"{subset} loglik", engine,
                             on_batch=batch_chosen if on_batch else None)
    return [chosen(scores, labels) for scores, labels in zip(logliks, options)]


def score_predictions(subset: str, records: list[dict], predictions: list[str], prompts: list[str]):
    """(rows, summary) of options chosen by log-likelihood; the generation column holds the chosen response."""
    scorer = subset_scorer(subset)
    generations = [scorer.completion(rec, pred) for rec, pred in zip(records, predictions)]
    return scorer.score_answers(records, predictions, generations, prompts)


def score_by_loglik(model, tokenizer, subset: str, records: list[dict], prompts: list[str], batch_size: int,
                    engine: str = "prefill"):
    """(rows, summary) of a multiple-choice subset scored by its most likely offered answers."""
    predictions = loglik_predictions(model, tokenizer, subset, records, prompts, batch_size, engine)
    return score_predictions(subset, records, predictions, prompts)


def checkpoint_average(scores: dict) -> float | None:
    """The macro-average accuracy, or for a dialogue task its metrics' average."""
    average = mean_accuracy(scores)
    if average is None and len(scores) == 1:
        average = next(iter(scores.values())).get("average")
    return average


def decode_subset(model, tokenizer, subset: str, records: list[dict], eval_cfg, on_batch=None) -> list[str]:
    """The model's outputs for records: generated texts, or with mode=loglik the chosen labels; on_batch(indices,
    outputs) after each batch."""
    prompts = prompts_for(records)
    if eval_cfg.mode == "loglik":
        return loglik_predictions(model, tokenizer, subset, records, prompts, eval_cfg.batch_size, eval_cfg.engine,
                                  on_batch)
    return generate(model, tokenizer, prompts, eval_cfg.num_beams, eval_cfg.max_new_tokens, eval_cfg.batch_size,
                    desc=subset, engine=eval_cfg.engine, on_batch=on_batch)


def score_outputs(subset: str, records: list[dict], outputs: list[str], eval_cfg):
    """(per-example rows, summary) of a subset's outputs."""
    prompts = prompts_for(records)
    if eval_cfg.mode == "loglik":
        return score_predictions(subset, records, outputs, prompts)
    return score_generations(subset, records, outputs, prompts, BertScoreConfig(**eval_cfg.bertscore))


def setting_of(eval_cfg) -> dict:
    """The scoring setting (hira/run_dir.py) eval_cfg scores under."""
    return scoring_setting(eval_cfg.mode, eval_cfg.num_beams, eval_cfg.max_new_tokens, eval_cfg.limit)


def predictions_record(eval_cfg, checkpoint: str | None) -> dict:
    """What a predictions folder's rows are made under: the setting, the engine, and the weights (the checkpoint's
    manifest digest). Rows made under another are never mixed in."""
    return {"setting": setting_of(eval_cfg), "engine": eval_cfg.engine, "checkpoint": checkpoint}


def read_kept(out_dir: Path, tests: dict, eval_cfg, checkpoint: str | None) -> dict:
    """{subset: {question index: output}} an earlier scoring into out_dir wrote (rank 0 reads, every rank gets it);
    a refusal (damaged row, other settings) is raised on every rank."""
    if distributed.is_main():
        try:
            check_settings(out_dir, predictions_record(eval_cfg, checkpoint))
            read = {subset: kept_outputs(out_dir, subset, len(records), eval_cfg.mode)
                    for subset, records in tests.items()}
            for file, length in (repair for _, repairs in read.values() for repair in repairs):
                cut_short(file, length)  # only once every file read well: a refusal changes nothing
            found = ("ok", {subset: kept for subset, (kept, _) in read.items()})
        except UserError as e:
            found = ("error", str(e))
    else:
        found = None
    status, kept = distributed.broadcast_object(found)
    if status == "error":
        raise UserError(kept)
    return kept


def decode_missing(model, tokenizer, subset: str, records: list[dict], missing: list[int], eval_cfg,
                   out_dir: Path) -> list | None:
    """Decode the missing questions (each rank its shard), every batch appended to this rank's partial file;
    all their outputs in order on rank 0."""
    appender = Appender(out_dir, subset, distributed.rank())

    def decode(positions: list[int]) -> list[str]:
        questions = [missing[p] for p in positions]
        return decode_subset(model, tokenizer, subset, [records[i] for i in questions], eval_cfg,
                             lambda batch, outputs: appender.add([questions[b] for b in batch], outputs))

    return decode_sharded(decode, len(missing), subset)


def say_kept(out_dir: Path, kept: dict, tests: dict) -> None:
    done, total = sum(map(len, kept.values())), sum(map(len, tests.values()))
    if done and distributed.is_main():
        print(f"{out_dir}: kept {done} of {total} questions scored before, scoring the other {total - done}",
              flush=True)


def score_model(model, tokenizer, tests: dict, eval_cfg, out_dir: Path, checkpoint: str | None = None) -> dict | None:
    """Score a ready model on every test subset; per-example rows go to out_dir/<subset>.jsonl. Questions an
    earlier, interrupted scoring into out_dir decoded under the same settings are kept, not decoded again.

    Under several ranks each decodes a shard of every subset's missing questions; rank 0 writes the rows and returns
    the scores, the other ranks return None."""
    main = distributed.is_main()
    kept = read_kept(out_dir, tests, eval_cfg, checkpoint)
    say_kept(out_dir, kept, tests)
    missing = {subset: [i for i in range(len(records)) if i not in kept[subset]] for subset, records in tests.items()}
    scores, started = {}, time.perf_counter()
    announce_shard([len(m) for m in missing.values()])
    for subset, records in tests.items():
        new = decode_missing(model, tokenizer, subset, records, missing[subset], eval_cfg, out_dir)
        if main:
            outputs = {**kept[subset], **dict(zip(missing[subset], new))}
            rows, scores[subset] = score_outputs(subset, records, [outputs[i] for i in range(len(records))], eval_cfg)
            finish_subset(out_dir, subset, rows)
    seconds, decoded = time.perf_counter() - started, sum(map(len, missing.values()))
    log.info("scored %d questions in %d subsets in %.1f s (%.2f questions/s, %d ranks; %d kept from before)",
             decoded, len(tests), seconds, decoded / max(seconds, 1e-9), distributed.world_size(),
             sum(map(len, kept.values())))
    return scores if main else None


def evaluate_checkpoint(model, tokenizer, run: RunDir, run_cfg, ckpt: Path, tests: dict, eval_cfg) -> dict:
    """Score one checkpoint into `run` (the folder given, never the run_dir its config.yaml recorded)."""
    load_adapter(model, ckpt, run_cfg)
    merge(model)  # decode at base-model speed
    out_dir = run.predictions(scoring_id(setting_of(eval_cfg)), ckpt.name)
    return score_model(model, tokenizer, tests, eval_cfg, out_dir, weights_digest(ckpt))


# configs/eval.yaml's top-level scoring options (its `eval:` section adds mode, engine, bertscore, forgetting_text)
SCORING_OPTIONS = ("batch_size", "num_beams", "max_new_tokens", "subsets", "limit", "device")


def eval_settings(task_cfg, overrides: dict):
    """The settings of configs/eval.yaml (their one home) with `overrides`; null beams and tokens: the task's."""
    defaults = OmegaConf.load(CONFIG_DIR / "eval.yaml")
    eval_cfg = OmegaConf.create({**{k: defaults[k] for k in SCORING_OPTIONS}, "mode": defaults.eval.mode,
                                 "engine": defaults.eval.engine, "bertscore": defaults.eval.bertscore,
                                 "forgetting_text": defaults.eval.forgetting_text})
    eval_cfg.merge_with({k: v for k, v in overrides.items() if v is not None})
    eval_cfg.num_beams = eval_cfg.num_beams or task_cfg.num_beams
    eval_cfg.max_new_tokens = eval_cfg.max_new_tokens or task_cfg.max_new_tokens
    check_unless_handed_on(eval_cfg, "scoring", check_scoring)  # eval.py's check phase checked its own
    return eval_cfg


def select_tests(task_cfg, eval_cfg) -> dict:
    """The task's test subsets (eval_cfg.subsets, first eval_cfg.limit examples), each one we can score."""
    check_subsets(eval_cfg.subsets, task_cfg)
    tests = load_task(task_cfg).tests
    if eval_cfg.subsets:
        tests = {s: tests[s] for s in eval_cfg.subsets}
    if eval_cfg.limit:
        tests = {s: recs[: eval_cfg.limit] for s, recs in tests.items()}
    for subset in tests:
        subset_scorer(subset)  # fail before any decoding on a subset we cannot score
    return tests


def scores_entry(scores: dict) -> dict:
    """One scored checkpoint (or model) as scores.json keeps it under its setting."""
    return {"subsets": scores, "average": checkpoint_average(scores)}


def setting_block(all_scores: dict, eval_cfg) -> dict:
    """scores.json's entries of eval_cfg's scoring setting (created empty): {"setting", "scored", "best"}."""
    setting = setting_of(eval_cfg)
    return all_scores["scorings"].setdefault(scoring_id(setting), {"setting": setting, "scored": {}})


def record_scores(block: dict, name: str, scores: dict) -> None:
    """Add a checkpoint's subset scores to its entry under one setting (subsets scored before, e.g. with another
    subsets=, are kept beside them)."""
    old = block["scored"].get(name, {}).get("subsets", {})
    merged = {**old, **scores}
    block["scored"][name] = scores_entry(merged)
    if block.get("best", {}).get("checkpoint") == name:
        set_best(block, name)


def set_best(block: dict, name: str) -> None:
    """A setting's "best" entry: a copy of `name`'s entry that names it (what the paper tables read)."""
    block["best"] = {"checkpoint": name, **block["scored"][name]}


def print_scores(where, name: str, scores: dict, eval_cfg) -> None:
    print(f"\n{where} [{name}] {scoring_id(setting_of(eval_cfg))}\n{format_table(scores)}", flush=True)


def evaluate_run(run_dir: str | Path, checkpoints: str = "best", watch: bool = False, poll_s: float = 30,
                 watch_timeout_s: float | None = None, **overrides) -> dict:
    """Score the selected checkpoints of a run, or with watch=True every checkpoint as training writes it, under
    one scoring setting; everything is read from and written into run_dir (wherever the run was made).

    Returns scores.json's content (hira/run_dir.py): every setting's {"scored": {name: entry}, "best": ...}.
    """
    run_dir, started = Path(run_dir), time.perf_counter()
    run = RunDir(run_dir)
    wait_for_config(run.config, watch, poll_s, watch_timeout_s)
    run_cfg = run.load_config()
    eval_cfg = eval_settings(run_cfg.task, overrides)
    chosen = [] if watch else select_checkpoints(run.checkpoints, checkpoints)  # fail before loading data
    tests = select_tests(run_cfg.task, eval_cfg)
    if watch and distributed.launched_ranks() > 1:
        raise UserError("watch=true scores on one process; start it with python eval.py, not a launcher")
    device = rank_device(eval_cfg.device or run_cfg.hardware.device)
    join_ranks(device)

    all_scores = run.read_scores(own_scoring(run_cfg))
    block = setting_block(all_scores, eval_cfg)

    def score(ckpt: Path) -> None:
        model, tokenizer = load_adapted_model(run_cfg, device)
        scores = evaluate_checkpoint(model, tokenizer, run, run_cfg, ckpt, tests, eval_cfg)
        if not distributed.is_main():  # rank 0 gathered this rank's shard and writes
            return
        record_scores(block, ckpt.name, scores)
        mark = select_best(run, block) if watch else (ckpt.name if checkpoints == "best" else None)
        if mark:
            set_best(block, mark)
        write_json_atomic(run.scores, all_scores)
        print_scores(run_dir, ckpt.name, scores, eval_cfg)

    if watch:
        watch_checkpoints(run_dir, score, list(block["scored"]), poll_s, watch_timeout_s)
        if (mark := select_best(run, block)) is not None:  # the marker may have moved after the last score
            set_best(block, mark)
            write_json_atomic(run.scores, all_scores)
    else:
        for ckpt in chosen:
            score(ckpt)
    write_result(run_dir, run_cfg, scoring_id(setting_of(eval_cfg)), eval_cfg.forgetting_text,  # result.json
                 time.perf_counter() - started, device)
    return all_scores


def select_best(run: RunDir, block: dict) -> str | None:
    """The checkpoint training marked best (lowest validation loss), if it has been scored under this setting."""
    name = run.best_name()
    return name if name in block["scored"] else None

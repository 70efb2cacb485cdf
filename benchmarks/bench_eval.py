"""Scoring speed side by side in one run, on the same questions and model:

    hf_batch1   transformers' generate at batch 1 (how the LLM-Adapters evaluation script scores)
    hf_batched  transformers' generate batched, in the subset's order (eval.engine=hf: scoring before prefill)
    hf_sorted   the same, batched longest first (what length sorting alone gives)
    prefill@N   eval.engine=prefill at batch N: each prompt encoded once, its cache repeated across the beams,
                batched longest first
    loglik: one forward pass per answer option (eval.engine=hf, batch counts pairs) against one prompt pass per
            question (eval.engine=prefill, batch counts questions)

    hira-bench-eval                                   # SmolLM2, 64 questions, beam 4, 32 new tokens (the paper's)
    hira-bench-eval --questions 16 --skip hf_batch1   # a quick look
    hira-bench-eval --prefill-batch-sizes 8,16,32 --skip hf_batch1,hf_batched,hf_sorted,loglik   # prefill's batch
    (or python scripts/bench_eval.py, same arguments)

The questions are the eight commonsense subsets' LLM-Adapters formats (their instruction templates, option labels
and counts) with text drawn from a fixed word list at the lengths of the real test sets' questions and options;
the mean prompt tokens per subset are printed. Every variant must predict the same tokens (and loglik the same
options); the report says whether they did. Memory is the peak resident set above the variant's start (sampled
every 10 ms, after glibc's malloc_trim has returned the previous variant's freed memory) on CPU,
torch.cuda.max_memory_allocated above the start on CUDA. On a shared machine, compare rows of one run.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import random
import resource
import threading
import time

import torch

from hira.data.templates import alpaca_prompt
from hira.evaluation.answers import answer_completion, offered_labels
from hira.evaluation.generation import answer_logliks, generate

# Per subset: (instruction template, option label, options, words in the question, words per option), lengths
# set to the real test sets' typical questions and options (BoolQ as LLM-Adapters asks it: the question alone).
FORMATS = {
    "boolq": ("Please answer the following question with true or false, question: {q}?\n\n"
              "Answer format: true/false", None, 2, 9, 0),
    "piqa": ("Please choose the correct solution to the question: {q}\n\n{options}\n\nAnswer format: {labels}",
             "solution", 2, 8, 18),
    "siqa": ("Please choose the correct answer to the question: {q}\n\n{options}\n\nAnswer format: {labels}",
             "answer", 3, 22, 4),
    "hellaswag": ("Please choose the correct ending to complete the given sentence: {q}\n\n{options}\n\n"
                  "Answer format: {labels}", "ending", 4, 38, 18),
    "winogrande": ("Please choose the correct answer to fill in the blank to complete the given sentence: {q}\n\n"
                   "{options}\n\nAnswer format: {labels}", "option", 2, 20, 1),
    "arc_e": ("Please choose the correct answer to the question: {q}\n\n{options}\n\nAnswer format: {labels}",
              "answer", 4, 20, 4),
    "arc_c": ("Please choose the correct answer to the question: {q}\n\n{options}\n\nAnswer format: {labels}",
              "answer", 4, 23, 5),
    "obqa": ("Please choose the correct answer to the question: {q}\n\n{options}\n\nAnswer format: {labels}",
             "answer", 4, 11, 4),
}
SEPARATE_LINES = {"piqa", "winogrande"}  # options on their own lines in LLM-Adapters; the others on one line
WORDS = ("the a of and to in is that it for was on are as with his they at be this from have or by one had not but "
         "what all were when we there can an your which their said if do will each about how up out them then she "
         "many some so these would other into has more her two like him see time could no make than first been its "
         "who now people my made over did down only way find use may water long little very after words called just "
         "where most know get through back much before go good new write our used me man too any day same right look "
         "think also around another came come work three word must because does part even place well such here take "
         "why things help put years different away again off went old number great tell men say small every found "
         "still between name should home big give air line set own under read last never us left end along while "
         "might next sound below saw something thought both few those always looked show large often together asked "
         "house world going want school important until form food keep children feet land side without boy once "
         "animals life enough took sometimes four head above kind began almost live page got earth need far hand high "
         "year mother light parts country father let night following picture being study second eyes soon times story "
         "boys since white days ever paper hard near sentence better best across during today others however sure "
         "means knew try told young miles sun ways thing whole hear example heard several change answer room sea "
         "against top turned learn point city play toward five using himself usually money seen car morning body "
         "upon family later turn move face door cut done group true half red fish plants").split()
SKIPPABLE = ("hf_batch1", "hf_batched", "hf_sorted", "prefill", "loglik")  # --skip's names


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", default=None, help="a causal LM folder (default: SmolLM2-135M, converted once)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--questions", type=int, default=64, help="spread evenly over the eight subsets")
    p.add_argument("--num-beams", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32, help="the paper's for commonsense")
    p.add_argument("--batch1-questions", type=int, default=None,
                   help="hf_batch1 on this many of the questions, evenly spaced (default: all); its rate is per question")
    p.add_argument("--batch-size", type=int, default=16, help="hf_batched's, hf_sorted's and hf loglik's")
    p.add_argument("--prefill-batch-sizes", default="16", help="comma list: prefill and prefill loglik at each")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--skip", default="", help=f"comma list of {','.join(SKIPPABLE)}")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.prefill_batch_sizes = [int(b) for b in args.prefill_batch_sizes.split(",")]
    args.skip = {s for s in args.skip.split(",") if s}
    if args.skip - set(SKIPPABLE):
        p.error(f"--skip {','.join(sorted(args.skip - set(SKIPPABLE)))}: no such variant; valid: {', '.join(SKIPPABLE)}")
    return args


# ---------------------------------------------------------------- questions


def filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def question_record(subset: str, rng: random.Random) -> dict:
    """An LLM-Adapters record of `subset`'s format whose text is filler at the real questions' lengths."""
    template, label, n_options, q_words, option_words = FORMATS[subset]
    if label is None:  # boolq
        return record(template.format(q=filler(rng, q_words)), rng.choice(["true", "false"]))
    options = [filler(rng, max(1, round(option_words * rng.uniform(0.6, 1.4)))) for _ in range(n_options)]
    sep = "\n\n" if subset in SEPARATE_LINES else " "
    listing = sep.join(f"{label.capitalize()}{i + 1}: {text}" for i, text in enumerate(options))
    labels = "/".join(f"{label}{i + 1}" for i in range(n_options))
    question = filler(rng, max(3, round(q_words * rng.uniform(0.6, 1.4))))
    return record(template.format(q=question, options=listing, labels=labels), f"{label}{rng.randint(1, n_options)}")


def record(instruction: str, answer: str) -> dict:
    return {"instruction": instruction, "input": "", "output": f"the correct answer is {answer}", "answer": answer}


def benchmark_questions(n: int, seed: int) -> list[tuple[str, dict]]:
    """n (subset, record) pairs, the subsets taking turns."""
    rng = random.Random(seed)
    subsets = list(FORMATS)
    return [(subsets[i % len(subsets)], question_record(subsets[i % len(subsets)], rng)) for i in range(n)]


def prompt_lengths(tokenizer, questions) -> dict[str, float]:
    """Mean prompt tokens per subset."""
    per_subset = {}
    for subset, record in questions:
        per_subset.setdefault(subset, []).append(len(tokenizer(alpaca_prompt(record["instruction"]))["input_ids"]))
    return {s: sum(v) / len(v) for s, v in per_subset.items()}


# ---------------------------------------------------------------- measuring


class PeakMemory:
    """Peak memory of a block above its start: the resident set sampled every 10 ms (CPU), or CUDA's allocator."""

    def __init__(self, device: str):
        self.device, self.peak, self.running = device, 0, False

    def rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss() - self.start)
            time.sleep(0.01)

    def __enter__(self):
        release_freed_memory()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            self.start, self.running = self.rss(), True
            self.thread = threading.Thread(target=self.sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.running = False
            self.thread.join()
        return False


def release_freed_memory() -> None:
    """Give the memory freed by the previous variant back to the OS (glibc keeps it otherwise, and the next
    variant would reuse it unseen by the resident set)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc: the resident set may then under-count a later variant
        pass


def timed(run, device: str) -> tuple[object, dict]:
    """(run()'s result, {"seconds", "cpu_seconds", "peak_mib"})."""
    if device == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    with PeakMemory(device) as memory:
        result = run()
        if device == "cuda":
            torch.cuda.synchronize()
    return result, {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                    "peak_mib": memory.peak / 2**20}


def generation_variants(args) -> dict[str, dict]:
    """name -> generate() settings of each decoding variant measured."""
    variants = {"hf_batch1": dict(batch_size=1, engine="hf", sort=False),
                "hf_batched": dict(batch_size=args.batch_size, engine="hf", sort=False),
                "hf_sorted": dict(batch_size=args.batch_size, engine="hf", sort=True)}
    variants.update({f"prefill@{b}": dict(batch_size=b, engine="prefill", sort=True) for b in args.prefill_batch_sizes})
    return {name: v for name, v in variants.items() if name.split("@")[0] not in args.skip}


def batch1_share(n: int, args) -> list[int]:
    """The questions hf_batch1 decodes: every k-th, for a rate per question at a fraction of batch 1's time."""
    step = max(1, n // (args.batch1_questions or n))
    return list(range(0, n, step))[: args.batch1_questions or n]


def measure_generation(model, tokenizer, prompts: list[str], args) -> dict[str, dict]:
    rows = {}
    for name, settings in generation_variants(args).items():
        chosen = batch1_share(len(prompts), args) if name == "hf_batch1" else list(range(len(prompts)))
        outputs, row = timed(lambda: generate(model, tokenizer, [prompts[i] for i in chosen], args.num_beams,
                                              args.max_new_tokens, desc=name, **settings), args.device)
        rows[name] = {**row, **settings, "outputs": dict(zip(chosen, outputs)), "n": len(chosen)}
        print(f"  {name}: {len(chosen)} questions in {row['seconds']:.1f} s", flush=True)
    return rows


def measure_loglik(model, tokenizer, questions, args) -> dict[str, dict]:
    prompts = [alpaca_prompt(r["instruction"]) for _, r in questions]
    options = [[answer_completion(r, label) for label in offered_labels(s, r)] for s, r in questions]
    runs = {"loglik hf": dict(batch_size=args.batch_size, engine="hf")}
    runs.update({f"loglik prefill@{b}": dict(batch_size=b, engine="prefill") for b in args.prefill_batch_sizes})
    rows = {}
    for name, settings in runs.items():
        scores, row = timed(lambda: answer_logliks(model, tokenizer, prompts, options, desc=name, **settings),
                            args.device)
        choices = [max(range(len(s)), key=s.__getitem__) for s in scores]
        rows[name] = {**row, **settings, "outputs": dict(enumerate(choices)), "scores": scores, "n": len(prompts)}
        print(f"  {name}: {row['seconds']:.1f} s", flush=True)
    return rows


# ---------------------------------------------------------------- report


def rate(row: dict, clock: str = "seconds") -> float:
    return row["n"] / row[clock]


def same_outputs(row: dict, baseline: dict) -> bool:
    """The questions both decoded got the same output."""
    return all(baseline["outputs"][i] == out for i, out in row["outputs"].items() if i in baseline["outputs"])


def report_lines(rows: dict[str, dict], baseline: str) -> list[str]:
    """One line per variant: questions, questions/s by the wall clock and by CPU time, peak memory, speed-up over
    the baseline (wall; CPU time) and whether its outputs are the baseline's."""
    lines = [f"{'variant':<20} {'batch':>5} {'n':>4} {'q/s':>7} {'wall s':>8} {'cpu s':>8} {'q/cpu-s':>8} "
             f"{'peak MiB':>9} {'x ' + baseline + ' wall; cpu':>22} {'same':>5}"]
    base = rows.get(baseline)
    for name, row in rows.items():
        ratios = f"{rate(row) / rate(base):.2f}x; {rate(row, 'cpu_seconds') / rate(base, 'cpu_seconds'):.2f}x" \
            if base else "-"
        same = "yes" if base and same_outputs(row, base) else "NO"
        lines.append(f"{name:<20} {row['batch_size']:>5} {row['n']:>4} {rate(row):>7.3f} {row['seconds']:>8.1f} "
                     f"{row['cpu_seconds']:>8.1f} {rate(row, 'cpu_seconds'):>8.3f} {row['peak_mib']:>9.0f} "
                     f"{ratios:>22} {same:>5}")
    return lines


def loglik_gap(rows: dict[str, dict]) -> float:
    """Largest |prefill - hf| option log-likelihood over the run."""
    hf = rows.get("loglik hf")
    gaps = [abs(a - b) for name, row in rows.items() if name != "loglik hf" and hf
            for sa, sb in zip(row["scores"], hf["scores"]) for a, b in zip(sa, sb)]
    return max(gaps, default=0.0)


def mean_answer_tokens(tokenizer, row: dict) -> float:
    """Mean tokens of a variant's decoded answers: beam search stops early once each question's beams have ended,
    so this says how much of max_new_tokens the questions really decoded."""
    answers = list(row["outputs"].values())
    return sum(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) / max(1, len(answers))


def load_model(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = args.model_path
    if path is None:
        from omegaconf import OmegaConf

        from hira.checkout import CONFIG_DIR
        from hira.models.loading import ensure_model

        cfg = OmegaConf.load(CONFIG_DIR / "model" / "smollm2_135m.yaml")
        cfg.cache_path = str(CONFIG_DIR.parent / cfg.cache_path)
        path = ensure_model(cfg)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype)).to(args.device).eval()
    return model, AutoTokenizer.from_pretrained(path), str(path)


def measure(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer, path = load_model(args)
    questions = benchmark_questions(args.questions, args.seed)
    prompts = [alpaca_prompt(r["instruction"]) for _, r in questions]
    lengths = prompt_lengths(tokenizer, questions)
    print(f"model {path} ({args.dtype}, {args.device}, {torch.get_num_threads()} threads), {len(prompts)} questions, "
          f"beam {args.num_beams}, {args.max_new_tokens} new tokens, load average {os.getloadavg()[0]:.1f}")
    print("mean prompt tokens: " + ", ".join(f"{s} {v:.0f}" for s, v in lengths.items())
          + f"; all {sum(len(tokenizer(p)['input_ids']) for p in prompts) / len(prompts):.0f}", flush=True)
    generation = measure_generation(model, tokenizer, prompts, args)
    loglik = {} if "loglik" in args.skip else measure_loglik(model, tokenizer, questions, args)
    lines = ["", "generation (beam search), questions/s:"]
    lines += report_lines(generation, "hf_batched" if "hf_batched" in generation else next(iter(generation), ""))
    if generation:
        first = next(iter(generation.values()))
        lines.append(f"mean answer tokens: {mean_answer_tokens(tokenizer, first):.1f} of {args.max_new_tokens} "
                     "new tokens at most")
    if "hf_batch1" in generation:
        lines += ["", "against hf_batch1:"] + report_lines(generation, "hf_batch1")
    if loglik:
        lines += ["", "log-likelihood scoring, questions/s:"] + report_lines(loglik, "loglik hf")
        lines.append(f"largest |prefill - hf| option log-likelihood: {loglik_gap(loglik):.2e}")
    print("\n".join(lines), flush=True)
    return {"generation": generation, "loglik": loglik, "prompt_tokens": lengths}


def main(argv=None) -> None:
    """hira-bench-eval: the report on stdout (a console script's return value is its exit status)."""
    measure(argv)

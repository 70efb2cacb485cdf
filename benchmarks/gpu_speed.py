"""hira-gpu-check's speed sections: one training step per method on single linears and on a 2-layer
Llama-3-8B-shaped model (hira-bench-adapters), and scoring speed, transformers' batched generate against
eval.engine=prefill (hira-bench-eval). Driver and sizes: benchmarks/gpu_sections.py."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_adapters as bench
from hira.checkout import CONFIG_DIR


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
    """hf_batched (transformers' batched generate) against prefill (eval.engine=prefill), in bf16, on
    hira-bench-eval's questions."""
    from benchmarks import bench_eval

    batch = str(args.eval_batch_size)
    rows = bench_eval.measure(["--model-path", str(eval_model_folder(args)), "--device", args.device,
                               "--dtype", "bfloat16", "--questions", str(args.size["eval_questions"]),
                               "--max-new-tokens", str(args.size["eval_tokens"]), "--batch-size", batch,
                               "--prefill-batch-sizes", batch, "--skip", "hf_batch1,hf_sorted,loglik"])["generation"]
    hf, prefill = rows["hf_batched"], rows[f"prefill@{batch}"]
    return {"questions": hf["n"], "num_beams": 4, "max_new_tokens": args.size["eval_tokens"], "batch_size": batch,
            "hf_questions_per_s": bench_eval.rate(hf), "prefill_questions_per_s": bench_eval.rate(prefill),
            "prefill_over_hf": bench_eval.rate(prefill) / bench_eval.rate(hf), "hf_peak_mib": hf["peak_mib"],
            "prefill_peak_mib": prefill["peak_mib"], "same_tokens": same_fraction(prefill["outputs"], hf["outputs"])}


def same_fraction(outputs: dict, reference: dict) -> float:
    """The fraction of questions decoded to the same text (bf16 rounds a split prefill differently, so near-ties
    may flip; in fp32 the tests require all)."""
    return sum(outputs[i] == reference[i] for i in reference) / max(len(reference), 1)

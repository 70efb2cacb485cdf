"""Side-by-side cost of HiRA (ours fused / unfused, peft's), LoRA, DoRA and full fine-tuning.

    hira-bench-adapters                       # CPU, small token counts: about 2 minutes
    hira-bench-adapters --tokens 2048 --batch 4 --seq 512 --hidden 2048 --inter 5632
    hira-bench-adapters --device cuda          # bf16 base weights, Llama-3-8B-sized token counts
    (or python scripts/bench_adapters.py, same arguments)

One run measures, per method, the time of a training step (forward + backward + AdamW step) and its peak memory, for (a) single linear layers of Llama-3-8B shapes and (b) a whole small
Llama; then merged-HiRA decoding throughput against the base model, and training tokens/s with and without
length-grouped batching. Step times are the best (--stat min, the CPU default) or the median (--stat median, the
CUDA default) of --reps after --warmup, with the methods taking turns, so that load from other processes hits all
of them alike (min on a shared CPU: such noise only ever adds; median on a dedicated GPU). On CPU the
clock is the process's CPU time (--clock cpu): with one torch thread that is the step's compute, whatever share
of a core the process got; on an idle machine it equals wall time. Peak memory on CUDA is torch.cuda.max_memory_allocated; on CPU it is the largest total
of live tensor bytes in torch's profiler memory timeline of one extra step (weights, optimizer state, grads,
activations and temporaries; the allocator's own caching is not counted). Timings taken on a shared machine
are noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import torch
from torch import nn

from hira.adapters import adapter_layers, apply, merge
from hira.training import batches

METHODS = ["hira (ours, fused)", "hira (ours, unfused)", "peft hira", "peft lora", "peft dora", "full FT"]
LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"]  # the paper's HiRA targets, for every method


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default=None, help="base weight dtype (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.0, help="0 gives LoRA its cheapest step (paper: 0.05)")
    p.add_argument("--shapes", default="4096x4096,4096x14336", help="single linears as in_features x out_features")
    p.add_argument("--tokens", type=int, default=None, help="tokens per single-linear step (CPU 256, CUDA 4096)")
    p.add_argument("--hidden", type=int, default=None, help="small Llama hidden size (CPU 1024, CUDA 4096)")
    p.add_argument("--inter", type=int, default=None, help="small Llama MLP size (CPU 2816, CUDA 14336)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=None, help="attention heads (default: hidden / 128)")
    p.add_argument("--kv-heads", type=int, default=None, help="key/value heads, < heads for GQA (default: heads)")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--batch", type=int, default=None, help="sequences per small-Llama step (CPU 2, CUDA 4)")
    p.add_argument("--seq", type=int, default=None, help="sequence length of a small-Llama step (CPU 128, CUDA 512)")
    p.add_argument("--decode-tokens", type=int, default=32)
    p.add_argument("--group-examples", type=int, default=32, help="examples in the length-grouping epoch")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--stat", default=None, choices=["min", "median"], help="of the timed reps (CPU min, CUDA median)")
    p.add_argument("--threads", type=int, default=None, help="torch threads on CPU (default: torch's)")
    p.add_argument("--clock", default=None, choices=["cpu", "wall"],
                   help="cpu: process CPU time, blind to waiting for a core on a shared machine (CPU default); "
                        "wall: elapsed time (CUDA default)")
    p.add_argument("--skip", default="", help="comma list of parts to skip: linear,model,decode,grouping")
    args = p.parse_args(argv)
    gpu = args.device == "cuda"
    defaults = dict(clock="wall" if gpu else "cpu", stat="median" if gpu else "min",
                    dtype="bfloat16" if gpu else "float32", tokens=4096 if gpu else 256, hidden=4096 if gpu else 1024,
                    inter=14336 if gpu else 2816, batch=4 if gpu else 2, seq=512 if gpu else 128)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.heads = args.heads or max(1, args.hidden // 128)
    args.kv_heads = args.kv_heads or args.heads
    args.dtype = getattr(torch, args.dtype)
    return args


# ---------------------------------------------------------------- methods


def with_method(model: nn.Module, method: str, targets: list[str], args) -> nn.Module:
    """model (modified in place) with `method` on the linear layers named in targets; everything else frozen."""
    from peft import HiraConfig, LoraConfig, inject_adapter_in_model

    r = args.rank
    if method == "full FT":
        return model.requires_grad_(True)
    if method.startswith("hira (ours"):
        return apply(model, "hira", targets, r=r, fused="unfused" not in method)
    config = {"peft hira": HiraConfig(r=r, target_modules=targets),
              "peft lora": LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=args.lora_dropout, target_modules=targets),
              "peft dora": LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=args.lora_dropout, target_modules=targets,
                                      use_dora=True)}[method]
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():  # train the adapters only, in fp32 as ours are
        param.requires_grad = any(k in name for k in ("lora_", "hira_"))
        if param.requires_grad:
            param.data = param.data.float()
    return model


class OneLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, dtype, device):
        super().__init__()
        self.proj = nn.Linear(in_features, out_features, bias=False, dtype=dtype, device=device)

    def forward(self, x):
        return self.proj(x)


def small_llama(args, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.inter,
                         num_hidden_layers=args.layers, num_attention_heads=args.heads,
                         num_key_value_heads=args.kv_heads,
                         max_position_embeddings=max(args.seq, 256) + args.decode_tokens, pad_token_id=0)
    with torch.device(args.device):  # initialised where it runs: an 8B-wide layer takes seconds on a CPU
        return LlamaForCausalLM(config).to(dtype=args.dtype)


# ---------------------------------------------------------------- measuring


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds(fn, device: str, clock: str) -> float:
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def best_of_turns(fns: dict, args, warmup: int, reps: int) -> dict[str, float]:
    """name -> fastest (or median, args.stat) of reps timed calls, the fns taking turns after warmup calls each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(seconds(fn, args.device, args.clock))
    pick = min if args.stat == "min" else statistics.median
    return {name: pick(t) for name, t in times.items()}


def peak_bytes(fn, device: str) -> int:
    """Peak live tensor bytes during one fn() call (see the module docstring for how, per device)."""
    if device == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats()
        fn()
        sync(device)
        return torch.cuda.max_memory_allocated()
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    return max(sum(s) for s in sizes)


def release(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def train_step(model, loss_fn):
    """fwd + bwd + AdamW step on the trainable parameters."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step():
        loss_fn(model).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def measure_methods(build, loss_fn, args) -> dict[str, tuple[float, int]]:
    """method -> (best step seconds, peak bytes); each method gets a fresh model from build()."""
    peaks = {}
    for method in METHODS:  # memory: one method at a time, so nothing else is resident
        step = train_step(with_method(build(), method, build.targets, args), loss_fn)
        step()  # the AdamW state exists before measuring
        peaks[method] = peak_bytes(step, args.device)
        del step
        release(args.device)
    steps = {method: train_step(with_method(build(), method, build.targets, args), loss_fn) for method in METHODS}
    times = best_of_turns(steps, args, max(1, args.warmup), args.reps)
    del steps
    release(args.device)
    return {method: (times[method], peaks[method]) for method in METHODS}


def single_linear_results(args, in_features: int, out_features: int):
    gen = torch.Generator(device=args.device).manual_seed(0)
    x = torch.randn(args.tokens, in_features, generator=gen, device=args.device, dtype=args.dtype)
    x.requires_grad_()  # a layer inside the network: the input gradient is needed too
    grad_out = torch.randn(args.tokens, out_features, generator=gen, device=args.device, dtype=args.dtype)

    def build():
        torch.manual_seed(0)
        return OneLinear(in_features, out_features, args.dtype, args.device)
    build.targets = ["proj"]

    def loss_fn(model):
        x.grad = None
        return (model(x) * grad_out).sum()
    return measure_methods(build, loss_fn, args)


def whole_model_results(args):
    ids = torch.randint(0, args.vocab, (args.batch, args.seq), generator=torch.Generator().manual_seed(0))
    ids = ids.to(args.device)

    def build():
        return small_llama(args)
    build.targets = LLAMA_TARGETS
    return measure_methods(build, lambda model: model(input_ids=ids, labels=ids).loss, args)


def decoding_results(args) -> list[tuple[str, float]]:
    """(variant, generated tokens/s); base and HiRA runs alternate so machine noise hits both alike."""
    prompt = torch.randint(1, args.vocab, (1, 16), generator=torch.Generator().manual_seed(1)).to(args.device)
    base = small_llama(args).eval()
    hira = apply(small_llama(args), "hira", LLAMA_TARGETS, r=args.rank).eval()
    for layer in adapter_layers(hira).values():  # a trained-looking adapter, so the merge changes the weights
        nn.init.normal_(layer.hira_B, std=0.02)
    unmerged = apply(small_llama(args), "hira", LLAMA_TARGETS, r=args.rank).eval()
    merged = merge(hira)
    n = args.decode_tokens

    def generate(model):
        with torch.no_grad():
            model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=n, min_new_tokens=n,
                           do_sample=False, pad_token_id=0)

    variants = {"base model": base, "hira merged": merged, "hira unmerged (fused op)": unmerged}
    times = best_of_turns({name: lambda m=model: generate(m) for name, model in variants.items()}, args, 1,
                          max(3, args.reps))
    return [(name, n / t) for name, t in times.items()]


def grouping_results(args) -> list[tuple[str, float, float]]:
    """(batching, padding fraction, real tokens/s) training fused HiRA on one epoch of mixed-length examples."""
    gen = torch.Generator().manual_seed(2)
    n, global_batch, micro = args.group_examples, 16, 4
    # instruction data is long-tailed: most examples short, a few near the cutoff
    lengths = (torch.empty(n).log_normal_(0, 0.6, generator=gen) * args.seq / 3).clamp(8, args.seq).long().tolist()
    examples = [torch.randint(1, args.vocab, (length,), generator=gen) for length in lengths]
    model = apply(small_llama(args), "hira", LLAMA_TARGETS, r=args.rank)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def epoch(order):
        for step in range(batches.steps_per_epoch(n, global_batch)):
            for ids in batches.micro_batches_for_rank(order, step, global_batch, micro, 0, 1):
                rows = [examples[i] for i in ids]
                padded = nn.utils.rnn.pad_sequence(rows, batch_first=True).to(args.device)
                mask = (torch.arange(padded.shape[1]) < torch.tensor([len(r) for r in rows])[:, None]).long()
                labels = padded.masked_fill(mask.to(args.device) == 0, -100)
                model(input_ids=padded, attention_mask=mask.to(args.device), labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    orders = {name: batches.epoch_order(n, 0, 0, grouped, global_batch)
              for name, grouped in (("random order", None), ("grouped by length", tuple(lengths)))}
    # two turns each, the first also warming up: an epoch is long enough that a separate warmup would double it
    times = best_of_turns({name: lambda o=order: epoch(o) for name, order in orders.items()}, args, 0, 2)
    n_trained = batches.steps_per_epoch(n, global_batch) * global_batch
    return [(name, batches.padding_fraction(order, lengths, global_batch, micro),
             sum(lengths[i] for i in order[:n_trained]) / times[name]) for name, order in orders.items()]


# ---------------------------------------------------------------- reporting


def ratios(results: dict[str, tuple[float, int]]) -> list[dict[str, float]]:
    """Per method (in order): step time over LoRA's and over peft HiRA's, peak memory over LoRA's."""
    lora_s, lora_b = results["peft lora"]
    peft_hira_s = results["peft hira"][0]
    return [{"x_lora_time": seconds / lora_s, "x_peft_hira_time": seconds / peft_hira_s, "x_lora_memory": peak / lora_b}
            for seconds, peak in results.values()]


def method_table(title: str, results: dict[str, tuple[float, int]]) -> list[str]:
    lines = [f"### {title}", "",
             "| method | step ms | × LoRA time | × peft HiRA time | peak MiB | × LoRA memory |",
             "|---|---:|---:|---:|---:|---:|"]
    for (method, (seconds, peak)), r in zip(results.items(), ratios(results)):
        lines.append(f"| {method} | {seconds * 1e3:.1f} | {r['x_lora_time']:.2f} | {r['x_peft_hira_time']:.2f} "
                     f"| {peak / 2**20:.1f} | {r['x_lora_memory']:.2f} |")
    return lines + [""]


def machine(args) -> str:
    import platform

    if args.device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} torch threads"


def measure(argv=None) -> dict:
    """Run every part not skipped; prints the markdown report and returns it ("text") with the raw results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    results, out = {"linear": {}}, []

    def emit(lines):
        out.extend(lines)
        print("\n".join(lines), flush=True)

    emit([f"## bench_adapters: {machine(args)}, torch {torch.__version__}, base {str(args.dtype)[6:]}, "
          f"r={args.rank}, LoRA/DoRA dropout {args.lora_dropout}, {args.clock} clock, {args.stat} of {args.reps}", ""])
    if "linear" not in skip:
        for shape in args.shapes.split(","):
            in_f, out_f = map(int, shape.lower().split("x"))
            results["linear"][shape] = single_linear_results(args, in_f, out_f)
            emit(method_table(f"(a) one linear {in_f}→{out_f}, {args.tokens} tokens", results["linear"][shape]))
    if "model" not in skip:
        results["model"] = whole_model_results(args)
        emit(method_table(f"(b) small Llama step: {args.layers} layers, hidden {args.hidden}, MLP {args.inter}, "
                          f"{args.heads} heads ({args.kv_heads} KV), "
                          f"vocab {args.vocab}, {args.batch}×{args.seq} tokens, targets {','.join(LLAMA_TARGETS)}",
                          results["model"]))
    if "decode" not in skip:
        results["decode"] = rows = decoding_results(args)
        emit([f"### (c) greedy decoding, batch 1, {args.decode_tokens} new tokens (small Llama above)", "",
              "| model | tokens/s | × base |", "|---|---:|---:|"]
             + [f"| {name} | {tps:.1f} | {tps / rows[0][1]:.3f} |" for name, tps in rows] + [""])
    if "grouping" not in skip:
        results["grouping"] = rows = grouping_results(args)
        emit([f"### (d) training fused HiRA on {args.group_examples} examples of mixed length (≤ {args.seq}), "
              "global batch 16, micro batch 4", "",
              "| batching | padding | real tokens/s |", "|---|---:|---:|"]
             + [f"| {name} | {pad:.1%} | {tps:.0f} |" for name, pad, tps in rows] + [""])
    results["text"] = "\n".join(out)
    return results


def main(argv=None) -> None:
    """hira-bench-adapters: the report on stdout (a console script's return value is its exit status)."""
    measure(argv)

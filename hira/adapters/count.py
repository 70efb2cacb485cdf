"""Trainable parameters of a method on a model, counted on the meta device (no weights, no memory).

    python -m hira.adapters.count model=llama3_8b method=mora        (or hira-count-params, same arguments)
    python -m hira.adapters.count --all model=smollm2_135m           (every method at its defaults, one table)

The percentage is trainable / (base + method) parameters, the convention behind the paper's Params (%) column
(LoRA r=32 on Llama-3-8B: 56,623,104 / (8,030,261,248 + 56,623,104) = 0.7002 %). The architecture comes from
model.path/config.json when the weights are there, else from the published configs below, so the paper's models
can be counted on a machine without them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

from hira.errors import UserError, report_user_errors
from hira.adapters.params import method_params

# The published config.json architecture fields of the paper's base models (by hub id).
ARCHITECTURES = {
    "meta-llama/Meta-Llama-3-8B": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                                       num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                                       max_position_embeddings=8192, rope_theta=500000.0, tie_word_embeddings=False),
    "meta-llama/Llama-2-7b-hf": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                     num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                                     max_position_embeddings=4096, tie_word_embeddings=False),
    "HuggingFaceTB/SmolLM2-135M-Instruct": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                                                num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                                                max_position_embeddings=8192, rope_theta=100000.0,
                                                tie_word_embeddings=True),
}

# The paper's Params (%) column (Table 1, Llama-3-8B): (model, method, r) -> %.
PAPER_PERCENT = {("llama3_8b", "lora", 32): 0.7002, ("llama3_8b", "dora", 32): 0.7002,
                 ("llama3_8b", "hira", 32): 0.7002, ("llama3_8b", "hira", 16): 0.3513,
                 ("llama3_8b", "mora", 32): 0.6997}


@dataclass
class Count:
    trainable: int
    total: int  # base + method parameters, each shared tensor once

    @property
    def percent(self) -> float:
        return 100 * self.trainable / self.total


def model_config(model_cfg):
    """The transformers config of model_cfg: from its folder if present, else the published architecture."""
    from pathlib import Path

    from transformers import AutoConfig, LlamaConfig

    path = Path(model_cfg.path).expanduser()
    if (path / "config.json").is_file():
        return AutoConfig.from_pretrained(path)
    if model_cfg.get("hub_id") in ARCHITECTURES:
        return LlamaConfig(**ARCHITECTURES[model_cfg.hub_id])
    raise UserError(f"model {model_cfg.name}: no config.json in model.path={model_cfg.path} and no known architecture"
                    f" (known: {', '.join(ARCHITECTURES)}); build or download the model first")


def count(model_config_obj, method: str, target_modules, **params) -> Count:
    """Build the model on the meta device, apply the method, count."""
    from transformers import AutoModelForCausalLM

    from hira.adapters import apply

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config_obj)
        model = apply(model, method, target_modules, **params)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return Count(trainable, sum(p.numel() for p in model.parameters()))


def count_from_config(cfg) -> Count:
    return count(model_config(cfg.model), cfg.method.name, list(cfg.method.get("target_modules") or []),
                 **method_params(cfg.method))


def paper_percent(cfg) -> float | None:
    return PAPER_PERCENT.get((cfg.model.name, cfg.method.name, method_params(cfg.method).get("r")))


def compose_config(overrides: list[str]):
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    configs = Path(__file__).resolve().parents[2] / "configs"
    with initialize_config_dir(config_dir=str(configs), version_base="1.3"):
        return compose("train", overrides=overrides)


def method_table(overrides: list[str]) -> list[tuple[str, dict, Count]]:
    """(method, its params, its count) for every registered method at its config defaults on one model."""
    from hira.adapters import all_methods

    rows = []
    for method in all_methods():
        cfg = compose_config([f"method={method}", *overrides])
        rows.append((method, method_params(cfg.method), count_from_config(cfg)))
    return rows


def format_table(rows: list[tuple[str, dict, Count]]) -> str:
    """Markdown: the paper's % (of base + method) and the % of the base model alone."""
    lines = ["| method | params | trainable | % of base + method | % of base |", "|---|---|---:|---:|---:|"]
    for method, params, result in rows:
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if v is not None)
        base = result.total - result.trainable if method != "full" else result.total  # full: the base *is* trainable
        lines.append(f"| {method} | {shown or '—'} | {result.trainable:,} | {result.percent:.4f} | "
                     f"{100 * result.trainable / base:.4f} |")
    return "\n".join(lines)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--all" in args:
        args.remove("--all")
        print(format_table(method_table(args)))
        return
    cfg = compose_config(args)
    result = count_from_config(cfg)
    paper = paper_percent(cfg)
    print(f"{cfg.method.name} on {cfg.model.name}: trainable {result.trainable:,} of {result.total:,} "
          f"({result.percent:.4f} %)" + (f"; paper {paper:.4f} %" if paper is not None else ""))


if __name__ == "__main__":
    main()

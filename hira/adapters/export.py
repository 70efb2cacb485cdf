"""Export our LoRA, DoRA, VeRA and HiRA adapters as peft adapter folders (`PeftModel.from_pretrained(base, dir)`).

The folder holds peft's adapter_config.json and adapter_model.safetensors with peft's saved key names
(base_model.model.<module>.<tensor>); VeRA's frozen projections are not saved: peft regenerates them from the
same seed (projection_prng_key) that ours were drawn from.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from hira.adapters.base import AdapterConfigError, adapter_layers

# method -> {our tensor name: peft's saved tensor name}
PEFT_NAMES = {
    "lora": {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight"},
    "dora": {"lora_A": "lora_A.weight", "lora_B": "lora_B.weight", "lora_magnitude": "lora_magnitude_vector"},
    "vera": {"vera_lambda_d": "vera_lambda_d", "vera_lambda_b": "vera_lambda_b"},
    "hira": {"hira_A": "hira_A", "hira_B": "hira_B"},
}


def dropout_p(layer) -> float:
    return layer.dropout.p if isinstance(layer.dropout, nn.Dropout) else 0.0


def peft_config(method: str, layer, target_modules: list[str]):
    from peft import HiraConfig, LoraConfig, TaskType, VeraConfig

    common = dict(task_type=TaskType.CAUSAL_LM, target_modules=target_modules)
    if method in ("lora", "dora"):
        return LoraConfig(r=layer.r, lora_alpha=layer.alpha, lora_dropout=dropout_p(layer), use_dora=method == "dora",
                          **common)
    if method == "vera":
        return VeraConfig(r=layer.r, projection_prng_key=layer.projection_seed, save_projection=False,
                          vera_dropout=dropout_p(layer), d_initial=layer.d_initial, **common)
    return HiraConfig(r=layer.r, **common)


def export_peft(model: nn.Module, out_dir) -> Path:
    """Write model's adapters (one method, unmerged) as a peft adapter folder; returns the folder."""
    layers = adapter_layers(model)
    methods = {layer.method for layer in layers.values()}
    if len(methods) != 1 or next(iter(methods)) not in PEFT_NAMES:
        raise AdapterConfigError(f"export_peft handles one of {', '.join(PEFT_NAMES)}; this model has "
                                 f"{', '.join(sorted(methods)) or 'no adapters'}")
    if any(layer.merged for layer in layers.values()):
        raise AdapterConfigError("export_peft needs unmerged adapters: call hira.adapters.unmerge(model) first")
    method = methods.pop()
    first = next(iter(layers.values()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = sorted({name.rsplit(".", 1)[-1] for name in layers})
    config = peft_config(method, first, targets)
    config.base_model_name_or_path = getattr(model.config, "_name_or_path", None)
    config.save_pretrained(str(out_dir))
    state = {f"base_model.model.{name}.{peft_name}": getattr(layer, ours).detach().contiguous()
             for name, layer in layers.items() for ours, peft_name in PEFT_NAMES[method].items()}
    save_file(state, str(out_dir / "adapter_model.safetensors"))
    return out_dir

"""Export adapters whose update equals a peft adapter's (LoRA, DoRA, VeRA, HiRA, ...) as peft adapter folders
(`PeftModel.from_pretrained(base, dir)`).

Which methods and how is each method's own declaration (AdapterLinear.peft_tensors and peft_config). The folder
holds peft's adapter_config.json and adapter_model.safetensors with peft's saved key names
(base_model.model.<module>.<tensor>); frozen tensors a seed regenerates (VeRA's projections) are not saved.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from hira.adapters.base import METHODS, AdapterConfigError, adapter_layers, exportable


def exportable_methods() -> list[str]:
    return sorted(name for name, cls in METHODS.items() if exportable(cls))


def export_peft(model: nn.Module, out_dir) -> Path:
    """Write model's adapters (one method, unmerged) as a peft adapter folder; returns the folder."""
    layers = adapter_layers(model)
    methods = {layer.method for layer in layers.values()}
    if len(methods) != 1 or next(iter(methods)) not in exportable_methods():
        raise AdapterConfigError(f"export_peft handles one of {', '.join(exportable_methods())}; this model has "
                                 f"{', '.join(sorted(methods)) or 'no adapters'}")
    if any(layer.merged for layer in layers.values()):
        raise AdapterConfigError("export_peft needs unmerged adapters: call hira.adapters.unmerge(model) first")
    first = next(iter(layers.values()))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = first.peft_config(sorted({name.rsplit(".", 1)[-1] for name in layers}))
    config.base_model_name_or_path = getattr(model.config, "_name_or_path", None)
    config.save_pretrained(str(out_dir))
    state = {f"base_model.model.{name}.{peft_name}": getattr(layer, ours).detach().contiguous()
             for name, layer in layers.items() for ours, peft_name in layer.peft_tensors.items()}
    save_file(state, str(out_dir / "adapter_model.safetensors"))
    return out_dir

"""The spectrum of the learned update ΔW, per layer and module, as in the paper's Figures 4, 5, 7 and 8.

For each adapted linear layer: the number of singular values above a threshold (0.005), the sum of squared
singular values (= ‖ΔW‖_F²), the numerical rank and the effective rank exp(−Σ p_k log p_k), p_k = σ_k / ‖σ‖₁.
ΔW is the adapter layer's delta_weight(); for a run without adapter layers (full fine-tuning) it is W − W0.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from hira.adapters.params import method_params
from hira.errors import UserError
from hira.paper.runs import params_label
from hira.run_dir import RunDir

THRESHOLD = 0.005
MODULES = ("q_proj", "k_proj", "v_proj", "up_proj", "down_proj")  # the paper's figure panels
METRICS = {  # metric -> (file name, axis label)
    "sv_count": ("fig4_sv_count.png", "singular values > {threshold}"),
    "sv_sq_sum": ("fig5_sv_sq_sum.png", "sum of squared singular values"),
    "rank": ("fig7_rank.png", "rank"),
    "effective_rank": ("fig8_effective_rank.png", "effective rank"),
}
LAYER_NAME = re.compile(r"layers\.(\d+)\..*?(\w+)$")


def spectrum_metrics(delta: torch.Tensor, threshold: float = THRESHOLD) -> dict:
    """The four statistics of one ΔW (singular values in float64)."""
    delta = delta.detach().float().cpu()
    sv = torch.linalg.svdvals(delta.double())
    total = sv.sum().item()
    # numerical rank as numpy.linalg.matrix_rank decides it for the fp32 matrix: σ > σ_max · max(m, n) · ε
    tol = (sv.max().item() if sv.numel() else 0.0) * max(delta.shape) * torch.finfo(torch.float32).eps
    if total > 0:
        p = sv[sv > 0] / total
        effective = math.exp(-(p * p.log()).sum().item())
    else:
        effective = 0.0  # ΔW = 0 (e.g. an untrained adapter): no directions at all
    return {"sv_count": int((sv > threshold).sum()), "sv_sq_sum": float((sv ** 2).sum()),
            "rank": int((sv > tol).sum()), "effective_rank": effective}


@dataclass
class Spectrum:
    run: str        # the run's label in tables and figure legends
    method: str
    layer: int
    module: str
    rows: int
    cols: int
    sv_count: int
    sv_sq_sum: float
    rank: int
    effective_rank: float


def resolve_checkpoint(path: Path) -> tuple:
    """(run config, checkpoint folder) for a run directory (its best checkpoint) or a checkpoint folder."""
    from hira.training.checkpoint import ADAPTER_FILE, MANIFEST_FILE, best_checkpoint, check_intact

    path, run = Path(path), RunDir(path)
    if (path / ADAPTER_FILE).is_file() or (path / MANIFEST_FILE).is_file():
        ckpt, holder = path, RunDir(path)  # a checkpoint holds a copy of its run's config.yaml
    elif run.config.is_file() and run.checkpoints.is_dir():
        ckpt, holder = best_checkpoint(run.checkpoints), run
    else:
        raise UserError(f"{path} is neither a run directory (config.yaml + checkpoints/) nor a checkpoint "
                        f"(adapter.safetensors); pass outputs/<task>/<method>/<model>/<run> or its "
                        f"checkpoints/step_<N>")
    check_intact(ckpt)  # before its config or weights are read
    return holder.load_config(), ckpt


@torch.no_grad()
def update_matrices(cfg, ckpt: Path, device: str = "cpu") -> dict[str, torch.Tensor]:
    """{module name: ΔW} of the checkpoint loaded into the run's model."""
    from hira.adapters import adapter_layers
    from hira.models.loading import load_adapted_model, load_base_model
    from hira.training.checkpoint import load_adapter

    model, _ = load_adapted_model(cfg, device)
    load_adapter(model, ckpt)
    layers = adapter_layers(model)
    if layers:
        return {name: layer.delta_weight().float().cpu() for name, layer in layers.items()}
    base, _ = load_base_model(cfg.model, device)  # full fine-tuning: compare with the base weights
    base_weights = {n: m.weight for n, m in base.named_modules() if isinstance(m, nn.Linear)}
    return {n: (m.weight.float() - base_weights[n].float()).cpu() for n, m in model.named_modules()
            if isinstance(m, nn.Linear) and n in base_weights and n.rsplit(".", 1)[-1] in MODULES}


def run_label(cfg) -> str:
    params = params_label(method_params(cfg.method))
    return " ".join(x for x in (cfg.method.name, params) if x)


def analyze(paths, threshold: float = THRESHOLD, device: str = "cpu") -> list[Spectrum]:
    """Spectra of every adapted layer of every run or checkpoint; runs with the same label get their seed added."""
    loaded = [resolve_checkpoint(p) for p in paths]
    labels = [run_label(cfg) for cfg, _ in loaded]
    labels = [f"{label} s{cfg.seed}" if labels.count(label) > 1 else label for label, (cfg, _) in zip(labels, loaded)]
    labels = [f"{label} #{i}" if labels.count(label) > 1 else label for i, label in enumerate(labels)]
    out = []
    for label, (cfg, ckpt) in zip(labels, loaded):
        for name, delta in update_matrices(cfg, ckpt, device).items():
            match = LAYER_NAME.search(name)
            if not match:
                continue
            out.append(Spectrum(label, cfg.method.name, int(match.group(1)), match.group(2), *delta.shape,
                                **spectrum_metrics(delta, threshold)))
    return sorted(out, key=lambda s: (s.run, s.layer, s.module))


def write_tables(spectra: list[Spectrum], out_dir: Path) -> list[Path]:
    rows = [asdict(s) for s in spectra]
    csv_file, json_file = out_dir / "update_spectra.csv", out_dir / "update_spectra.json"
    with open(csv_file, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)
    json_file.write_text(json.dumps(rows, indent=1))
    return [csv_file, json_file]


def plot_metric(spectra: list[Spectrum], metric: str, out_file: Path, threshold: float) -> Path:
    """One panel per module, layer on x, one curve per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modules = [m for m in MODULES if any(s.module == m for s in spectra)]
    modules += sorted({s.module for s in spectra} - set(modules))
    fig, axes = plt.subplots(1, len(modules), figsize=(3.2 * len(modules), 3), squeeze=False)
    for ax, module in zip(axes[0], modules):
        for run in sorted({s.run for s in spectra}):
            points = sorted((s.layer, getattr(s, metric)) for s in spectra if s.run == run and s.module == module)
            if points:
                ax.plot(*zip(*points), marker="o", markersize=3, label=run)
        ax.set_title(module)
        ax.set_xlabel("layer")
    axes[0][0].set_ylabel(METRICS[metric][1].format(threshold=threshold))
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return out_file


def analyze_updates(paths, out_dir: Path, threshold: float = THRESHOLD, device: str = "cpu") -> tuple[list, list]:
    """Spectra of the runs' ΔW written as CSV/JSON and the four figures; returns (spectra, files written)."""
    out_dir = Path(out_dir)
    spectra = analyze(paths, threshold, device)
    if not spectra:
        raise UserError(f"no adapted q/k/v/up/down layers found in {', '.join(map(str, paths))}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = write_tables(spectra, out_dir)
    written += [plot_metric(spectra, metric, out_dir / name, threshold) for metric, (name, _) in METRICS.items()]
    return spectra, written

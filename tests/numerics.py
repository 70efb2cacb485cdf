"""Tolerances for comparing two fp32 computations of one mathematical value, valid on any CPU and thread count.

Two fp32 results that agree in exact arithmetic differ by rounding, and how they round depends on the BLAS kernel's
summation order (blocking, SIMD width, FMA, threads), which differs between CPUs. A fixed `atol` that passed on the
machine that wrote it can fail on another. The bound used here holds for every summation order: for a dot product
of length k in floating point with unit roundoff u,

    |fl(x·w) − x·w| ≤ γ_k · Σ_i |x_i||w_i|,   γ_k = k·u / (1 − k·u)          (Higham, Accuracy and Stability, §3.1)

so a GEMM's error is bounded elementwise by γ_k · (|x| · |W|ᵀ). That worst case assumes every rounding pushes the
same way; rounding errors of either sign add like a random walk, so the practical scale is √k·u (Higham, §3.5's
rule of thumb), and `gemm_error_bound` uses 4·√k·u: still ≥ 4× the typical error, since Σ|x_i||w_i| ≥ ‖x⊙w‖₂.
Tests also check that the bound stays far below the signal they compare: a tolerance that swallows the answer
would let a wrong result pass.
"""

import copy
import os

import torch

U32 = 2.0**-24  # unit roundoff of float32


def rounding_scale(k: int, u: float = U32) -> float:
    """4·√k·u: the relative error of a length-k fp32 sum, with a 4× margin on its random-walk scale."""
    return 4 * k**0.5 * u


def gemm_error_bound(x: torch.Tensor, *weights: torch.Tensor, extra_k: int = 0) -> torch.Tensor:
    """Elementwise bound on the summed rounding errors of fp32 x·Wᵀ for each W given (in float64).

    extra_k covers the roundings before the GEMM: forming W from a rank-r product adds r to the chain length."""
    k = x.shape[-1] + extra_k
    magnitude = sum(x.abs().double() @ w.abs().double().T for w in weights)
    return rounding_scale(k) * magnitude


def assert_close_within(got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor, msg: str = "") -> None:
    """|got − want| ≤ bound elementwise, and the typical (median) bound is ≤ 1 % of |want|'s largest entry, so an
    error of the signal's scale fails. (The median: where an inverse is ill-conditioned a few bounds are large.)"""
    assert bound.median() <= 0.01 * want.abs().max(), f"{msg}: tolerance {bound.median():.3g} too loose"
    err = (got.double() - want.double()).abs()
    worst = (err - bound).argmax()
    assert (err <= bound).all(), (f"{msg}: |got − want| = {err.flatten()[worst]:.3g} exceeds its bound "
                                  f"{bound.flatten()[worst]:.3g}")


def adapter_forward_bound(layer, x: torch.Tensor) -> torch.Tensor:
    """Bound on |(layer(x) − base(x)) − x·ΔWᵀ| for an adapter layer computed in fp32.

    layer(x) is a GEMM with W0 + ΔW (formed in fp32, or W0 plus a low-rank path through rank r), base(x) one with
    W0, and each rounds within γ_k·|x|·|W|ᵀ. The factor 2 covers the low-rank chains x·Aᵀ·Bᵀ whose factors'
    magnitudes |B|·|A| can exceed |B·A|; extra_k covers the rank-r sums inside ΔW."""
    w0, delta = layer.base_layer.weight, layer.delta_weight()
    r = min(w0.shape)  # no adapter here sums over more than min(out, in) terms to form ΔW
    return 2 * gemm_error_bound(x, w0, w0 + delta, delta, extra_k=r)


# HIRA_TEST_SEED shifts every seed of the numerically sensitive tests, to repeat them on other random draws:
#   for s in $(seq 0 9); do HIRA_TEST_SEED=$s python -m pytest -q <files>; done
SEED_OFFSET = int(os.environ.get("HIRA_TEST_SEED", "0"))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + SEED_OFFSET)


def fp32_noise_floor(plain_model, **inputs) -> float:
    """Largest |fp32 − float64| of a plain (adapter-free) model's logits on these inputs: the rounding this network
    shows on this CPU at this scale. Whole-model comparisons of two fp32 evaluations of one function (merged vs
    unmerged, ours vs peft) carry errors of this size on each side, where a per-GEMM bound compounded over layers,
    norms and softmax would be uselessly loose."""
    with torch.no_grad():
        exact = copy.deepcopy(plain_model).double()(**inputs).logits
        approx = plain_model(**inputs).logits
    return (approx.double() - exact).abs().max().item()


NOISE_MARGIN = 20  # tolerance = 20× the noise floor: two sides' errors, plus the adapter's own GEMMs


def unmerge_bound(layer, w0: torch.Tensor) -> torch.Tensor:
    """Bound on |unmerge(merge(W0)) − W0| elementwise for an adapter layer.

    Merging rounds W' = W0 + ΔW once (within u·|W'|); unmerging inverts it with a few more roundings (ΔW formed again
    through rank-r sums, DoRA's row norms) and amplifies the first rounding by |∂W0/∂W'| (`inverse_gain`). Those
    roundings, each within u of values no larger than |W0| + |ΔW|, stay under 64u of it; a wrong inverse is off by
    O(|ΔW|)."""
    w0, delta = w0.double(), layer.delta_weight().double()
    return 64 * U32 * (w0.abs() + delta.abs()) * inverse_gain(layer)


def inverse_gain(layer) -> torch.Tensor | float:
    """|∂W0/∂W'| of the layer's unmerge: 1/|1 + BA| where it divides (HiRA, HiLoRA), n/m per row for DoRA (the merged
    row has norm m, W0 + s·BA has norm n), 1 for the additive methods."""
    if hasattr(layer, "hadamard_factor"):  # HiLoRA: (W' − B2A2) / (1 + B1A1)
        factor = layer.hadamard_factor()
    elif type(layer).__name__ == "HiRALinear":  # W' / (1 + BA)
        factor = layer.hira_B @ layer.hira_A
    elif hasattr(layer, "lora_magnitude"):  # DoRA: W'·n/m − s·BA
        lora_delta = type(layer).__mro__[1].delta_weight(layer)
        return (layer.weight_norm(lora_delta) / layer.lora_magnitude).double().abs().clamp_min(1).unsqueeze(1)
    else:
        return 1.0
    return 1 / (1 + torch.as_tensor(factor).double()).abs().clamp_min(torch.finfo(torch.float32).tiny)

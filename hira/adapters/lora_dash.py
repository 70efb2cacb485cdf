"""LoRA-Dash (Si et al., 2025): LoRA for a pre-launch phase of t steps, then a "dash" along the s task-specific
directions of W0.

At the end of optimizer step t (the training loop's `on_step` hook), W0 = U·Σ·Vᵀ is decomposed and the s
singular directions with the largest change rate |u_iᵀ·ΔW·v_i| / σ_i under the LoRA update so far are kept; from
then on each gets a learnable coefficient δ_i (init 0) on top of LoRA:
    ΔW = (α/r)·B·A + Σ_i δ_i·u_i·v_iᵀ.
The chosen directions and the phase flag are adapter state saved with the trainable weights, so the switch
survives a checkpoint reload. Before the switch the directions are zero, δ gets zero gradients and, with AdamW at
weight decay 0, stays exactly 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hira.adapters.base import AdapterConfigError, register
from hira.adapters.lora import LoRALinear


@register("lora_dash")
class LoRADashLinear(LoRALinear):
    state_buffers = ("dash_U", "dash_V", "dash_active")

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float | None = None, dropout: float = 0.0,
                 t: int = 100, s: int = 8):
        super().__init__(base_layer, r, alpha, dropout)
        if not 0 < s <= min(self.in_features, self.out_features) or t < 0:
            raise AdapterConfigError(f"method.params: s={s} must be in 1..{min(self.in_features, self.out_features)}"
                                     f" and t={t} ≥ 0")
        self.t, self.s = t, s
        device = base_layer.weight.device
        self.dash_delta = nn.Parameter(torch.zeros(s, dtype=torch.float32, device=device))
        self.register_buffer("dash_U", torch.zeros(self.out_features, s, dtype=torch.float32, device=device))
        self.register_buffer("dash_V", torch.zeros(s, self.in_features, dtype=torch.float32, device=device))
        self.register_buffer("dash_active", torch.zeros((), dtype=torch.bool, device=device))
        self._dash_seen = False

    def on_step(self, step: int) -> None:
        if step < self.t or self._dash_seen:  # the flag spares a device sync per layer and step after the switch
            return
        if not bool(self.dash_active):  # False unless a checkpoint past the switch was loaded
            self.launch_dash()
        self._dash_seen = True

    @torch.no_grad()
    def launch_dash(self) -> None:
        """Pick the s directions of W0 that the LoRA update has changed fastest relative to their σ."""
        from hira.distributed import gathered

        with gathered([self.base_layer.weight, self.lora_A, self.lora_B]):
            u, sigma, vh = torch.linalg.svd(self.base_layer.weight.float(), full_matrices=False)
            lora_delta = super().delta_weight()
        change_rate = ((u.T @ lora_delta) * vh).sum(dim=1).abs() / sigma.clamp_min(torch.finfo(sigma.dtype).tiny)
        top = change_rate.topk(self.s).indices
        self.dash_U.copy_(u[:, top])
        self.dash_V.copy_(vh[top])
        self.dash_active.fill_(True)

    def adapted_forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        h = self.dropout(x)
        # Before the switch U and V are zero and so is the dash term (computed anyway: no host sync per forward).
        dash = F.linear(F.linear(h.to(self.dash_V.dtype), self.dash_V) * self.dash_delta, self.dash_U)
        return result + (self.lora_output(h) + dash).to(result.dtype)

    def delta_weight(self) -> torch.Tensor:
        return super().delta_weight() + (self.dash_U * self.dash_delta) @ self.dash_V

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, t={self.t}, s={self.s}, dash={bool(self.dash_active)}"

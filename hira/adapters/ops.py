"""A fused, memory-saving linear for Hadamard adapters: y = x·(W0 + M⊙(B·A))ᵀ + bias.

HiRA is the case M = W0, so the adapted weight is W' = W0⊙(1 + BA). The plain autograd formula (and peft's
HiRA) keeps out×in temporaries alive from forward to backward; this op keeps only x, A, B (and W0, M, which
exist anyway) and recomputes W' in backward. Per block of output rows it forms

    W'  = W0 + M⊙(B·A)                 (forward and again in backward, only when dx is needed)
    dx += g[:, rows] · W'[rows]
    G   = g[:, rows]ᵀ · x               (the weight-gradient GEMM that a frozen-base LoRA skips)
    dA += B[rows]ᵀ · (G⊙M[rows]),  dB[rows] = (G⊙M[rows]) · Aᵀ

so no out×in temporary is larger than `chunk_elems` elements. W0 and M are frozen (no gradient).

How other Hadamard methods call it (their modules read the weight inside their own forward, as ZeRO-3 needs):
  - HiRA:      hira_linear(x, base.weight, A, B, base.bias)
  - HiRA-rand: hira_linear(x, base.weight, A, B, base.bias, mask=R)     # R a fixed out×in buffer, ΔW = R⊙BA
  - HiLoRA:    hira_linear(x, base.weight, A1, B1, base.bias) + F.linear(F.linear(x, A2), B2)  # + low-rank part
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK_ELEMS = 2**22  # 16 MiB per fp32 out×in temporary: 1024 rows of a 4096-wide layer; on CPU
# smaller blocks also ran faster than whole-layer ones (cache-friendlier, no fresh pages per call)


def hira_linear(x: torch.Tensor, weight: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                bias: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                chunk_elems: int | None = DEFAULT_CHUNK_ELEMS) -> torch.Tensor:
    """x·(W0 + M⊙(B·A))ᵀ + bias with M = mask, or W0 when mask is None; chunk_elems=None never splits."""
    return _HadamardLinear.apply(x, weight, A, B, bias, mask, chunk_elems)


def _row_blocks(out_features: int, in_features: int, chunk_elems: int | None) -> list[slice]:
    rows = out_features if not chunk_elems else max(1, chunk_elems // in_features)
    return [slice(i, min(i + rows, out_features)) for i in range(0, out_features, rows)]


def _adapted_rows(weight, mask, A, B, rows: slice) -> torch.Tensor:
    """W'[rows] = W0 + M⊙BA, formed in fp32 (like the adapters) in one pass and rounded once to W0's dtype."""
    w = weight[rows]
    product = B[rows].float() @ A.float()
    return torch.addcmul(w, w if mask is None else mask[rows], product, out=product).to(w.dtype)


class _HadamardLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, A, B, bias, mask, chunk_elems):
        if ctx.needs_input_grad[1] or (mask is not None and ctx.needs_input_grad[5]):
            raise ValueError("hira_linear keeps W0 and the mask frozen; they must not require grad")
        blocks = _row_blocks(weight.shape[0], weight.shape[1], chunk_elems)
        if len(blocks) == 1:
            y = F.linear(x, _adapted_rows(weight, mask, A, B, blocks[0]), bias)
        else:
            y = torch.cat([F.linear(x, _adapted_rows(weight, mask, A, B, rows), None if bias is None else bias[rows])
                           for rows in blocks], dim=-1)
        # Save inputs only (W0 and the mask are parameters/buffers already alive): nothing out×in is kept.
        ctx.save_for_backward(x, weight, A, B, mask)
        ctx.blocks = blocks
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, A, B, mask = ctx.saved_tensors
        need_x, _, need_A, need_B, need_bias = ctx.needs_input_grad[:5]
        g = grad_out.reshape(-1, weight.shape[0]).to(x.dtype)
        x2 = x.reshape(-1, weight.shape[1])
        dx = torch.zeros_like(x2) if need_x else None
        dA = torch.zeros(A.shape, dtype=torch.float32, device=A.device) if need_A else None
        dB = torch.empty(B.shape, dtype=torch.float32, device=B.device) if need_B else None
        for rows in ctx.blocks:
            g_rows = g[:, rows]
            if need_x:  # the W' block is freed as soon as addmm_ returns
                dx.addmm_(g_rows, _adapted_rows(weight, mask, A, B, rows))
            if need_A or need_B:
                masked = (g_rows.t() @ x2).float().mul_(weight[rows] if mask is None else mask[rows])  # G⊙M
                if need_B:
                    dB[rows] = masked @ A.float().t()
                if need_A:
                    dA.addmm_(B[rows].float().t(), masked)
                del masked  # before the next block's W' is formed: one out×in block alive at a time
        return (dx.reshape(x.shape) if need_x else None, None,
                dA.to(A.dtype) if need_A else None, dB.to(B.dtype) if need_B else None,
                grad_out.reshape(-1, weight.shape[0]).sum(0).to(grad_out.dtype) if need_bias else None, None, None)

"""TTT-Linear: the Parametric Memory Block (PMB) of OVG-HQ (spec ``video.md`` section 3.3).

A linear inner model ``f(k) = LN(k W + b)`` per head memorises the stream with one gradient step per mini-batch on the
self-supervised loss ``l = 1/2 ||LN(k W + b) - (v - k)||^2``; the gradient is taken in closed form (no autograd at test
time) and applied in the "dual form": inside a mini-batch every token's gradient is taken at the mini-batch's initial
weights ``W_0`` and token ``i`` reads with ``W_i = W_0 - s_i sum_{j<=i} eta_j grad l_j(W_0)`` (causal), with the token
learning rate ``eta_j = base_lr * sigmoid(w_lr . x_j + b_lr) / d_h`` and the per-position scale
``s_i = max(0, 1/i + delta_i)``. The weights after the last token start the next mini-batch, so
``forward(x, state)`` on a sequence cut at mini-batch boundaries, with the state carried, equals one call on the whole
sequence. The state is explicit: ``init_state(batch)`` gives the learned initial ``(W, b)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6


@dataclass
class TTTState:
    """Inner weights carried across mini-batches: ``W`` (B, H, d, d) and ``b`` (B, H, 1, d)."""

    W: torch.Tensor
    b: torch.Tensor

    def detach(self) -> TTTState:
        return TTTState(self.W.detach(), self.b.detach())

    def select(self, index: torch.Tensor | slice) -> TTTState:
        return TTTState(self.W[index], self.b[index])


def layer_norm(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = LN_EPS) -> torch.Tensor:
    """Per-head LayerNorm over the last axis (biased variance), ``gamma``/``beta`` broadcast over tokens."""
    zc = z - z.mean(-1, keepdim=True)
    return zc / torch.sqrt((zc * zc).mean(-1, keepdim=True) + eps) * gamma + beta


def inner_loss_grad(k: torch.Tensor, v: torch.Tensor, W: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor,
                    beta: torch.Tensor, eps: float = LN_EPS) -> torch.Tensor:
    """Closed-form ``dl/dz`` of ``l = 1/2 ||LN(z) - (v - k)||^2`` at ``z = k W + b`` (spec 3.3).

    With ``x = (z - mu) / sigma`` and ``g = gamma * (gamma * x + beta - (v - k))``:
    ``dl/dz = (g - mean(g) - x * mean(g * x)) / sigma``; then ``dl/dW = k^T dl/dz`` and ``dl/db = dl/dz``.
    Shapes: ``k, v`` (..., m, d), ``W`` (..., d, d), ``b`` (..., 1, d), ``gamma/beta`` broadcastable to (..., m, d).
    """
    z = k @ W + b
    zc = z - z.mean(-1, keepdim=True)
    sigma = torch.sqrt((zc * zc).mean(-1, keepdim=True) + eps)
    xhat = zc / sigma
    g = gamma * (gamma * xhat + beta - (v - k))
    return (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True)) / sigma


def dual_form(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eta: torch.Tensor, scale: torch.Tensor,
              W: torch.Tensor, b: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One TTT mini-batch in dual form.

    ``q, k, v`` (B, H, m, d); ``eta`` (B, H, m) token learning rates (0 for padding tokens); ``scale`` (m,) the
    per-position scale ``s_i``; ``W`` (B, H, d, d), ``b`` (B, H, 1, d) the weights at the mini-batch start.
    Returns ``(read, W_m, b_m)``: ``read_i = q_i + LN(q_i W_i + b_i)`` with
    ``W_i = W - s_i sum_{j<=i} eta_j k_j^T dz_j`` and ``b_i = b - s_i sum_{j<=i} eta_j dz_j``, and the weights after
    the last token (``W_m``, ``b_m``), which start the next mini-batch.
    """
    m = q.shape[-2]
    dz = inner_loss_grad(k, v, W, b, gamma, beta)  # (B, H, m, d), all at W_0
    causal = torch.ones(m, m, dtype=torch.bool, device=q.device).tril()
    E = (scale[:, None] * eta[..., None, :]).masked_fill(~causal, 0.0)  # E_ij = s_i eta_j [j <= i]
    attn = q @ k.transpose(-1, -2)
    z_read = q @ W + b - (E * attn) @ dz - E @ dz
    read = q + layer_norm(z_read, gamma, beta)
    last = (scale[-1] * eta)[..., None] * k  # (B, H, m, d)
    W_new = W - last.transpose(-1, -2) @ dz
    b_new = b - (scale[-1] * eta)[..., None, :] @ dz
    return read, W_new, b_new


class TTTLinear(nn.Module):
    """TTT-Linear layer (multi-head), ``forward(x, state, mask) -> (y, state)``.

    ``width`` model width, ``heads`` inner models of size ``width // heads``, ``mini_batch`` tokens per inner step
    (OVG-HQ: one 16-clip window in PMB #1, the 4 anchors of one window in PMB #2), ``base_lr`` the inner learning
    rate scale (1.0). Outer parameters (Q/K/V/O projections, the per-head LN, the learning-rate gate, the initial
    inner weights, the position offsets ``delta``) are trained by the task loss; ``W, b`` change at test time.
    """

    def __init__(self, width: int, heads: int = 4, mini_batch: int = 16, base_lr: float = 1.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be divisible by heads {heads}")
        self.width, self.heads, self.mini_batch, self.base_lr = width, heads, mini_batch, base_lr
        self.head_dim = d = width // heads
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)
        self.W0 = nn.Parameter(torch.randn(heads, d, d) * 0.02)
        self.b0 = nn.Parameter(torch.zeros(heads, 1, d))
        self.ln_weight = nn.Parameter(torch.ones(heads, 1, d))
        self.ln_bias = nn.Parameter(torch.zeros(heads, 1, d))
        self.lr_gate = nn.Linear(width, heads)
        nn.init.normal_(self.lr_gate.weight, std=0.02)
        nn.init.zeros_(self.lr_gate.bias)
        self.pos_delta = nn.Parameter(torch.zeros(mini_batch))
        self.post_norm = nn.LayerNorm(width)

    def init_state(self, batch: int) -> TTTState:
        """The learned initial inner weights, expanded to ``batch`` streams (gradients flow into them)."""
        return TTTState(self.W0.unsqueeze(0).expand(batch, -1, -1, -1),
                        self.b0.unsqueeze(0).expand(batch, -1, -1, -1))

    def position_scale(self, m: int) -> torch.Tensor:
        """``s_i = max(0, 1/i + delta_i)`` for i = 1..m."""
        i = torch.arange(1, m + 1, dtype=self.pos_delta.dtype, device=self.pos_delta.device)
        return F.relu(1.0 / i + self.pos_delta[:m])

    def token_lr(self, x: torch.Tensor) -> torch.Tensor:
        """``eta = base_lr * sigmoid(w_lr . x + b_lr) / d_h`` per head: (B, T, width) -> (B, H, T)."""
        return (self.base_lr * torch.sigmoid(self.lr_gate(x)) / self.head_dim).transpose(1, 2)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        B, T, _ = t.shape
        return t.view(B, T, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, state: TTTState | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, TTTState]:
        """``x`` (B, T, width); ``mask`` (B, T) True for real tokens (padding tokens get ``eta = 0``: they never
        change the memory). Tokens are cut into mini-batches of ``mini_batch`` from the start; a last, shorter one
        uses the first positions' scales. Returns ``(y (B, T, width), state after the last token)``.

        Same arithmetic as :func:`dual_form` per mini-batch, with everything that does not depend on the carried
        weights (``q k^T``, the learning-rate matrices, the read LayerNorm) batched over all mini-batches."""
        B, T, _ = x.shape
        if state is None:
            state = self.init_state(B)
        m = self.mini_batch
        n_full = T // m
        if n_full == 0 or T % m:
            return self._forward_loop(x, state, mask)
        H, d = self.heads, self.head_dim
        # (B, H, n, m, d)
        q = self.q_proj(x).view(B, n_full, m, H, d).permute(0, 3, 1, 2, 4)
        k = self.k_proj(x).view(B, n_full, m, H, d).permute(0, 3, 1, 2, 4)
        v = self.v_proj(x).view(B, n_full, m, H, d).permute(0, 3, 1, 2, 4)
        eta = self.token_lr(x)
        if mask is not None:
            eta = eta * mask[:, None, :].to(eta.dtype)
        eta = eta.view(B, H, n_full, m)
        scale = self.position_scale(m)
        causal = torch.ones(m, m, dtype=torch.bool, device=x.device).tril()
        E = (scale[:, None] * eta[..., None, :]).masked_fill(~causal, 0.0)  # (B, H, n, m, m)
        M = E * (q @ k.transpose(-1, -2) + 1.0)
        k_last = (scale[-1] * eta)[..., None] * k  # (B, H, n, m, d)
        eta_last = (scale[-1] * eta)[..., None, :]  # (B, H, n, 1, m)
        target = v - k
        gamma, beta = self.ln_weight, self.ln_bias
        W, b = state.W, state.b
        reads = []
        for i in range(n_full):
            z = k[:, :, i] @ W + b  # (B, H, m, d)
            zq = q[:, :, i] @ W + b
            mu = z.mean(-1, keepdim=True)
            zc = z - mu
            sigma = torch.sqrt((zc * zc).mean(-1, keepdim=True) + LN_EPS)
            xhat = zc / sigma
            g = gamma * (gamma * xhat + beta - target[:, :, i])
            dz = (g - g.mean(-1, keepdim=True) - xhat * (g * xhat).mean(-1, keepdim=True)) / sigma
            reads.append(zq - M[:, :, i] @ dz)
            W = W - k_last[:, :, i].transpose(-1, -2) @ dz
            b = b - eta_last[:, :, i] @ dz
        z_read = torch.stack(reads, 2)  # (B, H, n, m, d)
        read = q + layer_norm(z_read, gamma[:, None], beta[:, None])
        y = read.permute(0, 2, 3, 1, 4).reshape(B, T, self.width)
        return self.o_proj(self.post_norm(y)), TTTState(W, b)

    def _forward_loop(self, x: torch.Tensor, state: TTTState, mask: torch.Tensor | None
                      ) -> tuple[torch.Tensor, TTTState]:
        """Reference path: :func:`dual_form` mini-batch by mini-batch (any length)."""
        B, T, _ = x.shape
        q, k, v = self._split(self.q_proj(x)), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        eta = self.token_lr(x)
        if mask is not None:
            eta = eta * mask[:, None, :].to(eta.dtype)
        W, b = state.W, state.b
        outs = []
        for start in range(0, T, self.mini_batch):
            sl = slice(start, min(T, start + self.mini_batch))
            m = sl.stop - sl.start
            read, W, b = dual_form(q[:, :, sl], k[:, :, sl], v[:, :, sl], eta[:, :, sl], self.position_scale(m),
                                   W, b, self.ln_weight, self.ln_bias)
            outs.append(read)
        y = torch.cat(outs, dim=2).transpose(1, 2).reshape(B, T, self.width)
        return self.o_proj(self.post_norm(y)), TTTState(W, b)

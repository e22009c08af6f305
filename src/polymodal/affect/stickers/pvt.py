"""A Pyramid Vision Transformer (PVT v1 style) in plain PyTorch, tiny and configurable (MGHFT spec 2.4 item 2).

Four stages; each starts with a strided-conv patch embedding (patch 4, then 2, 2, 2) and runs blocks of pre-norm
**spatial-reduction attention** (queries at full resolution; keys/values from a Conv(kernel = stride = sr) +
LayerNorm reduced map, with the stage's CLS token appended to the reduced keys/values [reconstruction]) and an MLP.
Stages with ``locals[i] = 1`` get their own CLS token (LORA / MGHFT), the last stage always has one. Blocks record
their attention maps (detached) so MGHFT's Local Re-Attention can select tokens. Positional tables are sized for
``img_size`` and bilinearly interpolated for other input sizes. Random init (no ImageNet weights offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth (per sample)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class SRAttention(nn.Module):
    """Spatial-reduction attention over ``[CLS?; N spatial tokens]``; keys/values: ``[reduced map (M); CLS?]``.

    ``forward`` returns the output and the attention map ``(B, heads, N_q, M + has_cls)`` (queries in input order).
    """

    def __init__(self, dim: int, heads: int, sr: int, attn_drop: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads, self.sr = heads, sr
        self.scale = (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        if sr > 1:
            self.reduce = nn.Conv2d(dim, dim, kernel_size=sr, stride=sr)
            self.reduce_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, hw: tuple[int, int], has_cls: bool) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        h, w = hw
        cls, sp = (x[:, :1], x[:, 1:]) if has_cls else (x[:, :0], x)
        if self.sr > 1:
            m = sp.transpose(1, 2).reshape(b, c, h, w)
            m = self.reduce(m).flatten(2).transpose(1, 2)
            m = self.reduce_norm(m)
        else:
            m = sp
        kv_in = torch.cat([m, cls], dim=1)  # CLS appended after the reduced tokens
        d = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, d).transpose(1, 2)
        k, v = self.kv(kv_in).reshape(b, kv_in.shape[1], 2, self.heads, d).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(-1)
        a = F.dropout(attn, self.attn_drop, self.training)
        out = (a @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out), attn.detach()


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, sr: int, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SRAttention(dim, heads, sr)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop_path = DropPath(drop_path)

    def forward(self, x, hw, has_cls):
        y, attn = self.attn(self.norm1(x), hw, has_cls)
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class PatchEmbed(nn.Module):
    def __init__(self, in_ch: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), (h, w)


@dataclass
class StageOutput:
    """One stage's result: CLS vector (``None`` without one), spatial tokens ``(B, N, C)``, grid ``(h, w)``, the
    attention maps of its blocks (each ``(B, heads, N + has_cls, M + has_cls)``, CLS first in the query axis and last
    in the key axis) and the stage's spatial-reduction ratio."""

    cls: torch.Tensor | None
    tokens: torch.Tensor
    hw: tuple[int, int]
    attentions: list[torch.Tensor]
    sr: int


class PVT(nn.Module):
    """PVT backbone; ``PVT(n_classes=7)`` is a complete classifier (LayerNorm'd last-stage CLS -> Linear).

    ``forward_stages(x)`` returns the four :class:`StageOutput` (MGHFT's input). Defaults: the spec's CPU sizing
    (96 px, dims 32/64/160/256, heads 1/2/5/8, depths 1/1/2/1, sr 8/4/2/1, MLP ratios 8/8/4/4).
    """

    def __init__(self, n_classes: int | None = None, img_size: int = 96, in_chans: int = 3,
                 patch_sizes: Sequence[int] = (4, 2, 2, 2), dims: Sequence[int] = (32, 64, 160, 256),
                 heads: Sequence[int] = (1, 2, 5, 8), mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 depths: Sequence[int] = (1, 1, 2, 1), sr_ratios: Sequence[int] = (8, 4, 2, 1),
                 locals: Sequence[int] = (1, 1, 1, 0), drop_path: float = 0.1):
        super().__init__()
        n_st = len(dims)
        for name, seq in (("patch_sizes", patch_sizes), ("heads", heads), ("mlp_ratios", mlp_ratios),
                          ("depths", depths), ("sr_ratios", sr_ratios), ("locals", locals)):
            if len(seq) != n_st:
                raise ValueError(f"{name} has {len(seq)} entries, dims has {n_st}")
        stride = 1
        grids = []
        for p, sr in zip(patch_sizes, sr_ratios, strict=True):
            stride *= p
            if img_size % stride:
                raise ValueError(f"img_size {img_size} must be a multiple of the total stride {stride}")
            g = img_size // stride
            if g % sr:
                raise ValueError(f"stage grid {g}x{g} is not divisible by its spatial-reduction ratio {sr}")
            grids.append(g)
        self.img_size, self.dims, self.heads = img_size, tuple(dims), tuple(heads)
        self.sr_ratios, self.grids = tuple(sr_ratios), tuple(grids)
        self.has_cls = tuple(bool(v) or i == n_st - 1 for i, v in enumerate(locals))
        dpr = torch.linspace(0, drop_path, sum(depths)).tolist()
        self.embeds, self.stages = nn.ModuleList(), nn.ModuleList()
        self.cls_tokens, self.pos = nn.ParameterList(), nn.ParameterList()
        k, prev = 0, in_chans
        for i in range(n_st):
            self.embeds.append(PatchEmbed(prev, dims[i], patch_sizes[i]))
            self.pos.append(nn.Parameter(torch.randn(1, grids[i] ** 2 + int(self.has_cls[i]), dims[i]) * 0.02))
            self.cls_tokens.append(nn.Parameter(torch.randn(1, 1, dims[i]) * 0.02 if self.has_cls[i]
                                                else torch.zeros(1, 0, dims[i])))
            self.stages.append(nn.ModuleList(Block(dims[i], heads[i], mlp_ratios[i], sr_ratios[i], dpr[k + j])
                                             for j in range(depths[i])))
            k += depths[i]
            prev = dims[i]
        self.norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], n_classes) if n_classes else None
        self.apply(_init)

    @property
    def out_dim(self) -> int:
        return self.dims[-1]

    def _pos(self, i: int, hw: tuple[int, int]) -> torch.Tensor:
        pos = self.pos[i]
        g = self.grids[i]
        if hw == (g, g):
            return pos
        c = int(self.has_cls[i])
        sp = pos[:, c:].reshape(1, g, g, -1).permute(0, 3, 1, 2)
        sp = F.interpolate(sp, size=hw, mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
        return torch.cat([pos[:, :c], sp], dim=1)

    def forward_stages(self, x: torch.Tensor) -> list[StageOutput]:
        outs = []
        for i, (embed, blocks) in enumerate(zip(self.embeds, self.stages, strict=True)):
            t, hw = embed(x)
            b = t.shape[0]
            t = torch.cat([self.cls_tokens[i].expand(b, -1, -1), t], dim=1) + self._pos(i, hw)
            attns = []
            for blk in blocks:
                t, a = blk(t, hw, self.has_cls[i])
                attns.append(a)
            if i == len(self.stages) - 1:
                t = self.norm(t)
            c = int(self.has_cls[i])
            cls, sp = (t[:, 0] if c else None), t[:, c:]
            outs.append(StageOutput(cls, sp, hw, attns, self.sr_ratios[i]))
            x = sp.transpose(1, 2).reshape(b, -1, *hw)
        return outs

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's (LayerNorm'd) CLS vector ``(B, dims[-1])``."""
        return self.forward_stages(x)[-1].cls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ValueError("PVT was built without n_classes; use features() or forward_stages()")
        return self.head(self.features(x))


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

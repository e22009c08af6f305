"""CPU-sized video and audio backbones in plain PyTorch (spec video.md 1.4 and 2.5), trained from scratch.

- ``TinyX3D``: the student (widths 16/32/64, one block per stage) and, wider and deeper (32/64/128, two blocks per
  stage), the homogeneous CNN teacher: a 1x3x3 3D-conv stem and stages of depthwise-separable 3D residual blocks
  with spatial stride 2, in the spirit of X3D.
- ``TinyVideoViT``: the heterogeneous ViT teacher: tubelet embedding 2x8x8, divided space-time attention
  (TimeSformer), CLS token, learned space and time positional embeddings.
- ``AudioCNN``: a small 2D CNN on log-mel spectrograms (``polymodal.video.audio.LogMel``).

Every clip model takes ``(B, T, C, H, W)`` clips in [0, 1] (the family's layout) and offers
``forward(x) -> logits`` and ``forward_features(x) -> ClipOutput(logits, pooled, fmap)`` where ``pooled`` is the
(B, D) feature before the classifier and ``fmap`` the last feature map ``(B, C, T', H', W')`` (for the ViT: the
patch tokens arranged on their grid). ``count_parameters`` and ``count_macs`` (forward hooks) give the model sizes
the Dual-Teacher KD table reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.video.audio import LogMel


class ClipOutput(NamedTuple):
    logits: torch.Tensor
    pooled: torch.Tensor
    fmap: torch.Tensor


def _check_clip(x: torch.Tensor, who: str) -> None:
    if x.dim() != 5:
        raise ValueError(f"{who} expects clips (B, T, C, H, W), got shape {tuple(x.shape)}")


# ------------------------------------------------------------------------------------------ CNNs
class SeparableBlock3D(nn.Module):
    """Pointwise -> depthwise 3x3x3 (spatial stride) -> pointwise, BN after each, residual (projected if needed)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 2):
        super().__init__()
        mid = c_out * expand
        self.pw1 = nn.Sequential(nn.Conv3d(c_in, mid, 1, bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True))
        self.dw = nn.Sequential(
            nn.Conv3d(mid, mid, 3, stride=(1, stride, stride), padding=1, groups=mid, bias=False),
            nn.BatchNorm3d(mid), nn.ReLU(inplace=True))
        self.pw2 = nn.Sequential(nn.Conv3d(mid, c_out, 1, bias=False), nn.BatchNorm3d(c_out))
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else
                     nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False),
                                   nn.BatchNorm3d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw2(self.dw(self.pw1(x))) + self.skip(x))


class Factorised21Block(nn.Module):
    """R(2+1)D residual block (Tran et al., CVPR 2018): a full 1x3x3 spatial convolution (spatial stride) then a full
    3x1x1 temporal one, BN after each, residual (projected if needed). The CPU-fast block: PyTorch has no fast CPU
    kernel for depthwise 3D convolutions, so this block trains ~5x faster than ``SeparableBlock3D`` per clip."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv3d(c_in, c_out, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
            nn.BatchNorm3d(c_out), nn.ReLU(inplace=True))
        self.temporal = nn.Sequential(nn.Conv3d(c_out, c_out, (3, 1, 1), padding=(1, 0, 0), bias=False),
                                      nn.BatchNorm3d(c_out))
        self.skip = (nn.Identity() if c_in == c_out and stride == 1 else
                     nn.Sequential(nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False),
                                   nn.BatchNorm3d(c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.temporal(self.spatial(x)) + self.skip(x))


BLOCKS = {"r2plus1d": Factorised21Block, "separable": SeparableBlock3D}


class TinyX3D(nn.Module):
    """Lightweight 3D CNN of the X3D family shape (spec 1.4): a 1x3x3 stem, ``widths`` / ``blocks`` per stage,
    spatial stride 2 per stage, global pooling, linear head. ``block="separable"`` is X3D's depthwise-separable
    3x3x3 block; the default ``"r2plus1d"`` factorises space and time with full convolutions, which is ~5x faster
    on a CPU at these sizes (a documented departure: same stages, widths and strides)."""

    def __init__(self, n_classes: int, widths: Sequence[int] = (16, 32, 64), blocks: Sequence[int] = (1, 1, 1),
                 in_channels: int = 3, stem_width: int | None = None, dropout: float = 0.0,
                 block: str = "r2plus1d"):
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError(f"widths and blocks need the same non-zero length, got {widths} and {blocks}")
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(nn.Conv3d(in_channels, stem, (1, 3, 3), padding=(0, 1, 1), bias=False),
                                  nn.BatchNorm3d(stem), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        c = stem
        for w, n in zip(widths, blocks, strict=True):
            for b in range(n):
                layers.append(BLOCKS[block](c, w, stride=2 if b == 0 else 1))
                c = w
        self.stages = nn.Sequential(*layers)
        self.feat_dim = c
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(c, n_classes)

    def forward_features(self, x: torch.Tensor) -> ClipOutput:
        _check_clip(x, type(self).__name__)
        fmap = self.stages(self.stem(x.transpose(1, 2)))  # (B, C, T, H, W)
        pooled = fmap.mean(dim=(2, 3, 4))
        return ClipOutput(self.head(self.dropout(pooled)), pooled, fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits


def make_student(n_classes: int, *, block: str = "r2plus1d") -> TinyX3D:
    """The lightweight student of spec 1.4 (16/32/64 channels, one block per stage)."""
    return TinyX3D(n_classes, widths=(16, 32, 64), blocks=(1, 1, 1), block=block)


def make_cnn_teacher(n_classes: int, *, block: str = "r2plus1d") -> TinyX3D:
    """The homogeneous CNN teacher of spec 1.4 (same family, 32/64/128 channels, two blocks per stage)."""
    return TinyX3D(n_classes, widths=(32, 64, 128), blocks=(2, 2, 2), block=block)


# ------------------------------------------------------------------------------------------ ViT
class Attention(nn.Module):
    """Multi-head self-attention written out (so ``count_macs`` can see the two matmuls)."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.dropout = dropout
        self.matmul_macs = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        self.matmul_macs = 2 * b * n * n * d  # QK^T and AV
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class DividedBlock(nn.Module):
    """TimeSformer divided space-time block: temporal attention, then spatial attention (with CLS), then MLP."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm_t, self.attn_t = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.norm_s, self.attn_s = nn.LayerNorm(width), Attention(width, heads, dropout)
        self.norm_m = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, cls: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, n, d = x.shape  # cls: (B, 1, D)
        xt = x.permute(0, 2, 1, 3).reshape(b * n, t, d)
        xt = xt + self.attn_t(self.norm_t(xt))
        x = xt.reshape(b, n, t, d).permute(0, 2, 1, 3)
        # spatial attention per frame, the CLS token replicated into every frame and averaged back
        xs = torch.cat([cls.expand(b, t, d).reshape(b * t, 1, d), x.reshape(b * t, n, d)], dim=1)
        xs = xs + self.attn_s(self.norm_s(xs))
        cls = xs[:, :1].reshape(b, t, d).mean(dim=1, keepdim=True)
        x = xs[:, 1:].reshape(b, t, n, d)
        cls = cls + self.mlp(self.norm_m(cls))
        x = x + self.mlp(self.norm_m(x))
        return cls, x


class TinyVideoViT(nn.Module):
    """Video ViT teacher with divided space-time attention (spec 1.4): tubelets ``(2, 8, 8)``, width 128, depth 4,
    4 heads, CLS token, learned positional embeddings sized for ``frames`` x ``size``.

    ``stem="linear"`` is the plain tubelet embedding (one strided convolution = a linear map of each tubelet);
    ``stem="conv"`` (default) computes the same tubelet grid with a small convolutional stem (two 1x3x3
    convolutions, then the strided tubelet projection), the "early convolutions" fix of Xiao et al. (NeurIPS 2021)
    for ViTs trained from scratch on little data: with the linear stem our ViT stays at chance on the synthetic
    clips [reconstruction; the attention body is unchanged]. ``stem="strided"`` is Xiao et al.'s own design: 3x3
    stride-2 convolutions (widths up to ``width / 2``) down to the tubelet grid, then a ``tt x 1 x 1`` temporal
    projection; ~10x fewer stem MACs than ``"conv"`` at 32 px (docs/methods/video-data.md)."""

    def __init__(self, n_classes: int, *, frames: int = 8, size: int = 32, tubelet: Sequence[int] = (2, 8, 8),
                 width: int = 128, depth: int = 4, heads: int = 4, in_channels: int = 3, dropout: float = 0.0,
                 stem: str = "conv", stem_width: int = 32):
        super().__init__()
        tt, th, tw = tubelet
        if frames % tt or size % th or size % tw:
            raise ValueError(f"frames {frames} and size {size} must be multiples of the tubelet {tuple(tubelet)}")
        if stem not in ("conv", "linear", "strided"):
            raise ValueError(f"stem must be 'conv', 'linear' or 'strided', got {stem!r}")
        if stem == "strided" and (th != tw or th not in (2, 4, 8, 16)):
            raise ValueError(f"stem='strided' needs a square power-of-two tubelet side (2..16), got {th}x{tw}")
        self.frames, self.size, self.tubelet = frames, size, (tt, th, tw)
        self.grid = (frames // tt, size // th, size // tw)
        proj = nn.Conv3d(in_channels if stem == "linear" else stem_width, width, kernel_size=(tt, th, tw),
                         stride=(tt, th, tw))
        if stem == "linear":
            self.embed = proj
        elif stem == "strided":
            layers: list[nn.Module] = []
            c, n_down = in_channels, th.bit_length() - 1
            for i in range(n_down):  # 3x3 stride-2 convolutions down to the tubelet grid, widths ... w/4, w/2
                w = max(width >> (n_down - i), 8)
                layers += [nn.Conv3d(c, w, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
                           nn.BatchNorm3d(w), nn.ReLU(inplace=True)]
                c = w
            layers.append(nn.Conv3d(c, width, (tt, 1, 1), stride=(tt, 1, 1)))  # temporal tubelet projection
            self.embed = nn.Sequential(*layers)
        else:
            self.embed = nn.Sequential(
                nn.Conv3d(in_channels, stem_width, (1, 3, 3), padding=(0, 1, 1), bias=False),
                nn.BatchNorm3d(stem_width), nn.ReLU(inplace=True),
                nn.Conv3d(stem_width, stem_width, (1, 3, 3), padding=(0, 1, 1), bias=False),
                nn.BatchNorm3d(stem_width), nn.ReLU(inplace=True), proj)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_space = nn.Parameter(torch.zeros(1, 1, self.grid[1] * self.grid[2], width))
        self.pos_time = nn.Parameter(torch.zeros(1, self.grid[0], 1, width))
        for p in (self.cls, self.pos_space, self.pos_time):
            nn.init.trunc_normal_(p, std=0.02)
        self.blocks = nn.ModuleList(DividedBlock(width, heads, dropout=dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.feat_dim = width
        self.head = nn.Linear(width, n_classes)

    def forward_features(self, x: torch.Tensor) -> ClipOutput:
        _check_clip(x, type(self).__name__)
        if x.shape[1] != self.frames or x.shape[-1] != self.size or x.shape[-2] != self.size:
            raise ValueError(f"TinyVideoViT was built for {self.frames} frames of {self.size}x{self.size}, got "
                             f"{tuple(x.shape[1:])}; build it with frames=/size= matching the data")
        tok = self.embed(x.transpose(1, 2))  # (B, D, T', H', W')
        b, d, t, h, w = tok.shape
        tok = tok.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, d) + self.pos_space + self.pos_time
        cls = self.cls.expand(b, 1, d)
        for blk in self.blocks:
            cls, tok = blk(cls, tok)
        pooled = self.norm(cls[:, 0])
        fmap = self.norm(tok).reshape(b, t, h, w, d).permute(0, 4, 1, 2, 3)
        return ClipOutput(self.head(pooled), pooled, fmap)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).logits


def make_vit_teacher(n_classes: int, *, frames: int = 8, size: int = 32, stem: str = "conv") -> TinyVideoViT:
    return TinyVideoViT(n_classes, frames=frames, size=size, stem=stem)


# ------------------------------------------------------------------------------------------ audio
class AudioCNN(nn.Module):
    """Log-mel front end + four conv blocks (16, 32, 64, 64) + global pooling + linear (spec 2.5)."""

    def __init__(self, n_classes: int, *, sample_rate: int = 16000, n_mels: int = 64,
                 widths: Sequence[int] = (16, 32, 64, 64)):
        super().__init__()
        self.logmel = LogMel(sample_rate=sample_rate, n_mels=n_mels)
        self.norm = nn.BatchNorm2d(1)
        layers: list[nn.Module] = []
        c = 1
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*layers)
        self.feat_dim = c
        self.head = nn.Linear(c, n_classes)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(self.logmel(wave))).amax(dim=(2, 3))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(wave))


# ------------------------------------------------------------------------------------------ size
def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass on ``example``, counted with forward hooks on convolutions, linear
    layers and the attention matmuls (normalisation, activations and pooling are not counted, as usual)."""
    total = 0
    hooks = []

    def conv_hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = 1
        for s in m.kernel_size:
            k *= s
        total += out.numel() * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Module, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    def attn_hook(m: Attention, inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += m.matmul_macs

    for mod in model.modules():
        if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            hooks.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, Attention):
            hooks.append(mod.register_forward_hook(attn_hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return int(total)

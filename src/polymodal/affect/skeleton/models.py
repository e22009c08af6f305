"""The neural paradigms of the survey (spec affect.md 3.4), in plain PyTorch.

- :class:`STGCN` (End2EndNet): spatial graph convolution with the normalised skeleton adjacency
  ``D^-1/2 (A + I) D^-1/2`` (or ST-GCN's spatial partitions) + temporal convolution (kernel 9), residual blocks,
  global pooling, linear head (Yan et al., AAAI'18). Inputs ``(N, T, J, 3)``; any T.
- :class:`STEPNet` (FeatFusionNet, STEP): the ST-GCN embedding concatenated with the affective features, then an
  MLP (Bhattacharya et al., AAAI'20).
- :class:`SkeletonImageCNN` (Feat2Net, ProxEmo-style): the sequence encoded as an image (time x joints, xyz as
  channels, resampled to 32 x 16), optionally four views rotated about the up axis, a group-convolution 2D CNN
  with one group per view (Narayanan et al., IROS'20).

No input normalisation per joint (ST-GCN's ``data_bn`` over J x C) so that relabelling the joints together with
the adjacency leaves the output unchanged (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from polymodal.affect.skeleton.skeleton import Skeleton16


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def graph_matrices(skeleton: Skeleton16 | None = None, partition: str = "uniform") -> np.ndarray:
    """``(K, J, J)`` graph matrices: ``uniform`` = the normalised adjacency (K = 1), ``spatial`` = ST-GCN's three
    partitions (self / centripetal / centrifugal)."""
    sk = skeleton or Skeleton16()
    if partition == "uniform":
        return sk.normalized_adjacency()[None]
    if partition == "spatial":
        return sk.spatial_partitions()
    raise ValueError(f"partition must be 'uniform' or 'spatial', got {partition!r}")


class STGCNBlock(nn.Module):
    """One ST-GCN unit: ``sum_k A_k X W_k`` (1x1 conv per partition), BN, ReLU, temporal conv, BN, residual."""

    def __init__(self, c_in: int, c_out: int, k_partitions: int, temporal_kernel: int = 9, stride: int = 1,
                 dropout: float = 0.0, residual: bool = True):
        super().__init__()
        self.k = k_partitions
        self.gcn = nn.Conv2d(c_in, c_out * k_partitions, 1)
        pad = (temporal_kernel - 1) // 2
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, (temporal_kernel, 1), (stride, 1), (pad, 0)),
            nn.BatchNorm2d(c_out), nn.Dropout(dropout),
        )
        if not residual:
            self.residual = None
        elif c_in == c_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(c_in, c_out, 1, (stride, 1)), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:  # x: (N, C, T, V), a: (K, V, V)
        n, _, t, v = x.shape
        y = self.gcn(x).view(n, self.k, -1, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, a)
        y = self.tcn(y)
        if self.residual is not None:
            y = y + self.residual(x)
        return self.relu(y)


class STGCN(nn.Module):
    """ST-GCN on raw joints (End2EndNet). ``forward(x)`` with ``x`` (N, T, J, C) -> logits (N, num_classes);
    ``embed(x)`` -> pooled features (N, channels[-1]).

    ``adjacency``: ``(J, J)`` or ``(K, J, J)`` graph matrices (default: the normalised Skeleton16 adjacency). It is
    a non-persistent buffer, so one ``state_dict`` serves any relabelling of the joints.
    ``motion=True`` (default) feeds each joint's position relative to the frame's joint centroid plus its
    velocity (finite difference) instead of raw coordinates: 2 x ``in_channels`` inputs, in the spirit of the
    joint + motion streams of 2s-AGCN / MS-G3D [reconstruction; raw xyz trains to ~78% vs ~89% on our synthetic
    gaits]. The centroid (not the root) keeps the model invariant to joint relabelling."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, adjacency: np.ndarray | torch.Tensor | None = None,
                 channels: tuple[int, ...] = (64, 64, 128, 128), strides: tuple[int, ...] | None = None,
                 temporal_kernel: int = 9, dropout: float = 0.0, partition: str = "uniform", motion: bool = True):
        super().__init__()
        self.motion = motion
        a = graph_matrices(partition=partition) if adjacency is None else adjacency
        a = torch.as_tensor(np.asarray(a), dtype=torch.float32)
        if a.dim() == 2:
            a = a[None]
        self.register_buffer("adjacency", a, persistent=False)
        if strides is None:
            strides = tuple(2 if i > 0 and channels[i] != channels[i - 1] else 1 for i in range(len(channels)))
        if len(strides) != len(channels):
            raise ValueError("strides and channels must have the same length")
        c = 2 * in_channels if motion else in_channels
        self.input_bn = nn.BatchNorm1d(c)  # per input channel, shared by all joints
        blocks = []
        for i, (co, s) in enumerate(zip(channels, strides, strict=True)):
            blocks.append(STGCNBlock(c, co, a.shape[0], temporal_kernel, s, dropout, residual=i > 0))
            c = co
        self.blocks = nn.ModuleList(blocks)
        self.embed_dim = c
        self.head = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, T, J, C)`` coordinates -> the network's input channels (see ``motion``)."""
        if not self.motion:
            return x
        vel = torch.diff(x, dim=1, prepend=x[:, :1])
        return torch.cat([x - x.mean(dim=2, keepdim=True), vel], dim=-1)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inputs(x)
        n, t, v, c = x.shape
        h = self.input_bn(x.reshape(n, t * v, c).transpose(1, 2)).view(n, c, t, v)
        for blk in self.blocks:
            h = blk(h, self.adjacency)
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class STEPNet(nn.Module):
    """STEP-style FeatFusionNet: ST-GCN embedding ⊕ affective features -> MLP. ``forward(x, feats)``; the features
    should be standardised (the recipe fits the scaler on the training fold)."""

    def __init__(self, num_classes: int = 4, num_features: int = 29, adjacency=None,
                 channels: tuple[int, ...] = (64, 64, 128, 128), temporal_kernel: int = 9, hidden: int = 64,
                 dropout: float = 0.2, partition: str = "uniform", motion: bool = True):
        super().__init__()
        self.backbone = STGCN(0, 3, adjacency, channels, temporal_kernel=temporal_kernel, partition=partition,
                              motion=motion)
        self.mlp = nn.Sequential(
            nn.Linear(self.backbone.embed_dim + num_features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.backbone.embed(x), feats], dim=1))


# ---------------------------------------------------------------------------------------------- Feat2Net


def skeleton_to_image(x: torch.Tensor, size: tuple[int, int] = (32, 16), views: int = 4, up_axis: int = 1
                      ) -> torch.Tensor:
    """ProxEmo-style encoding: ``(N, T, J, 3)`` -> ``(N, 3 * views, H, W)``. Each gait is centred on its mean root
    position, rotated about the up axis by ``360 / views`` degrees per view, resampled to ``H`` frames (rows) and
    ``W`` joint columns (joints in skeleton order, linearly resampled when J != W) and scaled by its largest
    absolute coordinate so values lie in [-1, 1] [reconstruction of ProxEmo's image encoding]."""
    n, t, j, c = x.shape
    x = x - x[:, :, :1].mean(dim=1, keepdim=True)
    out = []
    ax = [a for a in range(3) if a != up_axis]
    for k in range(views):
        ang = 2 * math.pi * k / views
        co, si = math.cos(ang), math.sin(ang)
        r = x.clone()
        r[..., ax[0]] = co * x[..., ax[0]] - si * x[..., ax[1]]
        r[..., ax[1]] = si * x[..., ax[0]] + co * x[..., ax[1]]
        img = r.permute(0, 3, 1, 2)  # (N, 3, T, J)
        img = nn.functional.interpolate(img, size=size, mode="bilinear", align_corners=True)
        out.append(img)
    img = torch.cat(out, dim=1)
    scale = img.abs().flatten(1).amax(1).clamp_min(1e-6).view(n, 1, 1, 1)
    return img / scale


class SkeletonImageCNN(nn.Module):
    """Feat2Net (ProxEmo-style): skeleton image (:func:`skeleton_to_image`) -> group-convolution CNN, one group per
    view, views merged before the head. ``forward(x)`` with ``x`` (N, T, J, 3)."""

    def __init__(self, num_classes: int = 4, views: int = 4, width: int = 16, size: tuple[int, int] = (32, 16),
                 dropout: float = 0.2, up_axis: int = 1):
        super().__init__()
        self.views, self.size, self.up_axis = views, size, up_axis
        g, w = views, width

        def block(ci, co, stride):
            return nn.Sequential(nn.Conv2d(ci * g, co * g, 3, stride, 1, groups=g), nn.BatchNorm2d(co * g),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(3, w, 1), block(w, 2 * w, 2), block(2 * w, 2 * w, 1),
                                      block(2 * w, 4 * w, 2))
        self.merge = nn.Sequential(nn.Conv2d(4 * w * g, 4 * w, 1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(4 * w, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        img = skeleton_to_image(x, self.size, self.views, self.up_axis)
        h = self.merge(self.features(img))
        return self.head(h.mean(dim=(2, 3)))

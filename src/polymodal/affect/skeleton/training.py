"""Training and evaluation of the neural paradigms on gait tensors (spec affect.md 3.4, 3.7) [reconstruction].

Adam with cosine decay, cross-entropy, random mirroring (x -> -x with the left/right swap: emotion is mirror
invariant) and small random rotations about the up axis as augmentation. Inputs are canonicalised with
:func:`~polymodal.affect.skeleton.skeleton.normalize_sequence` and resampled to a common length by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from polymodal.affect.skeleton.skeleton import Skeleton16


def augment(x: torch.Tensor, skeleton: Skeleton16, gen: torch.Generator, rotate_deg: float = 10.0,
            mirror: bool = True) -> torch.Tensor:
    """Random mirror (half the batch) and rotation about the up axis of a ``(N, T, J, 3)`` batch."""
    n = x.shape[0]
    x = x.clone()
    if mirror:
        flip = torch.rand(n, generator=gen) < 0.5
        if flip.any():
            m = x[flip][:, :, list(skeleton.mirror_map)]
            m[..., skeleton.lateral_axis] *= -1
            x[flip] = m
    if rotate_deg > 0:
        ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotate_deg)
        c, s = torch.cos(ang).view(n, 1, 1), torch.sin(ang).view(n, 1, 1)
        a, b = skeleton.lateral_axis, skeleton.forward_axis
        xa, xb = x[..., a].clone(), x[..., b].clone()
        x[..., a] = c * xa - s * xb
        x[..., b] = s * xa + c * xb
    return x


def fit_network(model: nn.Module, x: np.ndarray, y: np.ndarray, feats: np.ndarray | None = None, *,
                epochs: int = 60, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 32, seed: int = 0,
                skeleton: Skeleton16 | None = None, augment_data: bool = True, device: str = "cpu",
                on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """Train ``model`` on gaits ``x`` (N, T, J, 3) (and ``feats`` (N, F) for two-input models); returns the mean
    training loss per epoch."""
    sk = skeleton or Skeleton16()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    ft = None if feats is None else torch.as_tensor(feats, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(xt) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for ep in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        total, count = 0.0, 0
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            xb = xt[idx]
            if augment_data:
                # feature inputs stay as computed: mirroring swaps left/right features, which the MLP sees as noise
                xb = augment(xb, sk, gen)
            xb, yb = xb.to(device), yt[idx].to(device)
            out = model(xb) if ft is None else model(xb, ft[idx].to(device))
            loss = loss_fn(out, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        losses.append(total / max(count, 1))
        if on_epoch is not None:
            on_epoch(ep, losses[-1])
    return losses


@torch.no_grad()
def predict_network(model: nn.Module, x: np.ndarray, feats: np.ndarray | None = None, batch_size: int = 128,
                    device: str = "cpu") -> np.ndarray:
    model.to(device).eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    ft = None if feats is None else torch.as_tensor(feats, dtype=torch.float32)
    preds = []
    for i in range(0, len(xt), batch_size):
        xb = xt[i:i + batch_size].to(device)
        out = model(xb) if ft is None else model(xb, ft[i:i + batch_size].to(device))
        preds.append(out.argmax(1).cpu())
    return torch.cat(preds).numpy() if preds else np.zeros(0, dtype=np.int64)

"""Plain-PyTorch models for the federated family (spec ``federated.md`` 1.3; no torchvision).

Every model here is a :class:`FeatureClassifier`: ``features(x)`` gives the representation the methods work on
(FedSM's prototypes and pseudo-features, FedPall's adversarial / prototype terms, FedProto's prototypes) and
``head`` maps it to logits; ``forward = head(features(x))``. Parameter groups ("body" / "head", BatchNorm or
not) are selected by name with :func:`param_mask`, in the ``parameters_to_vector`` order the engine uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from polymodal.core.errors import ConfigError

__all__ = ["MLPNet", "SmallCNN", "ResNet8", "MLPHead", "FeatureClassifier", "param_mask", "param_names",
           "is_bn_param", "is_head_param", "bn_modules"]


class FeatureClassifier(nn.Module):
    """``body`` (input -> feature) and ``head`` (feature -> logits); ``feat_dim`` is the feature size."""

    body: nn.Module
    head: nn.Module
    feat_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLPNet(FeatureClassifier):
    """Flat input -> Linear(hidden) -> ReLU -> Linear(feat_dim) (the feature, no activation, as FedSM's extra
    linear layer) -> Linear(n_classes). For the 8x8 digits and flattened 28x28 images."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 128, feat_dim: int = 64):
        super().__init__()
        self.feat_dim = feat_dim
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, feat_dim))
        self.head = nn.Linear(feat_dim, n_classes)


class SmallCNN(FeatureClassifier):
    """Two conv blocks (conv3x3-BN-ReLU-maxpool; 16 and 32 channels x ``width``) -> average pool to a ``pool`` x
    ``pool`` grid (1 = global) -> Linear(feat_dim) -> ReLU: FedPall's CPU stand-in for ResNet-50 (spec 1.3 / 3.3).
    ``head``: an :class:`MLPHead` when ``head_hidden`` > 0 (FedPall's head), else one Linear. Global pooling after
    two blocks discards where strokes are: on the digit domains a 3x3 grid reaches in 10 epochs the accuracy
    global pooling needs 40 for (measured for FedPall)."""

    def __init__(self, in_ch: int, n_classes: int, feat_dim: int = 128, width: int = 1, head_hidden: int = 0,
                 pool: int = 1):
        super().__init__()
        if pool < 1:
            raise ConfigError(f"SmallCNN: pool must be >= 1, got {pool}")
        c1, c2 = 16 * width, 32 * width
        self.feat_dim = feat_dim
        self.pool = int(pool)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(self.pool), nn.Flatten(), nn.Linear(c2 * self.pool**2, feat_dim), nn.ReLU())
        self.head = MLPHead(feat_dim, n_classes, head_hidden) if head_hidden else nn.Linear(feat_dim, n_classes)


class MLPHead(nn.Sequential):
    """FedPall's head / global classifier G (spec 3.3): feat -> hidden (BN, ReLU) -> hidden (BN, ReLU) -> C."""

    def __init__(self, feat_dim: int, n_classes: int, hidden: int = 512):
        super().__init__(nn.Linear(feat_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, n_classes))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.short(x))


class ResNet8(FeatureClassifier):
    """FedSM's ResNet-8 (spec 1.3, official ``Model/Resnet8_256.py``): stem conv3x3(16w) -> three BasicBlocks
    (16w, 32w, 64w; strides 1, 2, 2) -> global average pool -> Linear(64w -> feat_dim, no activation) = the
    feature -> Linear(feat_dim -> C). Paper: width 4, feat_dim 512; CI default width 1 [reconstruction]."""

    def __init__(self, in_ch: int, n_classes: int, width: int = 1, feat_dim: int = 512):
        super().__init__()
        c = [16 * width, 32 * width, 64 * width]
        self.feat_dim = feat_dim
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, c[0], 3, 1, 1, bias=False), nn.BatchNorm2d(c[0]), nn.ReLU(),
            _BasicBlock(c[0], c[0], 1), _BasicBlock(c[0], c[1], 2), _BasicBlock(c[1], c[2], 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[2], feat_dim))
        self.head = nn.Linear(feat_dim, n_classes)


# ---------------------------------------------------------------------------------------------- parameter groups
def param_names(model: nn.Module) -> list[str]:
    """Parameter names in ``parameters_to_vector`` order."""
    return [n for n, _ in model.named_parameters()]


def bn_modules(model: nn.Module) -> set[str]:
    """Names (prefixes) of the BatchNorm modules of ``model``."""
    return {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def is_bn_param(model: nn.Module) -> Callable[[str], bool]:
    """Predicate: is parameter ``name`` a BatchNorm affine parameter (FedBN keeps these local)."""
    bns = bn_modules(model)
    return lambda name: name.rsplit(".", 1)[0] in bns


def is_head_param(name: str) -> bool:
    """Predicate: is parameter ``name`` part of the classifier head (FedPer / FedRep keep it personal)."""
    return name.startswith("head.")


def param_mask(model: nn.Module, predicate: Callable[[str], bool]) -> torch.Tensor:
    """A bool vector over ``parameters_to_vector(model.parameters())``: True where ``predicate(name)`` holds."""
    parts = [torch.full((p.numel(),), bool(predicate(n))) for n, p in model.named_parameters()]
    if not parts:
        raise ConfigError(f"{type(model).__name__} has no parameters")
    return torch.cat(parts)

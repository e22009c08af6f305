"""FedProto: federated prototype learning (Tan et al., AAAI 2022) as a FedPall baseline (spec ``federated.md`` 1.4).

Clients keep personal models (nothing is averaged). After local training each client uploads, per class, the
mean feature of its training samples and the sample count; the server's global prototype of class ``c`` is the
count-weighted mean ``P_c = sum_k n_kc mu_kc / sum_k n_kc`` of the clients' means. Local loss:
``CE + lambda * d(f, P_y)`` with ``lambda = 1`` [reconstruction, spec 1.4]; ``d`` is ``nn.MSELoss`` (mean over
the batch and the feature dimensions) as in the official FedProto and FedPall code (``proto_distance="mse"``),
or the squared Euclidean distance averaged over the batch (``"sq_l2"``). Samples whose class has no global
prototype yet (round 1, or a class no client holds) get no prototype term. Prediction: the local head
(``predict="head"``, default) or the nearest global prototype (``predict="prototype"``).

The prototype helpers (:func:`class_means`, :func:`average_prototypes`, :func:`pack_prototypes`) are shared
with FedPall, whose server uses the same count-weighted rule on *normalised* client means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms.personal import PersonalClient
from polymodal.federated.core import FitResult, score_test_split

__all__ = ["class_means", "average_prototypes", "pack_prototypes", "unpack_prototypes", "prototype_distance",
           "nearest_prototype", "FedProtoClient", "FedProto", "PROTO_DISTANCES"]

PROTO_DISTANCES = ("mse", "sq_l2")


# ---------------------------------------------------------------------------------------------- prototype math
def class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean feature ``(C, d)`` (zeros for absent classes) and per-class counts ``(C,)`` (float)."""
    labels = labels.long()
    counts = torch.bincount(labels, minlength=n_classes).float()
    sums = torch.zeros(n_classes, features.shape[1], dtype=features.dtype).index_add_(0, labels, features)
    return sums / counts.clamp(min=1)[:, None], counts


def average_prototypes(means: torch.Tensor, counts: torch.Tensor, *, normalise: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Global prototypes from clients' class means ``(K, C, d)`` and counts ``(K, C)``:
    ``P_c = sum_k n_kc m_kc / sum_k n_kc`` with ``m_kc = mu_kc`` (FedProto) or ``mu_kc / ||mu_kc||``
    (``normalise``: FedPall / FedSM, spec 3.4 step 4). Returns ``(P (C, d), valid (C,) bool)``; classes no
    client holds get a zero prototype and ``valid = False``."""
    if means.ndim != 3 or counts.shape != means.shape[:2]:
        raise ConfigError(f"means must be (K, C, d) and counts (K, C); got {tuple(means.shape)} and "
                          f"{tuple(counts.shape)}")
    m = nn.functional.normalize(means, dim=2) if normalise else means
    total = counts.sum(0)
    protos = (counts[:, :, None] * m).sum(0) / total.clamp(min=1e-12)[:, None]
    valid = total > 0
    return torch.where(valid[:, None], protos, torch.zeros_like(protos)), valid


def pack_prototypes(protos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[P.flatten(), valid]`` as one float32 vector (what the server sends down)."""
    return torch.cat([protos.reshape(-1).float(), valid.float()])


def unpack_prototypes(vec: torch.Tensor, n_classes: int, feat_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = n_classes * feat_dim
    if vec.numel() != n + n_classes:
        raise ConfigError(f"prototype vector has {vec.numel()} entries, expected {n + n_classes} "
                          f"({n_classes} classes x {feat_dim} dims + {n_classes} flags)")
    return vec[:n].view(n_classes, feat_dim).float(), vec[n:] > 0.5


def prototype_distance(features: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor, valid: torch.Tensor,
                       distance: str = "mse") -> torch.Tensor:
    """FedProto's regulariser between features and their class's global prototype, over the samples whose
    class has one (0 when none has). ``"mse"``: mean over samples and dimensions (``nn.MSELoss``, the official
    code); ``"sq_l2"``: squared Euclidean distance, mean over samples."""
    if distance not in PROTO_DISTANCES:
        raise ConfigError(f"proto_distance {distance!r} is not one of {', '.join(PROTO_DISTANCES)}")
    keep = valid[labels]
    if not bool(keep.any()):
        return features.sum() * 0.0
    diff = (features[keep] - protos[labels[keep]].to(features.dtype)).pow(2)
    return diff.mean() if distance == "mse" else diff.sum(1).mean()


def nearest_prototype(features: torch.Tensor, protos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Class of the nearest valid prototype (Euclidean) for each feature row."""
    dist = torch.cdist(features, protos.to(features.dtype))
    dist[:, ~valid] = float("inf")
    return dist.argmin(1)


# ---------------------------------------------------------------------------------------------- client
class FedProtoClient(PersonalClient):
    """A personal model trained with CE + lambda * d(f, P_y); uploads class means and counts, never weights.

    ``n_classes``: the label space; ``predict``: "head" (the local head, default) or "prototype" (nearest
    global prototype) for :meth:`evaluate`. ``config`` (set by :class:`FedProto`): ``proto_lambda``,
    ``proto_distance`` plus :class:`PersonalClient`'s ``lr`` / ``local_epochs`` / ``batch_size`` / ``momentum``."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 n_classes: int, predict: str = "head", **kwargs: Any):
        if predict not in ("head", "prototype"):
            raise ConfigError(f"field 'predict': {predict!r} is not 'head' or 'prototype'")
        kwargs["share"] = "none"
        super().__init__(cid, model_fn, x, y, **kwargs)
        self.n_classes, self.feat_dim, self.predict_by = int(n_classes), int(self.model.feat_dim), predict
        self._protos: tuple[torch.Tensor, torch.Tensor] | None = None

    def extra_loss(self, x, y, feats, logits, config):
        if self._protos is None or not bool(self._protos[1].any()):
            return None
        protos, valid = self._protos
        return float(config.get("proto_lambda", 1.0)) * prototype_distance(
            feats, y, protos.to(feats.device), valid.to(feats.device), str(config.get("proto_distance", "mse")))

    def training_features(self, batch_size: int = 256) -> torch.Tensor:
        """Features of the whole training set, eval mode."""
        self.model.eval()
        with torch.no_grad():
            return torch.cat([self.model.features(self.x[i:i + batch_size].to(self.device)).cpu()
                              for i in range(0, self.num_examples, batch_size)])

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        self._protos = unpack_prototypes(download, self.n_classes, self.feat_dim)
        loss = self.train_local(config, rng)
        means, counts = class_means(self.training_features(), self.y, self.n_classes)
        return FitResult(torch.zeros(0), self.num_examples, {"loss": loss},
                         arrays={"protos": means.float(), "counts": counts.float()})

    def predict(self, x: torch.Tensor, params: torch.Tensor | None = None) -> torch.Tensor:
        """Labels for ``x``: the local head, or (``predict="prototype"`` and ``params`` given) the nearest
        valid global prototype (the head while no prototype exists)."""
        self.model.eval()
        with torch.no_grad():
            feats = self.model.features(x.to(self.device))
            if self.predict_by == "prototype" and params is not None:
                protos, valid = unpack_prototypes(params, self.n_classes, self.feat_dim)
                if bool(valid.any()):
                    return nearest_prototype(feats.cpu(), protos, valid)
            return self.model.head(feats).argmax(1).cpu()

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        """Accuracy of the personal model on the own test split (prediction rule: ``predict``)."""
        return score_test_split(self, lambda x: self.predict(x, params))


# ---------------------------------------------------------------------------------------------- server
class FedProto:
    """FedProto's server: the global vector is ``[P.flatten(), valid]`` (:func:`pack_prototypes`);
    ``aggregate_fit`` replaces it by the count-weighted mean of the uploaded class means.

    ``config``: what clients train with (``lr``, ``local_epochs``, ``batch_size``), plus ``proto_lambda``
    (default 1) and ``proto_distance`` ("mse"). The prediction rule is the clients' (``FedProtoClient``)."""

    upload_like_download = False

    def __init__(self, n_classes: int, feat_dim: int, *, proto_lambda: float = 1.0, proto_distance: str = "mse",
                 name: str = "fedproto", **config: Any):
        if proto_distance not in PROTO_DISTANCES:
            raise ConfigError(f"field 'proto_distance': {proto_distance!r} is not one of {', '.join(PROTO_DISTANCES)}")
        if proto_lambda < 0:
            raise ConfigError(f"field 'proto_lambda': must be >= 0, got {proto_lambda}")
        self.n_classes, self.feat_dim, self.name = int(n_classes), int(feat_dim), name
        self.config = {"lr": 0.01, "local_epochs": 1, "batch_size": 64, **config, "n_classes": self.n_classes,
                       "feat_dim": self.feat_dim, "proto_lambda": float(proto_lambda),
                       "proto_distance": proto_distance}

    def initial_vector(self) -> torch.Tensor:
        """No prototypes yet: zeros, every class invalid."""
        return torch.zeros(self.n_classes * self.feat_dim + self.n_classes)

    def initialize(self, params: torch.Tensor) -> None:
        unpack_prototypes(params, self.n_classes, self.feat_dim)  # checks the size

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return params.clone(), dict(self.config)

    def aggregate_fit(self, rnd, params, results):
        if not results:
            return params, {}
        for cid, r in results:
            if "protos" not in r.arrays or "counts" not in r.arrays:
                raise ConfigError(f"client {cid}: a FedProto upload needs arrays 'protos' and 'counts'")
        means = torch.stack([r.arrays["protos"].float() for _, r in results])
        counts = torch.stack([r.arrays["counts"].float() for _, r in results])
        protos, valid = average_prototypes(means, counts)
        return pack_prototypes(protos, valid), {"valid_prototypes": float(valid.sum())}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

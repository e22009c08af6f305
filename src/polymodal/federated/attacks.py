"""Byzantine attacks for robust-aggregation experiments (spec federated.md 5.4, used by Byrd-NAFL 5.2).

Model-update attacks take the honest clients' vectors (gradients or model deltas), rows of an ``(n_h, d)``
tensor, and return the ``(n_byz, d)`` vectors the Byzantine clients send. ``apply_attack`` gives them one
interface for a training loop; ``label_flip`` is a data-level attack, applied to the Byzantine clients'
labels before they compute their (then honest-looking) updates.

Defaults follow Byrd-SAGA / the spec: Gaussian sigma^2 = 30, sign flipping c = 4, IPM eps = 0.1.
"""

from __future__ import annotations

import math
import numbers
from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polymodal.core.errors import ConfigError
from polymodal.federated.aggregators import _check_count, check_vectors

__all__ = [
    "ATTACKS",
    "alie",
    "alie_z",
    "apply_attack",
    "gaussian",
    "ipm",
    "label_flip",
    "sign_flip",
    "zero_gradient",
]

ATTACKS: tuple[str, ...] = ("none", "gaussian", "sign_flip", "zero_gradient", "alie", "ipm", "label_flip")

# the keyword options each attack accepts through apply_attack
_OPTIONS: dict[str, tuple[str, ...]] = {
    "none": (),
    "gaussian": ("sigma2",),
    "sign_flip": ("c",),
    "zero_gradient": (),
    "alie": (),
    "ipm": ("eps",),
    "label_flip": (),
}


def _check_real(value: object, name: str, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return float(value)


def _repeat(row: Tensor, n_byz: int) -> Tensor:
    return row.unsqueeze(0).expand(n_byz, -1).clone()


def gaussian(
    honest: Tensor, n_byz: int, sigma2: float = 30.0, generator: torch.Generator | None = None
) -> Tensor:
    """Each Byzantine client sends an independent N(0, sigma2 * I) vector (``honest`` gives only d, dtype, device).

    The noise is drawn on the generator's device and then moved, so a CPU generator seeds CUDA runs too.
    """
    x = check_vectors(honest, "honest", min_rows=0)
    n_byz = _check_count(n_byz, "n_byz")
    sigma2 = _check_real(sigma2, "sigma2", minimum=0.0)
    gen_device = generator.device if generator is not None else x.device
    noise = torch.randn(n_byz, x.shape[1], generator=generator, dtype=x.dtype, device=gen_device)
    return (noise * math.sqrt(sigma2)).to(x.device)


def sign_flip(honest_own: Tensor, c: float = 4.0) -> Tensor:
    """Each Byzantine client sends -c times its own honest vector (rows of ``honest_own``)."""
    x = check_vectors(honest_own, "honest_own", min_rows=0)
    return -_check_real(c, "c") * x


def zero_gradient(honest: Tensor, n_byz: int) -> Tensor:
    """Each Byzantine client sends -(sum of honest rows) / n_byz, so all n vectors sum to 0.

    Exactly 0 where the arithmetic is exact (e.g. small dyadic values); otherwise up to floating-point rounding.
    """
    x = check_vectors(honest, "honest", min_rows=0)
    n_byz = _check_count(n_byz, "n_byz")
    if n_byz == 0:
        return x.new_zeros((0, x.shape[1]))
    return _repeat(-x.sum(dim=0) / n_byz, n_byz)


def alie_z(n_total: int, n_byz: int) -> float:
    """ALIE's z: s = floor(n/2 + 1) - f, z = Phi^{-1}((n - s) / n), Phi the standard normal CDF."""
    n = _check_count(n_total, "n_total", minimum=1)
    f = _check_count(n_byz, "n_byz")
    s = n // 2 + 1 - f
    if not 0 < s < n:
        raise ConfigError(
            f"ALIE needs 0 < s < n with s = floor(n/2 + 1) - f, got s={s} for n_total={n}, n_byz={f} "
            "(a Byzantine majority, or fewer than 3 clients, leaves no finite z)"
        )
    return NormalDist().inv_cdf((n - s) / n)


def alie(honest: Tensor, n_total: int, n_byz: int) -> Tensor:
    """ALIE ("a little is enough"): every Byzantine client sends mu - z * sigma, per coordinate over the honest rows.

    sigma is the unbiased (n_h - 1) standard deviation, as in the ALIE authors' code; z comes from ``alie_z``.
    """
    x = check_vectors(honest, "honest")
    n_byz = _check_count(n_byz, "n_byz")
    if n_byz > n_total:
        raise ConfigError(f"n_byz must be <= n_total, got n_byz={n_byz}, n_total={n_total}")
    z = alie_z(n_total, n_byz)
    if x.shape[0] < 2:
        raise ConfigError(f"alie needs at least 2 honest vectors to estimate the spread, got {x.shape[0]}")
    return _repeat(x.mean(dim=0) - z * x.std(dim=0), n_byz)


def ipm(honest: Tensor, n_byz: int, eps: float = 0.1) -> Tensor:
    """Inner-product manipulation: every Byzantine client sends -eps times the honest mean (eps 0.1 or 100)."""
    x = check_vectors(honest, "honest")
    n_byz = _check_count(n_byz, "n_byz")
    return _repeat(-_check_real(eps, "eps") * x.mean(dim=0), n_byz)


def label_flip(labels: Any, n_classes: int) -> Any:
    """Data-level label flipping y -> C - 1 - y; takes and returns a torch tensor or a numpy array of class ids."""
    n_classes = _check_count(n_classes, "n_classes", minimum=1)
    if isinstance(labels, Tensor):
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ConfigError(f"labels must hold integer class ids, got dtype {labels.dtype}")
        bad = labels.numel() > 0 and (labels.min() < 0 or labels.max() >= n_classes)
    else:
        labels = np.asarray(labels)
        if not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"labels must hold integer class ids, got dtype {labels.dtype}")
        bad = labels.size > 0 and (labels.min() < 0 or labels.max() >= n_classes)
    if bad:
        raise ConfigError(f"labels must lie in [0, {n_classes - 1}] for n_classes={n_classes}")
    return n_classes - 1 - labels


def apply_attack(
    name: str,
    honest: Tensor,
    byz_own: Tensor,
    n_total: int,
    generator: torch.Generator | None = None,
    **options: float,
) -> Tensor:
    """The ``(n_byz, d)`` vectors the Byzantine clients send under the model-update attack ``name``.

    ``honest`` (n_h, d) are the honest clients' vectors, ``byz_own`` (n_byz, d) what the Byzantine clients would
    have sent had they been honest; ``n_total`` must equal n_h + n_byz. ``options`` are the attack's knobs
    (``sigma2`` for gaussian, ``c`` for sign_flip, ``eps`` for ipm). ``"none"`` and ``"label_flip"`` return
    ``byz_own`` unchanged (a copy): with label flipping the attack already happened in the Byzantine clients'
    data (``label_flip``), so their updates are sent as computed.
    """
    if name not in ATTACKS:
        raise ConfigError(f"unknown attack {name!r}; valid names: {', '.join(ATTACKS)}")
    unknown = sorted(set(options) - set(_OPTIONS[name]))
    if unknown:
        raise ConfigError(
            f"attack {name!r} has no option(s) {', '.join(unknown)}; its options are: "
            f"{', '.join(_OPTIONS[name]) or '(none)'}"
        )
    honest = check_vectors(honest, "honest")
    byz_own = check_vectors(byz_own, "byz_own", min_rows=0)
    if byz_own.shape[1] != honest.shape[1]:
        raise ConfigError(f"byz_own has d={byz_own.shape[1]} columns but honest has d={honest.shape[1]}")
    n_h, n_byz = honest.shape[0], byz_own.shape[0]
    if n_total != n_h + n_byz:
        raise ConfigError(f"n_total must equal n_honest + n_byz = {n_h} + {n_byz}, got {n_total}")
    if name in ("none", "label_flip"):
        return byz_own.clone()
    if name == "gaussian":
        return gaussian(honest, n_byz, generator=generator, **options)
    if name == "sign_flip":
        return sign_flip(byz_own, **options)
    if name == "zero_gradient":
        return zero_gradient(honest, n_byz)
    if name == "alie":
        return alie(honest, n_total, n_byz)
    return ipm(honest, n_byz, **options)

"""Byzantine-robust aggregation rules (spec federated.md 5.3, used by Byrd-NAFL 5.2).

Every rule is a pure torch function over an ``(n, d)`` floating-point tensor whose rows are the client
vectors (gradients or model deltas; the rules do not care which) and returns one ``(d,)`` tensor on the
same device and dtype. ``f`` is the number of Byzantine clients the rule is told to tolerate.

Rows holding NaN or inf are the caller's job: drop or zero them before aggregating. The rules do not look
for them, and a single NaN row poisons ``mean``, ``krum`` and ``geometric_median``.

``make_aggregator(name, f=..., **options)`` turns a registry name into a one-argument callable, binding
``f`` where the rule takes it. ``centered_clipping`` is stateful (it starts from the previous aggregate),
so the registry hands out a fresh ``CenteredClipping`` object for it.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from polymodal.core.errors import ConfigError

__all__ = [
    "AGGREGATORS",
    "CenteredClipping",
    "bulyan",
    "centered_clipping",
    "check_vectors",
    "coordinate_median",
    "geometric_median",
    "krum",
    "krum_scores",
    "make_aggregator",
    "mean",
    "multi_krum",
    "trimmed_mean",
]


# ----------------------------------------------------------------------------------------------- checks


def check_vectors(vectors: object, name: str = "vectors", min_rows: int = 1) -> Tensor:
    """Return ``vectors`` if it is a 2-D floating-point tensor with at least ``min_rows`` rows, else raise."""
    if not isinstance(vectors, Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor of shape (n, d), got {type(vectors).__name__}")
    if vectors.dim() != 2:
        raise ConfigError(
            f"{name} must have shape (n, d) (one row per client), got shape {tuple(vectors.shape)}"
        )
    if not vectors.is_floating_point():
        raise ConfigError(f"{name} must be a floating-point tensor, got dtype {vectors.dtype}")
    if vectors.shape[0] < min_rows:
        raise ConfigError(f"{name} needs at least {min_rows} row(s), got {vectors.shape[0]}")
    return vectors


def _check_count(value: object, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_positive(value: object, name: str, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not ok or value != value or value == float("inf"):
        raise ConfigError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _median_rows(x: Tensor) -> Tensor:
    """Per-coordinate median; for an even count, the average of the two middle values (as numpy does)."""
    n = x.shape[0]
    if n == 1:
        return x[0].clone()
    s = x.sort(dim=0).values
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


# ------------------------------------------------------------------------------------------------ rules


def mean(vectors: Tensor, weights: Tensor | None = None) -> Tensor:
    """Plain average; with ``weights`` (n,) (e.g. client sample counts: FedAvg) the weighted average."""
    x = check_vectors(vectors)
    if weights is None:
        return x.mean(dim=0)
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    if w.shape != (x.shape[0],):
        raise ConfigError(
            f"weights must have shape ({x.shape[0]},) (one per row of vectors), got {tuple(w.shape)}"
        )
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ConfigError("weights must be finite and >= 0")
    total = w.sum()
    if total <= 0:
        raise ConfigError("weights must not all be zero")
    return (w @ x) / total


def coordinate_median(vectors: Tensor) -> Tensor:
    """Coordinate-wise median (CwMed); an even n averages the two middle values."""
    return _median_rows(check_vectors(vectors))


def trimmed_mean(vectors: Tensor, f: int) -> Tensor:
    """Per coordinate, drop the ``f`` largest and ``f`` smallest values and average the remaining n - 2f."""
    x = check_vectors(vectors)
    f = _check_count(f, "f")
    n = x.shape[0]
    if n <= 2 * f:
        raise ConfigError(f"trimmed_mean needs n > 2f (something left after trimming), got n={n}, f={f}")
    if f == 0:
        return x.mean(dim=0)
    return x.sort(dim=0).values[f : n - f].mean(dim=0)


def _squared_distances(x: Tensor) -> Tensor:
    # the direct kernel, not the ||a||^2 + ||b||^2 - 2ab matmul trick, which cancels badly for close vectors
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").square()


def krum_scores(vectors: Tensor, f: int) -> Tensor:
    """Krum score of each row: the sum of squared distances to its n - f - 2 nearest other rows. Needs n > 2f + 2."""
    x = check_vectors(vectors)
    f = _check_count(f, "f")
    n = x.shape[0]
    if n <= 2 * f + 2:
        raise ConfigError(f"Krum needs n > 2f + 2, got n={n}, f={f} (at most f={(n - 3) // 2} for this n)")
    d2 = _squared_distances(x)
    d2.fill_diagonal_(float("inf"))
    k = n - f - 2
    return d2.topk(k, dim=1, largest=False).values.sum(dim=1)


def krum(vectors: Tensor, f: int) -> Tensor:
    """The row with the lowest Krum score (ties: the lowest index). Needs n > 2f + 2."""
    x = check_vectors(vectors)
    return x[int(torch.argmin(krum_scores(x, f)))].clone()


def multi_krum(vectors: Tensor, f: int, m: int | None = None) -> Tensor:
    """Average of the ``m`` rows with the lowest Krum scores (default m = n - f; ties: lower index first)."""
    x = check_vectors(vectors)
    scores = krum_scores(x, f)
    n = x.shape[0]
    m = n - f if m is None else _check_count(m, "m", minimum=1)
    if m > n:
        raise ConfigError(f"m must be <= n (the number of vectors), got m={m}, n={n}")
    chosen = torch.argsort(scores, stable=True)[:m]
    return x[chosen].mean(dim=0)


def geometric_median(vectors: Tensor, eps: float = 1e-6, max_iter: int = 100, tol: float = 1e-7) -> Tensor:
    """Geometric median argmin_z sum_i ||g_i - z|| by smoothed Weiszfeld iterations.

    Starts at the coordinate median; each step is z <- sum_i w_i g_i / sum_i w_i with
    w_i = 1 / max(||g_i - z||, eps). Stops after ``max_iter`` steps or once a step moves z by at most
    ``tol * max(1, ||z||)`` (relative for large vectors, absolute for small ones).
    """
    x = check_vectors(vectors)
    eps = _check_positive(eps, "eps")
    max_iter = _check_count(max_iter, "max_iter", minimum=1)
    tol = _check_positive(tol, "tol", allow_zero=True)
    z = _median_rows(x)
    for _ in range(max_iter):
        w = 1.0 / torch.linalg.vector_norm(x - z, dim=1).clamp_min(eps)
        z_next = (w @ x) / w.sum()
        step = float(torch.linalg.vector_norm(z_next - z))
        z = z_next
        if step <= tol * max(1.0, float(torch.linalg.vector_norm(z))):
            break
    return z


def centered_clipping(
    vectors: Tensor, tau: float = 1.0, iters: int = 1, init: Tensor | None = None
) -> Tensor:
    """Centered clipping: ``iters`` times v <- v + mean_i clip(g_i - v, tau), clip scaling a vector to norm <= tau.

    ``init`` is the starting point v_0 (default 0). Karimireddy et al. start from the previous aggregate;
    the ``CenteredClipping`` class does that for you.
    """
    x = check_vectors(vectors)
    tau = _check_positive(tau, "tau")
    iters = _check_count(iters, "iters", minimum=1)
    d = x.shape[1]
    if init is None:
        v = torch.zeros(d, dtype=x.dtype, device=x.device)
    else:
        v = torch.as_tensor(init).to(dtype=x.dtype, device=x.device)
        if v.shape != (d,):
            raise ConfigError(f"init must have shape ({d},) like one row of vectors, got {tuple(v.shape)}")
    for _ in range(iters):
        diff = x - v
        norms = torch.linalg.vector_norm(diff, dim=1, keepdim=True)
        scale = torch.where(norms > tau, tau / norms, torch.ones_like(norms))
        v = v + (diff * scale).mean(dim=0)
    return v


class CenteredClipping:
    """Stateful centered clipping: each call starts from the previous call's output (the first from ``init`` or 0)."""

    def __init__(self, tau: float = 1.0, iters: int = 1, init: Tensor | None = None):
        self.tau = _check_positive(tau, "tau")
        self.iters = _check_count(iters, "iters", minimum=1)
        self.last: Tensor | None = None if init is None else torch.as_tensor(init).detach().clone()

    def __call__(self, vectors: Tensor) -> Tensor:
        out = centered_clipping(vectors, tau=self.tau, iters=self.iters, init=self.last)
        self.last = out.detach().clone()
        return out

    def reset(self) -> None:
        """Forget the previous aggregate; the next call starts from 0."""
        self.last = None

    def __repr__(self) -> str:
        return f"CenteredClipping(tau={self.tau}, iters={self.iters})"


def bulyan(vectors: Tensor, f: int) -> Tensor:
    """Bulyan: Multi-Krum selects the theta = n - 2f lowest-score rows, then per coordinate the beta = theta - 2f
    selected values closest to their median are averaged. Needs n >= 4f + 3.

    The selection ranks all n rows by one set of Krum scores (spec 5.3: "Multi-Krum selection"), rather than
    re-running Krum on the shrinking set as El Mhamdi et al. (2018) do.
    """
    x = check_vectors(vectors)
    f = _check_count(f, "f")
    n = x.shape[0]
    if n < 4 * f + 3:
        raise ConfigError(f"Bulyan needs n >= 4f + 3, got n={n}, f={f} (at most f={(n - 3) // 4} for this n)")
    theta, beta = n - 2 * f, n - 4 * f
    selected = x[torch.argsort(krum_scores(x, f), stable=True)[:theta]]
    closest = (selected - _median_rows(selected)).abs().argsort(dim=0, stable=True)[:beta]
    return selected.gather(0, closest).mean(dim=0)


# --------------------------------------------------------------------------------------------- registry

AGGREGATORS: dict[str, Callable[..., Tensor]] = {
    "mean": mean,
    "coordinate_median": coordinate_median,
    "trimmed_mean": trimmed_mean,
    "krum": krum,
    "multi_krum": multi_krum,
    "geometric_median": geometric_median,
    "centered_clipping": centered_clipping,
    "bulyan": bulyan,
}


def make_aggregator(name: str, *, f: int, **options: object) -> Callable[..., Tensor]:
    """A callable ``agg(vectors) -> (d,)`` for the registry rule ``name``.

    ``f`` is bound for the rules that take it (trimmed mean, Krum, Multi-Krum, Bulyan) and ignored by the
    others; ``options`` are the rule's other keyword arguments (``m``, ``eps``, ``tau``...). The ``mean``
    callable still accepts ``weights=`` per call. ``centered_clipping`` returns a fresh ``CenteredClipping``,
    which remembers its last output.
    """
    if name not in AGGREGATORS:
        raise ConfigError(f"unknown aggregator {name!r}; valid names: {', '.join(sorted(AGGREGATORS))}")
    f = _check_count(f, "f")
    rule = AGGREGATORS[name]
    params = inspect.signature(rule).parameters
    allowed = [p for p in params if p not in ("vectors", "f")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"aggregator {name!r} has no option(s) {', '.join(unknown)}; its options are: "
            f"{', '.join(allowed) or '(none)'}"
        )
    if name == "centered_clipping":
        return CenteredClipping(**options)  # type: ignore[arg-type]
    if "f" in params:
        options["f"] = f
    return functools.partial(rule, **options)

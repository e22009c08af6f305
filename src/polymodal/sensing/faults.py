"""Sensor drift and failure injection for the robustness sweep (spec 4.4), severities 1-5.

Drift (on the accelerometer): ``bias_ramp`` (an additive ramp from 0 to 1.5·s m/s² across the window on every
axis), ``gain`` (acc × (1 + 0.25·s)), ``noise`` (Gaussian noise whose std grows linearly to 0.6·s m/s²).
Failure (the whole position: acc, gyro, mag): ``stuck`` (the first sample repeated), ``zero``, ``nan``, and
``missing`` (the position is dropped from the window). Severity scales the drifts; failures are total at every
severity. All scales are a reconstruction (the paper names the fault families, not their magnitudes).
"""

from __future__ import annotations

import numpy as np

from polymodal.core.errors import ConfigError

FAULTS = ("bias_ramp", "gain", "noise", "stuck", "zero", "nan", "missing")
DRIFTS = ("bias_ramp", "gain", "noise")


def corrupt_array(x: np.ndarray, kind: str, severity: int = 3, rng: np.random.Generator | None = None) -> np.ndarray:
    """A corrupted copy of one position's ``(T, 9)`` window (acc, gyro, mag)."""
    if kind not in FAULTS or kind == "missing":
        raise ConfigError(f"fault kind must be one of {', '.join(f for f in FAULTS if f != 'missing')}, got {kind!r}")
    if not 1 <= int(severity) <= 5:
        raise ConfigError(f"fault severity must be 1..5, got {severity!r}")
    rng = rng if rng is not None else np.random.default_rng(0)
    s = float(severity)
    y = np.array(x, dtype=np.float64, copy=True)
    n = len(y)
    if kind == "bias_ramp":
        y[:, 0:3] += np.linspace(0.0, 1.5 * s, n)[:, None]
    elif kind == "gain":
        y[:, 0:3] *= 1.0 + 0.25 * s
    elif kind == "noise":
        y[:, 0:3] += rng.normal(size=(n, 3)) * np.linspace(0.0, 0.6 * s, n)[:, None]
    elif kind == "stuck":
        y[:] = y[0]
    elif kind == "zero":
        y[:] = 0.0
    elif kind == "nan":
        y[:] = np.nan
    return y.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


def corrupt(window: dict[str, np.ndarray], kind: str, severity: int = 3, positions=("pocket",),
            rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Inject fault ``kind`` into ``positions`` of a window ``{position: (T, 9)}``; returns a new dict.

    ``missing`` removes those positions; any other kind replaces their arrays by :func:`corrupt_array`.
    """
    unknown = [p for p in positions if p not in window]
    if unknown:
        raise ConfigError(f"cannot corrupt positions {unknown}: the window has {sorted(window)}")
    if kind == "missing":
        return {p: v for p, v in window.items() if p not in positions}
    out = dict(window)
    for p in positions:
        out[p] = corrupt_array(window[p], kind, severity, rng)
    return out

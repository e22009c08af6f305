"""Signal tools the SensingAgents analysts call (spec 4.1): each a pure numpy/scipy function on one window of one
position, returning a small JSON-able dict of rounded floats.

Inputs are ``(T, 3)`` arrays in Android units (acc m/s², gyro rad/s) sampled at ``fs`` Hz (50 for Shoaib). Tools
never raise on bad data: NaNs are zero-filled for the measurement (``data_quality`` is the tool that reports them).
``analyse_position`` runs every tool and ``compact_features`` keeps the dozen numbers an analyst's prompt shows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import signal as sps
from scipy import stats as spstats

G = 9.81
#: accelerometer range taken as +-4 g (reconstruction; the S II's K3DH chip supports 2/4/8 g): |values| at this
#: level count as saturated
SATURATION = 4 * G
PSD_BANDS = ((0.0, 1.0), (1.0, 3.0), (3.0, 6.0), (6.0, math.inf))


def _r(x: float, nd: int = 4) -> float:
    x = float(x)
    return round(x, nd) if math.isfinite(x) else 0.0


def _clean(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def magnitude(x: np.ndarray) -> np.ndarray:
    """Euclidean norm of each ``(T, 3)`` row."""
    return np.linalg.norm(_clean(x), axis=1)


def statistics(x: np.ndarray) -> dict[str, dict[str, float]]:
    """Per axis (x, y, z) and magnitude: mean, std, min, max, range, RMS, skewness, kurtosis (excess, Fisher)."""
    x = _clean(x)
    cols = {"x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "mag": np.linalg.norm(x, axis=1)}
    out = {}
    for name, v in cols.items():
        std = float(v.std())
        out[name] = {"mean": _r(v.mean()), "std": _r(std), "min": _r(v.min()), "max": _r(v.max()),
                     "range": _r(v.max() - v.min()), "rms": _r(np.sqrt(np.mean(v**2))),
                     "skew": _r(spstats.skew(v)) if std > 1e-9 else 0.0,
                     "kurtosis": _r(spstats.kurtosis(v)) if std > 1e-9 else 0.0}
    return out


def sma(acc: np.ndarray) -> dict[str, float]:
    """Signal magnitude area: mean over samples of |x| + |y| + |z| (m/s²)."""
    a = _clean(acc)
    return {"sma": _r(np.mean(np.abs(a).sum(axis=1)))}


def gravity_orientation(acc: np.ndarray, fs: float = 50.0, cutoff: float = 0.3) -> dict[str, float]:
    """Gravity from a 2nd-order Butterworth low-pass (``cutoff`` Hz, zero-phase) of acc, averaged over the window.

    ``pitch = atan2(-gx, sqrt(gy² + gz²))`` and ``roll = atan2(gy, gz)`` in degrees; ``tilt`` is the angle between
    gravity and the device's long (y) axis (0° = device upright, 90° = lying flat: the pocket's sit/stand cue).
    """
    a = _clean(acc)
    if len(a) > 9:
        b, aa = sps.butter(2, cutoff / (fs / 2), btype="low")
        a = sps.filtfilt(b, aa, a, axis=0)
    g = a.mean(axis=0)
    norm = float(np.linalg.norm(g))
    if norm < 1e-6:
        return {"gx": 0.0, "gy": 0.0, "gz": 0.0, "pitch": 0.0, "roll": 0.0, "tilt": 0.0, "g_norm": 0.0}
    gx, gy, gz = g
    tilt = math.degrees(math.acos(min(1.0, abs(gy) / norm)))
    return {"gx": _r(gx / norm), "gy": _r(gy / norm), "gz": _r(gz / norm),
            "pitch": _r(math.degrees(math.atan2(-gx, math.hypot(gy, gz))), 2),
            "roll": _r(math.degrees(math.atan2(gy, gz)), 2), "tilt": _r(tilt, 2), "g_norm": _r(norm)}


def dominant_frequency(acc: np.ndarray, fs: float = 50.0, fmin: float = 0.3, nfft: int = 1024) -> dict[str, float]:
    """FFT dominant frequency of the mean-removed acc magnitude (Hann window, zero-padded to ``nfft``), above
    ``fmin`` Hz, and its power share (power within ±1 native bin of the peak over the total above ``fmin``)."""
    m = magnitude(acc)
    m = m - m.mean()
    n = len(m)
    if n < 4 or float(np.abs(m).max()) < 1e-9:
        return {"f0": 0.0, "share": 0.0, "bin_width": _r(fs / max(n, 1))}
    spec = np.abs(np.fft.rfft(m * np.hanning(n), n=max(nfft, n))) ** 2
    freqs = np.fft.rfftfreq(max(nfft, n), 1 / fs)
    keep = freqs >= fmin
    spec, freqs = spec[keep], freqs[keep]
    k = int(np.argmax(spec))
    f0 = float(freqs[k])
    native = fs / n
    near = np.abs(freqs - f0) <= native
    return {"f0": _r(f0, 3), "share": _r(spec[near].sum() / max(spec.sum(), 1e-12), 3), "bin_width": _r(native, 3)}


def psd_bands(acc: np.ndarray, fs: float = 50.0, bands=PSD_BANDS) -> dict[str, float]:
    """Welch PSD of the mean-removed acc magnitude: energy fraction in 0–1, 1–3, 3–6 and > 6 Hz, and total power."""
    m = magnitude(acc)
    m = m - m.mean()
    f, p = sps.welch(m, fs=fs, nperseg=min(len(m), 64))
    total = float(p.sum())
    out = {"total": _r(total)}
    for lo, hi in bands:
        name = f"{lo:g}-{hi:g}Hz" if math.isfinite(hi) else f">{lo:g}Hz"
        sel = (f >= lo) & (f < hi)
        out[name] = _r(p[sel].sum() / total, 3) if total > 1e-12 else 0.0
    return out


def step_cadence(acc: np.ndarray, fs: float = 50.0, band: tuple[float, float] = (0.5, 4.0),
                 min_interval_s: float = 0.25, min_prominence: float = 0.4) -> dict[str, float]:
    """Peaks of the band-passed acc magnitude (steps, pedal strokes): count, cadence (peaks/s from the mean
    interval between peaks; 0 when fewer than 2) and the mean peak height over the signal std (impact)."""
    m = magnitude(acc)
    m = m - m.mean()
    if len(m) > 15 and float(m.std()) > 1e-9:
        b, a = sps.butter(2, [band[0] / (fs / 2), band[1] / (fs / 2)], btype="band")
        m = sps.filtfilt(b, a, m)
    std = float(m.std())
    if std < 1e-9:
        return {"steps": 0, "cadence": 0.0, "impact": 0.0}
    peaks, props = sps.find_peaks(m, distance=max(1, int(min_interval_s * fs)),
                                  prominence=max(min_prominence, 0.5 * std))
    cadence = fs / float(np.mean(np.diff(peaks))) if len(peaks) >= 2 else 0.0
    impact = float(np.mean(m[peaks]) / std) if len(peaks) else 0.0
    return {"steps": int(len(peaks)), "cadence": _r(cadence, 3), "impact": _r(impact, 3)}


def zero_crossings(x: np.ndarray, fs: float = 50.0) -> dict[str, float]:
    """Zero-crossing rate (crossings per second) of each mean-removed axis of a ``(T, 3)`` (or ``(T,)``) array."""
    x = _clean(x)
    if x.ndim == 1:
        x = x[:, None]
    x = x - x.mean(axis=0)
    s = np.sign(x)
    rates = []
    for j in range(x.shape[1]):
        sj = s[:, j][s[:, j] != 0]
        rates.append(float(np.count_nonzero(np.diff(sj))) * fs / len(x) if len(x) else 0.0)
    names = "xyz" if len(rates) == 3 else [str(i) for i in range(len(rates))]
    return {f"zcr_{n}": _r(r, 3) for n, r in zip(names, rates, strict=True)}


def axis_correlation(x: np.ndarray) -> dict[str, float]:
    """Pearson correlation between axes (xy, xz, yz); 0 where an axis is constant."""
    x = _clean(x)
    out = {}
    for a, b, name in ((0, 1, "xy"), (0, 2, "xz"), (1, 2, "yz")):
        u, v = x[:, a], x[:, b]
        if u.std() < 1e-9 or v.std() < 1e-9:
            out[f"corr_{name}"] = 0.0
        else:
            out[f"corr_{name}"] = _r(np.corrcoef(u, v)[0, 1], 3)
    return out


def jerk(acc: np.ndarray, fs: float = 50.0) -> dict[str, float]:
    """Jerk (time derivative of acc, m/s³): mean and RMS of its magnitude."""
    a = _clean(acc)
    if len(a) < 2:
        return {"jerk_mean": 0.0, "jerk_rms": 0.0}
    j = np.linalg.norm(np.diff(a, axis=0) * fs, axis=1)
    return {"jerk_mean": _r(j.mean(), 3), "jerk_rms": _r(np.sqrt(np.mean(j**2)), 3)}


def data_quality(acc: np.ndarray | None, gyro: np.ndarray | None = None, *, saturation: float = SATURATION,
                 bias_tol: float = 1.5) -> dict[str, Any]:
    """Is this position's window trustworthy? (spec 4.1 data-quality check, 4.3 weights)

    Flags: ``missing`` (no data), ``nan`` (share of NaN samples), ``zero`` (all-zero acc), ``stuck`` (a flat
    channel: std < 1e-6), ``saturated`` (share of acc samples at the ±4 g range), ``bias`` (|mean |acc| − 1 g|, the
    gravity check), ``noise`` (std of the acc second difference, m/s²). Returns ``flag`` ok / degraded / failed and
    a quality score ``q`` in [0, 1]: 0 when failed, lowered smoothly for bias, saturation and noise.
    """
    if acc is None or np.size(acc) == 0:
        return {"flag": "failed", "q": 0.0, "issues": ["missing"], "nan_share": 1.0, "bias": 0.0, "noise": 0.0,
                "saturated_share": 0.0}
    a = np.asarray(acc, dtype=np.float64)
    chans = [a] if gyro is None else [a, np.asarray(gyro, dtype=np.float64)]
    nan_share = float(np.mean([np.isnan(c).any(axis=1).mean() for c in chans]))
    issues: list[str] = []
    if nan_share > 0:
        issues.append("nan")
    ac = _clean(a)
    finite_rows = ~np.isnan(a).any(axis=1)
    zero = bool(np.all(ac == 0))
    stuck = any(bool(np.nanstd(c[:, j]) < 1e-6) for c in chans for j in range(c.shape[1])
                if np.isfinite(c[:, j]).sum() > 1)
    if zero:
        issues.append("zero")
    elif stuck:
        issues.append("stuck")
    mag = np.linalg.norm(ac[finite_rows], axis=1) if finite_rows.any() else np.zeros(1)
    bias = abs(float(mag.mean()) - G)
    # a large bounce folds |acc| around 0 and biases its mean upwards: allow more room when the window moves a lot
    tol = bias_tol + 0.15 * float(mag.std())
    sat = float(np.mean(np.abs(ac[finite_rows]) >= 0.995 * saturation)) if finite_rows.any() else 0.0
    noise = float(np.std(np.diff(ac[finite_rows], n=2, axis=0))) if finite_rows.sum() > 3 else 0.0
    if bias > tol:
        issues.append("bias")
    if sat > 0.02:
        issues.append("saturated")
    if noise > 1.5:
        issues.append("noise")
    if nan_share > 0.5 or zero or stuck:
        flag, q = "failed", 0.0
    else:
        q = (1 - nan_share) * math.exp(-max(0.0, bias - 0.5 * tol) / 2.0) * (1 - min(sat * 5, 0.9)) \
            * math.exp(-max(0.0, noise - 0.75) / 1.5)
        flag = "degraded" if issues else "ok"
    return {"flag": flag, "q": _r(q, 3), "issues": issues, "nan_share": _r(nan_share, 3), "bias": _r(bias, 3),
            "noise": _r(noise, 3), "saturated_share": _r(sat, 3)}


def analyse_position(acc: np.ndarray | None, gyro: np.ndarray | None, fs: float = 50.0) -> dict[str, Any]:
    """Every tool on one position's window: the analyst's full tool output (a nested JSON-able dict)."""
    quality = data_quality(acc, gyro)
    if acc is None:
        return {"quality": quality}
    out: dict[str, Any] = {
        "quality": quality,
        "acc_stats": statistics(acc),
        "gyro_stats": statistics(gyro) if gyro is not None else {},
        "sma": sma(acc),
        "gravity": gravity_orientation(acc, fs),
        "fft": dominant_frequency(acc, fs),
        "psd": psd_bands(acc, fs),
        "steps": step_cadence(acc, fs),
        "zcr": zero_crossings(acc, fs),
        "corr": axis_correlation(acc),
        "jerk": jerk(acc, fs),
    }
    return out


def compact_features(tools: dict[str, Any]) -> dict[str, Any]:
    """The numbers an analyst's prompt shows (short prompts for a small model): motion, rhythm, posture, quality."""
    q = tools["quality"]
    if "acc_stats" not in tools:
        return {"quality": q["flag"], "q": q["q"], "issues": q["issues"]}
    return {
        "acc_std": round(tools["acc_stats"]["mag"]["std"], 2),
        "acc_mean": round(tools["acc_stats"]["mag"]["mean"], 2),
        "f0_hz": round(tools["fft"]["f0"], 2),
        "f0_share": round(tools["fft"]["share"], 2),
        "cadence_hz": round(tools["steps"]["cadence"], 2),
        "impact": round(tools["steps"]["impact"], 2),
        "tilt_deg": round(tools["gravity"]["tilt"], 1),
        "gz": round(tools["gravity"]["gz"], 2),
        "gyro_mean": round(tools["gyro_stats"]["mag"]["mean"], 2) if tools.get("gyro_stats") else 0.0,
        "jerk": round(tools["jerk"]["jerk_mean"], 1),
        "hf_share": round(tools["psd"][">6Hz"], 2),
        "quality": q["flag"], "q": q["q"], "issues": q["issues"],
    }


def feature_vector(tools: dict[str, Any]) -> np.ndarray:
    """Flatten every numeric tool value (a fixed order) into a vector: the random-forest baseline's features."""
    vals: list[float] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k in sorted(o):
                if k in ("issues", "flag"):
                    continue
                walk(o[k])
        elif isinstance(o, bool):
            vals.append(float(o))
        elif isinstance(o, int | float):
            vals.append(float(o))

    walk({k: v for k, v in tools.items() if k != "quality"})
    return np.asarray(vals, dtype=np.float64)

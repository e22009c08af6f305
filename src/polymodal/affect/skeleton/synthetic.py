"""Seeded synthetic emotional gaits on the 16-joint skeleton (spec affect.md 3.6) [reconstruction].

A sinusoidal walk whose parameters depend on the emotion the way the gait literature describes it (Montepare et
al. '87, Roether et al. '09, Randhavane et al. '19): *sad* = slumped trunk, lowered head, slow and short strides,
little arm swing; *angry* = fast, heavy, jerky, wide arm swing, flexed elbows; *happy* = upright, raised head,
bouncy and fast; *neutral* = middle values. Every subject has its own walking style (body size, preferred lean,
cadence, arm swing, ...) whose spread is of the order of the emotion effects, each emotion is expressed with a
subject- and trial-specific intensity, and the joints carry noise, so the four classes overlap: ``separation``
scales the emotion effects (calibrated so the best paradigm lands well above chance and below ~95%).
Axes: y up, x lateral (the walker's right at -x), z forward; one unit = one metre; ``fps`` frames per second.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EMOTIONS: tuple[str, ...] = ("happy", "sad", "angry", "neutral")

#: emotion effects relative to the neutral walk (degrees, Hz, metres; "jerk" is joint noise in metres)
EFFECTS: dict[str, dict[str, float]] = {
    #          lean   head  cycle_hz arm   leg   bounce elbow  jerk   shrug
    "happy":   {"lean": -4.0, "head": -8.0, "freq": 0.12, "arm": 6.0, "leg": 3.0, "bounce": 0.015, "elbow": 0.0,
                "jerk": 0.002, "shrug": 0.0},
    "sad":     {"lean": 9.0, "head": 16.0, "freq": -0.15, "arm": -8.0, "leg": -5.0, "bounce": -0.008, "elbow": -3.0,
                "jerk": -0.001, "shrug": -0.03},
    "angry":   {"lean": 4.0, "head": 4.0, "freq": 0.16, "arm": 10.0, "leg": 4.0, "bounce": 0.004, "elbow": 20.0,
                "jerk": 0.010, "shrug": 0.02},
    "neutral": {"lean": 0.0, "head": 0.0, "freq": 0.0, "arm": 0.0, "leg": 0.0, "bounce": 0.0, "elbow": 0.0,
                "jerk": 0.0, "shrug": 0.0},
}
#: the neutral walk
BASE = {"lean": 4.0, "head": 2.0, "freq": 0.9, "arm": 18.0, "leg": 22.0, "bounce": 0.025, "elbow": 15.0,
        "jerk": 0.004, "shrug": 0.0}
#: person-to-person spread (standard deviation) of each walking-style parameter
SUBJECT_SD = {"lean": 4.0, "head": 7.0, "freq": 0.12, "arm": 6.0, "leg": 3.5, "bounce": 0.010, "elbow": 8.0,
              "jerk": 0.003, "shrug": 0.02}
#: trial-to-trial spread (standard deviation) within a subject and emotion
TRIAL_SD = {"lean": 2.0, "head": 4.0, "freq": 0.06, "arm": 3.0, "leg": 2.0, "bounce": 0.005, "elbow": 4.0,
            "jerk": 0.0015, "shrug": 0.01}


@dataclass
class GaitDataset:
    """Gaits ``x`` (N, T, 16, 3) or a list of (T_i, 16, 3) arrays, integer labels, class names, optional ids and
    subjects (for subject-wise splits)."""

    x: np.ndarray | list[np.ndarray]
    y: np.ndarray
    class_names: tuple[str, ...]
    ids: list[str] = field(default_factory=list)
    subjects: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.x])


def _rot_x(v: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Rotate vectors (..., 3) about the x axis by ``ang`` (radians; positive tips +y toward +z)."""
    c, s = np.cos(ang), np.sin(ang)
    out = v.copy()
    out[..., 1] = c * v[..., 1] - s * v[..., 2]
    out[..., 2] = s * v[..., 1] + c * v[..., 2]
    return out


def walk(params: dict[str, float], body: dict[str, float], T: int, fps: float, phase: float,
         rng: np.random.Generator, heading: float = 0.0) -> np.ndarray:
    """One ``(T, 16, 3)`` walk from style ``params`` (degrees / Hz / metres) and ``body`` segment lengths."""
    t = np.arange(T) / fps
    w = 2 * np.pi * max(params["freq"], 0.3) * t + phase
    deg = np.pi / 180
    leg_amp = max(params["leg"], 4.0) * deg
    # forward speed follows stride (leg swing) and cadence: about two step lengths per cycle
    step_len = 2 * body["thigh"] * np.sin(leg_amp)
    speed = 2 * step_len * max(params["freq"], 0.3)
    up = np.array([0.0, 1.0, 0.0])
    down = -up
    root = np.zeros((T, 3))
    root[:, 1] = body["hip_h"] + max(params["bounce"], 0.0) * np.cos(2 * w)
    root[:, 2] = speed * t
    lean = params["lean"] * deg
    trunk = _rot_x(np.broadcast_to(up, (T, 3)), np.full(T, lean))
    spine = root + body["spine"] * trunk
    neck = spine + body["neck"] * trunk
    head = neck + body["head"] * _rot_x(np.broadcast_to(up, (T, 3)), np.full(T, lean + params["head"] * deg))
    lat = np.array([1.0, 0.0, 0.0])
    shoulder_drop = np.array([0.0, -0.04 + params["shrug"], 0.0])
    ls = neck + body["shoulder"] * lat + shoulder_drop
    rs = neck - body["shoulder"] * lat + shoulder_drop
    arm = max(params["arm"], 2.0) * deg
    elbow = max(params["elbow"], 0.0) * deg

    def limb(base, swing, flex, upper, lower):
        knee = base + upper * _rot_x(np.broadcast_to(down, (T, 3)), -swing)
        end = knee + lower * _rot_x(np.broadcast_to(down, (T, 3)), -swing - flex)
        return knee, end

    # arms swing opposite to the same-side leg; elbows flex forward (negative rotation tips -y toward +z)
    le, lh = limb(ls, -arm * np.sin(w), elbow + 0.3 * arm * (1 - np.sin(w)), body["upper_arm"], body["forearm"])
    re, rh = limb(rs, arm * np.sin(w), elbow + 0.3 * arm * (1 + np.sin(w)), body["upper_arm"], body["forearm"])
    lhip = root + body["hip"] * lat
    rhip = root - body["hip"] * lat
    knee_flex_l = -0.9 * leg_amp * np.clip(np.sin(w - np.pi / 2), 0, None) - 0.1
    knee_flex_r = -0.9 * leg_amp * np.clip(np.sin(w + np.pi / 2), 0, None) - 0.1
    lk, lf = limb(lhip, leg_amp * np.sin(w), knee_flex_l, body["thigh"], body["shank"])
    rk, rf = limb(rhip, -leg_amp * np.sin(w), knee_flex_r, body["thigh"], body["shank"])
    x = np.stack([root, spine, neck, head, ls, le, lh, rs, re, rh, lhip, lk, lf, rhip, rk, rf], axis=1)
    # jerk: high-frequency joint tremor (emotion-dependent) plus a little marker noise
    jerk = max(params["jerk"], 0.0)
    x = x + jerk * rng.standard_normal(x.shape) + 0.004 * rng.standard_normal(x.shape)
    if heading:
        c, s = np.cos(heading), np.sin(heading)
        xx, zz = x[..., 0].copy(), x[..., 2].copy()
        x[..., 0], x[..., 2] = c * xx + s * zz, -s * xx + c * zz
    return x


def make_synthetic_gaits(n_per_class: int = 100, T: int = 48, seed: int = 0, *, n_subjects: int = 20,
                         separation: float = 1.0, fps: float = 30.0, heading_deg: float = 15.0,
                         emotions: tuple[str, ...] = EMOTIONS) -> GaitDataset:
    """``n_per_class`` gaits of each emotion, ``T`` frames, from ``n_subjects`` simulated walkers (spec 3.6).

    ``separation`` scales every emotion effect (0: indistinguishable classes); ``heading_deg`` is the spread of
    random walking directions about the up axis. Returns a :class:`GaitDataset` (float32, y-up)."""
    if n_per_class < 1 or T < 4 or n_subjects < 1:
        raise ValueError("need n_per_class >= 1, T >= 4 and n_subjects >= 1")
    unknown = [e for e in emotions if e not in EFFECTS]
    if unknown:
        raise ValueError(f"unknown emotions {unknown}; known: {', '.join(EFFECTS)}")
    rng = np.random.default_rng([seed, 0x6A17])
    subjects = []
    for _ in range(n_subjects):
        scale = rng.uniform(0.88, 1.12)
        body = {"hip_h": 0.95 * scale, "spine": 0.25 * scale, "neck": 0.27 * scale, "head": 0.18 * scale,
                "shoulder": 0.19 * scale * rng.uniform(0.9, 1.1), "upper_arm": 0.29 * scale,
                "forearm": 0.27 * scale, "hip": 0.11 * scale * rng.uniform(0.9, 1.1), "thigh": 0.45 * scale,
                "shank": 0.45 * scale}
        style = {k: BASE[k] + SUBJECT_SD[k] * rng.standard_normal() for k in BASE}
        # how strongly this person expresses emotion in their walk
        expressiveness = rng.uniform(0.5, 1.3)
        subjects.append((body, style, expressiveness))
    xs, ys, subj, ids = [], [], [], []
    for c, emo in enumerate(emotions):
        for _ in range(n_per_class):
            s = int(rng.integers(n_subjects))
            body, style, expr = subjects[s]
            intensity = separation * expr * rng.uniform(0.6, 1.2)
            params = {k: style[k] + intensity * EFFECTS[emo][k] + TRIAL_SD[k] * rng.standard_normal() for k in BASE}
            heading = np.deg2rad(heading_deg) * rng.uniform(-1, 1)
            xs.append(walk(params, body, T, fps, rng.uniform(0, 2 * np.pi), rng, heading))
            ys.append(c)
            subj.append(s)
            ids.append(f"{len(ids):04d}_{emo.capitalize()}")
    return GaitDataset(np.stack(xs).astype(np.float32), np.asarray(ys, dtype=np.int64), tuple(emotions), ids,
                       np.asarray(subj))

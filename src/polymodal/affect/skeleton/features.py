"""Affective gait features (spec affect.md 3.5): the 29 STEP features and optional Laban-style extras.

STEP (Bhattacharya et al., AAAI'20, ``compute_aff_features/compute_features.py``) computes per-frame posture
features on the 16-joint skeleton, movement features by finite differences, and gait-cycle features from foot
strikes, then averages over the sequence. The list (12 posture + 15 movement + 2 gait = 29) is [official code];
the exact formulas below are ours where the spec only names the feature (see docs/methods/skeleton-emotion.md).
Every feature is a small function of a ``(T, J, 3)`` sequence (or of ``(..., 3)`` points) so it can be tested on
hand-built skeletons. Joint order: the Emotion-Gait README's (:mod:`.skeleton`), not STEP's swapped one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polymodal.affect.skeleton.skeleton import J, Skeleton16

# ---------------------------------------------------------------------------------------------- geometry


def angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle (radians) between vectors ``u`` and ``v`` along the last axis; 0 for a zero-length vector."""
    u, v = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    nu, nv = np.linalg.norm(u, axis=-1), np.linalg.norm(v, axis=-1)
    denom = np.where(nu * nv > 0, nu * nv, 1.0)
    cos = np.clip((u * v).sum(-1) / denom, -1.0, 1.0)
    return np.where(nu * nv > 0, np.arccos(cos), 0.0)


def joint_angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle at ``b`` between the segments b->a and b->c (radians)."""
    return angle_between(np.asarray(a) - b, np.asarray(c) - b)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, dtype=np.float64) - b, axis=-1)


def triangle_area(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Area of the triangle (a, b, c): half the norm of the cross product."""
    a = np.asarray(a, dtype=np.float64)
    return 0.5 * np.linalg.norm(np.cross(np.asarray(b) - a, np.asarray(c) - a), axis=-1)


def bounding_box_volume(frames: np.ndarray) -> np.ndarray:
    """Volume of the axis-aligned box around all joints, per frame: ``(..., J, 3) -> (...)``."""
    f = np.asarray(frames, dtype=np.float64)
    return np.prod(f.max(-2) - f.min(-2), axis=-1)


def inclination(vec: np.ndarray, up_axis: int = 1) -> np.ndarray:
    """Angle between ``vec`` and the vertical (radians)."""
    up = np.zeros(3)
    up[up_axis] = 1.0
    return angle_between(vec, np.broadcast_to(up, np.shape(vec)))


# ---------------------------------------------------------------------------------------------- kinematics


def mean_speed(traj: np.ndarray, dt: float = 1.0) -> float:
    """Mean magnitude of the first finite difference of a ``(T, 3)`` trajectory, per unit time."""
    return _mean_diff_norm(traj, 1, dt)


def mean_acceleration(traj: np.ndarray, dt: float = 1.0) -> float:
    """Mean magnitude of the second finite difference / dt^2."""
    return _mean_diff_norm(traj, 2, dt)


def mean_jerk(traj: np.ndarray, dt: float = 1.0) -> float:
    """Mean magnitude of the third finite difference / dt^3."""
    return _mean_diff_norm(traj, 3, dt)


def _mean_diff_norm(traj: np.ndarray, order: int, dt: float) -> float:
    t = np.asarray(traj, dtype=np.float64)
    if t.shape[0] <= order:
        return 0.0
    return float(np.linalg.norm(np.diff(t, n=order, axis=0), axis=-1).mean() / dt ** order)


def foot_strikes(height: np.ndarray, min_gap: int = 3) -> np.ndarray:
    """Frames of foot strikes = local minima of a foot-height series (STEP's definition) [official code].

    Robust to marker noise [reconstruction]: the series is cut into excursions below its mean (gaps shorter than
    ``min_gap`` frames are bridged), each excursion gives one strike at its lowest frame, and a minimum on the
    first or last frame (the true minimum may lie outside the clip) is not counted."""
    h = np.asarray(height, dtype=np.float64)
    if h.size < 3:
        return np.zeros(0, dtype=int)
    below = np.flatnonzero(h < h.mean())
    if below.size == 0:
        return np.zeros(0, dtype=int)
    cuts = np.flatnonzero(np.diff(below) > min_gap) + 1
    strikes = []
    for seg in np.split(below, cuts):
        lo, hi = seg[0], seg[-1]
        i = lo + int(np.argmin(h[lo:hi + 1]))
        if 0 < i < h.size - 1:
            strikes.append(i)
    return np.asarray(strikes, dtype=int)


def gait_cycle_features(left_height: np.ndarray, right_height: np.ndarray, dt: float = 1.0,
                        min_gap: int = 3) -> tuple[float, float]:
    """``(step frames, gait-cycle time)`` from the foot strikes of both feet.

    Step frames: mean number of frames between successive strikes (either foot) - STEP's "stride" in frames.
    Gait-cycle time: mean interval between successive strikes of the same foot, times ``dt``; with fewer than two
    strikes of each foot, twice the step time; with fewer than two strikes in all, the sequence duration
    [reconstruction: short clips rarely hold a full cycle]."""
    sl, sr = foot_strikes(left_height, min_gap), foot_strikes(right_height, min_gap)
    n = len(left_height)
    merged = np.sort(np.concatenate([sl, sr]))
    step = float(np.diff(merged).mean()) if len(merged) >= 2 else float(n)
    same = [np.diff(s) for s in (sl, sr) if len(s) >= 2]
    if same:
        cycle = float(np.concatenate(same).mean()) * dt
    elif len(merged) >= 2:
        cycle = 2.0 * step * dt
    else:
        cycle = n * dt
    return step, cycle


# ---------------------------------------------------------------------------------------------- the feature set

POSTURE = ("volume", "angle_neck_shoulders", "angle_l_shoulder", "angle_r_shoulder", "trunk_inclination",
           "head_flexion", "dist_l_hand_root", "dist_r_hand_root", "dist_l_foot_root", "dist_r_foot_root",
           "area_hands_neck", "area_feet_root")
MOVEMENT_JOINTS = ("l_hand", "r_hand", "head", "l_foot", "r_foot")
MOVEMENT = tuple(f"{kind}_{j}" for j in MOVEMENT_JOINTS for kind in ("speed", "accel", "jerk"))
GAIT = ("step_frames", "gait_cycle_time")
STEP_FEATURES = (*POSTURE, *MOVEMENT, *GAIT)
LABAN = ("effort_weight", "effort_time", "effort_space", "effort_flow", "shape_contraction", "lr_asymmetry",
         "arm_swing", "cadence", "walking_speed")


def posture_features(seq: np.ndarray, up_axis: int = 1) -> dict[str, float]:
    """The 12 posture features, computed per frame and averaged over the sequence (angles in radians)."""
    x = np.asarray(seq, dtype=np.float64)
    g = {name: x[:, i] for name, i in J.items()}
    out = {
        "volume": bounding_box_volume(x),
        "angle_neck_shoulders": joint_angle(g["l_shoulder"], g["neck"], g["r_shoulder"]),
        # each shoulder's angle: at the shoulder, between the neck and the elbow [reconstruction of STEP's formula]
        "angle_l_shoulder": joint_angle(g["neck"], g["l_shoulder"], g["l_elbow"]),
        "angle_r_shoulder": joint_angle(g["neck"], g["r_shoulder"], g["r_elbow"]),
        "trunk_inclination": inclination(g["head"] - g["root"], up_axis),
        "head_flexion": joint_angle(g["head"], g["neck"], g["spine"]),
        "dist_l_hand_root": distance(g["l_hand"], g["root"]),
        "dist_r_hand_root": distance(g["r_hand"], g["root"]),
        "dist_l_foot_root": distance(g["l_foot"], g["root"]),
        "dist_r_foot_root": distance(g["r_foot"], g["root"]),
        "area_hands_neck": triangle_area(g["l_hand"], g["r_hand"], g["neck"]),
        "area_feet_root": triangle_area(g["l_foot"], g["r_foot"], g["root"]),
    }
    return {k: float(np.mean(v)) for k, v in out.items()}


def movement_features(seq: np.ndarray, dt: float = 1.0) -> dict[str, float]:
    """Mean speed, acceleration and jerk magnitude of both hands, the head and both feet (15 values)."""
    x = np.asarray(seq, dtype=np.float64)
    out = {}
    for j in MOVEMENT_JOINTS:
        out[f"speed_{j}"] = mean_speed(x[:, J[j]], dt)
        out[f"accel_{j}"] = mean_acceleration(x[:, J[j]], dt)
        out[f"jerk_{j}"] = mean_jerk(x[:, J[j]], dt)
    return out


def gait_features(seq: np.ndarray, up_axis: int = 1, dt: float = 1.0, min_gap: int = 3) -> dict[str, float]:
    x = np.asarray(seq, dtype=np.float64)
    step, cycle = gait_cycle_features(x[:, J["l_foot"], up_axis], x[:, J["r_foot"], up_axis], dt, min_gap)
    return {"step_frames": step, "gait_cycle_time": cycle}


def laban_features(seq: np.ndarray, up_axis: int = 1, dt: float = 1.0, min_gap: int = 3) -> dict[str, float]:
    """Laban-style extras [reconstruction of spec 3.5's list]: Effort-Weight (mean kinetic energy, unit masses),
    Effort-Time (mean |acceleration| of all joints), Effort-Space (root path directness = straight-line distance /
    path length), Effort-Flow (mean jerk of all joints), Shape (contraction: mean joint distance to the centroid),
    left-right asymmetry (mean | |left - root| - |right - root| | over paired joints), arm swing (mean range of each
    hand's root-relative position along the facing direction), cadence (strikes per unit time), walking speed
    (horizontal root displacement per unit time)."""
    x = np.asarray(seq, dtype=np.float64)
    t = x.shape[0]
    vel = np.diff(x, axis=0) / dt if t > 1 else np.zeros((1, *x.shape[1:]))
    root = x[:, J["root"]]
    path = np.linalg.norm(np.diff(root, axis=0), axis=-1).sum() if t > 1 else 0.0
    straight = float(np.linalg.norm(root[-1] - root[0]))
    centroid = x.mean(1, keepdims=True)
    pairs = [(J[n], J["r_" + n[2:]]) for n in J if n.startswith("l_")]
    rel = x - root[:, None]
    asym = np.mean([np.abs(np.linalg.norm(rel[:, a], axis=-1) - np.linalg.norm(rel[:, b], axis=-1)).mean()
                    for a, b in pairs])
    up = np.zeros(3)
    up[up_axis] = 1.0
    hip = (x[:, J["r_hip"]] - x[:, J["l_hip"]]).mean(0)
    facing = np.cross(up, hip)
    nf = np.linalg.norm(facing)
    facing = facing / nf if nf > 0 else facing
    swing = np.mean([np.ptp(rel[:, J[h]] @ facing) for h in ("l_hand", "r_hand")])
    strikes = (len(foot_strikes(x[:, J["l_foot"], up_axis], min_gap))
               + len(foot_strikes(x[:, J["r_foot"], up_axis], min_gap)))
    ground = [a for a in range(3) if a != up_axis]
    horiz = float(np.linalg.norm(root[-1, ground] - root[0, ground]))
    return {
        "effort_weight": float(0.5 * (vel ** 2).sum(-1).sum(-1).mean()),
        "effort_time": float(np.mean([mean_acceleration(x[:, j], dt) for j in range(x.shape[1])])),
        "effort_space": straight / path if path > 0 else 1.0,
        "effort_flow": float(np.mean([mean_jerk(x[:, j], dt) for j in range(x.shape[1])])),
        "shape_contraction": float(np.linalg.norm(x - centroid, axis=-1).mean()),
        "lr_asymmetry": float(asym),
        "arm_swing": float(swing),
        "cadence": strikes / (t * dt),
        "walking_speed": horiz / (max(t - 1, 1) * dt),
    }


def _swap_lr(name: str) -> str:
    for a, b in (("_l_", "_r_"), ("_r_", "_l_")):
        if a in f"_{name}_":
            return f"_{name}_".replace(a, b, 1)[1:-1]
    return name


@dataclass(frozen=True)
class GaitFeatures:
    """The STEP affective features (29, spec 3.5) of a ``(T, 16, 3)`` gait, plus Laban extras with ``laban=True``.

    ``dt`` is the time between frames (1.0: per-frame units, as STEP); ``up_axis`` comes from the skeleton.

    >>> f = GaitFeatures()
    >>> len(f.names)
    29
    """

    skeleton: Skeleton16 = field(default_factory=Skeleton16)
    dt: float = 1.0
    laban: bool = False
    min_strike_gap: int = 3

    @property
    def names(self) -> tuple[str, ...]:
        return (*STEP_FEATURES, *LABAN) if self.laban else STEP_FEATURES

    def as_dict(self, seq: np.ndarray) -> dict[str, float]:
        x = np.asarray(seq, dtype=np.float64)
        if x.ndim != 3 or x.shape[1:] != (16, 3):
            raise ValueError(f"expected a (T, 16, 3) gait, got shape {x.shape}")
        up = self.skeleton.up_axis
        out = {**posture_features(x, up), **movement_features(x, self.dt),
               **gait_features(x, up, self.dt, self.min_strike_gap)}
        if self.laban:
            out.update(laban_features(x, up, self.dt, self.min_strike_gap))
        return out

    def __call__(self, seq: np.ndarray) -> np.ndarray:
        d = self.as_dict(seq)
        return np.array([d[n] for n in self.names], dtype=np.float64)

    def transform(self, sequences) -> np.ndarray:
        """``(N, F)`` features of a batch ``(N, T, 16, 3)`` or a list of variable-length ``(T_i, 16, 3)`` gaits."""
        return np.stack([self(s) for s in sequences]) if len(sequences) else np.zeros((0, len(self.names)))

    def mirror_permutation(self) -> np.ndarray:
        """Index map ``p`` with ``features(mirror(x)) == features(x)[p]``: left/right features swap."""
        names = self.names
        return np.array([names.index(_swap_lr(n)) for n in names])

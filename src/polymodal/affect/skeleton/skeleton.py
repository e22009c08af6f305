"""The 16-joint skeleton of Emotion-Gait / STEP (spec affect.md 3.5): joint order, bones, mirror map, adjacency.

Joint order follows the Emotion-Gait README [official code]: root, spine, neck, head, L-shoulder, L-elbow, L-hand,
R-shoulder, R-elbow, R-hand, L-hip, L-knee, L-foot, R-hip, R-knee, R-foot. STEP's feature code calls index 4 the
*right* shoulder and 12 the right foot (left/right swapped); we keep the README's convention everywhere and test
mirror symmetry instead. Which axis points up is dataset-specific, hence ``up_axis`` (default 1: y-up); the lateral
axis used by :meth:`Skeleton16.mirror` is ``lateral_axis`` (default 0: x).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "root", "spine", "neck", "head",
    "l_shoulder", "l_elbow", "l_hand",
    "r_shoulder", "r_elbow", "r_hand",
    "l_hip", "l_knee", "l_foot",
    "r_hip", "r_knee", "r_foot",
)
#: parent of every joint (-1: the root); the bones are (j, PARENTS[j])
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 2, 4, 5, 2, 7, 8, 0, 10, 11, 0, 13, 14)
J = {name: i for i, name in enumerate(JOINT_NAMES)}


def _mirror_map() -> tuple[int, ...]:
    out = []
    for name in JOINT_NAMES:
        if name.startswith("l_"):
            out.append(J["r_" + name[2:]])
        elif name.startswith("r_"):
            out.append(J["l_" + name[2:]])
        else:
            out.append(J[name])
    return tuple(out)


#: joint i of a mirrored skeleton is joint MIRROR[i] of the original (left <-> right)
MIRROR: tuple[int, ...] = _mirror_map()


def normalize_adjacency(a: np.ndarray, add_self_loops: bool = True) -> np.ndarray:
    """``D^-1/2 (A + I) D^-1/2`` (spec 3.4; Kipf & Welling), D the degree matrix of ``A + I``."""
    a = np.asarray(a, dtype=np.float64)
    if add_self_loops:
        a = a + np.eye(len(a))
    deg = a.sum(1)
    inv = np.where(deg > 0, deg ** -0.5, 0.0)
    return inv[:, None] * a * inv[None, :]


@dataclass(frozen=True)
class Skeleton16:
    """The 16-joint Emotion-Gait skeleton: names, parents, mirror map and graph matrices.

    >>> sk = Skeleton16()
    >>> sk.normalized_adjacency().shape
    (16, 16)
    """

    up_axis: int = 1
    lateral_axis: int = 0

    def __post_init__(self) -> None:
        if self.up_axis not in (0, 1, 2) or self.lateral_axis not in (0, 1, 2) or self.up_axis == self.lateral_axis:
            raise ValueError(f"up_axis and lateral_axis must be distinct axes in 0..2, got {self.up_axis}, "
                             f"{self.lateral_axis}")

    names: tuple[str, ...] = JOINT_NAMES
    parents: tuple[int, ...] = PARENTS
    mirror_map: tuple[int, ...] = MIRROR

    @property
    def num_joints(self) -> int:
        return len(self.names)

    @property
    def forward_axis(self) -> int:
        return 3 - self.up_axis - self.lateral_axis

    def index(self, name: str) -> int:
        return self.names.index(name)

    def edges(self) -> list[tuple[int, int]]:
        """Bones as (child, parent) pairs."""
        return [(j, p) for j, p in enumerate(self.parents) if p >= 0]

    def adjacency(self) -> np.ndarray:
        """Symmetric 0/1 bone adjacency (no self loops)."""
        a = np.zeros((self.num_joints, self.num_joints))
        for j, p in self.edges():
            a[j, p] = a[p, j] = 1.0
        return a

    def normalized_adjacency(self) -> np.ndarray:
        """``D^-1/2 (A + I) D^-1/2`` of the bone graph."""
        return normalize_adjacency(self.adjacency())

    def hops_from_root(self) -> np.ndarray:
        hops = np.zeros(self.num_joints, dtype=int)
        for j, p in enumerate(self.parents):  # parents precede children in this order
            hops[j] = 0 if p < 0 else hops[p] + 1
        return hops

    def spatial_partitions(self) -> np.ndarray:
        """ST-GCN's spatial partition strategy (Yan et al. 2018): (3, J, J) = self / centripetal / centrifugal
        neighbours (by hop distance to the root), each column-normalised by the degree of ``A + I``."""
        a = self.adjacency() + np.eye(self.num_joints)
        hops = self.hops_from_root()
        deg = a.sum(0)
        parts = np.zeros((3, self.num_joints, self.num_joints))
        for i in range(self.num_joints):
            for j in range(self.num_joints):
                if a[i, j] == 0:
                    continue
                k = 0 if hops[j] == hops[i] else (1 if hops[j] < hops[i] else 2)
                parts[k, i, j] = 1.0 / deg[j]
        return parts

    def mirror(self, seq: np.ndarray) -> np.ndarray:
        """Reflect ``(..., J, 3)`` through the sagittal plane: lateral coordinate negated, left/right joints swapped."""
        out = np.array(seq, dtype=np.float64 if np.asarray(seq).dtype == np.float64 else np.float32)
        out = out[..., list(self.mirror_map), :].copy()
        out[..., self.lateral_axis] *= -1
        return out


def resample_time(seq: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of a ``(T, ...)`` sequence to ``length`` frames (handles variable-length gaits)."""
    seq = np.asarray(seq)
    t = seq.shape[0]
    if t == length:
        return seq.copy()
    if t == 1:
        return np.repeat(seq, length, axis=0)
    pos = np.linspace(0, t - 1, length)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, t - 1)
    w = (pos - lo).reshape(-1, *([1] * (seq.ndim - 1)))
    return (1 - w) * seq[lo] + w * seq[hi]


def normalize_sequence(seq: np.ndarray, skeleton: Skeleton16 | None = None, align_heading: bool = True) -> np.ndarray:
    """Put a ``(T, J, 3)`` gait in a canonical frame: the first frame's root at the origin of the ground plane
    (height kept) and, with ``align_heading``, rotated about the up axis so the mean hip line (L-hip -> R-hip)
    points along ``-lateral``, i.e. the walker faces ``+forward`` (right-handed axes). [reconstruction]"""
    sk = skeleton or Skeleton16()
    x = np.asarray(seq, dtype=np.float64).copy()
    ground = [a for a in range(3) if a != sk.up_axis]
    x[..., ground] -= x[0, J["root"], ground]
    if align_heading:
        hip = (x[:, J["r_hip"]] - x[:, J["l_hip"]]).mean(0)
        lat, fwd = sk.lateral_axis, sk.forward_axis
        # R-hip sits at -lateral when the walker faces +forward (right-handed y-up, z-forward => right is -x)
        ang = np.arctan2(hip[fwd], -hip[lat])
        c, s = np.cos(ang), np.sin(ang)
        a_lat, a_fwd = x[..., lat].copy(), x[..., fwd].copy()
        # rotate the (lateral, forward) plane by ang: the hip line maps onto -lateral
        x[..., lat] = c * a_lat - s * a_fwd
        x[..., fwd] = s * a_lat + c * a_fwd
    return x

"""Windowing of synchronised IMU recordings (spec 6): 2 s = 100 samples at 50 Hz with 50 % overlap by default.

Windows are cut inside each contiguous activity segment (the grid restarts at every label change), so a segment of
N samples gives ``floor((N - size) / step) + 1`` windows and no window straddles two activities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from polymodal.core.errors import ConfigError
from polymodal.sensing.imu import ACC, GYRO, MAG, Recording, agent_positions

#: channels of a window array: acc xyz, gyro xyz, mag xyz
CHANNELS = ("ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz")


def segment_bounds(labels: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each contiguous run of equal labels."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return []
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(labels)]])
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def window_starts(n: int, size: int = 100, step: int = 50) -> np.ndarray:
    """Start indices of the windows of a segment of ``n`` samples."""
    if size < 1 or step < 1:
        raise ConfigError(f"window size and step must be >= 1, got {size}, {step}")
    if n < size:
        return np.zeros(0, dtype=int)
    return np.arange(0, n - size + 1, step)


@dataclass
class WindowSet:
    """Windows of several recordings: ``X[position]`` is ``(W, size, 9)`` (acc, gyro, mag), ``y`` the W labels,
    ``participant`` who, ``start`` the first sample index inside the recording."""

    X: dict[str, np.ndarray]
    y: np.ndarray
    participant: np.ndarray
    start: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    def window(self, i: int) -> dict[str, np.ndarray]:
        """Window ``i`` as ``{position: (size, 9)}`` — what :meth:`SensingAgents.predict` takes."""
        return {p: x[i] for p, x in self.X.items()}

    def subset(self, idx) -> WindowSet:
        idx = np.asarray(idx, dtype=int)
        return WindowSet({p: x[idx] for p, x in self.X.items()}, self.y[idx], self.participant[idx],
                         self.start[idx], dict(self.meta))


def make_windows(recordings: list[Recording], *, size: int = 100, step: int = 50, pocket: str = "right",
                 positions: tuple[str, ...] = ("arm", "wrist", "belt", "pocket")) -> WindowSet:
    """Cut every recording into windows over the SensingAgents positions (see :func:`imu.agent_positions`)."""
    xs: dict[str, list[np.ndarray]] = {p: [] for p in positions}
    ys, parts, starts = [], [], []
    for rec in recordings:
        pos = agent_positions(rec, pocket)
        missing = [p for p in positions if p not in pos]
        if missing:
            raise ConfigError(f"recording {rec.participant} ({rec.source}) has no position(s) {missing}; "
                              f"it has {sorted(pos)}")
        chans = {p: np.concatenate([pos[p][:, ACC], pos[p][:, GYRO], pos[p][:, MAG]], axis=1) for p in positions}
        for s, e in segment_bounds(rec.labels):
            for w in window_starts(e - s, size, step):
                a = s + int(w)
                for p in positions:
                    xs[p].append(chans[p][a : a + size])
                ys.append(rec.labels[a])
                parts.append(rec.participant)
                starts.append(a)
    if not ys:
        raise ConfigError(f"no window of {size} samples fits in the recordings (segments too short)")
    return WindowSet({p: np.stack(v).astype(np.float32) for p, v in xs.items()}, np.asarray(ys),
                     np.asarray(parts), np.asarray(starts), {"size": size, "step": step, "pocket": pocket})

"""Seeded generator of Shoaib-2014-format CSVs with position-specific signal physics (spec 8) [reconstruction].

The real Shoaib files are not available offline, so every recipe's embedded data is this generator's output
WRITTEN as ``Participant_<k>.csv`` in the exact 2014 format (2 header rows, 5 blocks × 14 columns, the label in the
last column, the "upsatirs" typo in one participant) and read back through :func:`polymodal.sensing.imu.load_shoaib_2014`.

Physics per (activity, position), all amplitudes scaled per participant (cadence ±10 %, amplitude ±20 %, mounting
offsets up to 15°, noise 0.05–0.2 m/s²):

- **orientation**: gravity direction in the device frame by posture — pocket/thigh upright when standing or
  walking (gravity along the device's long axis), near-horizontal when sitting, ~50° on a bike; belt in landscape;
  upper arm hanging; wrist hanging when upright, face-up when sitting at a desk or on a handlebar;
- **gait**: a vertical bounce along gravity at the step frequency (walking 1.8 Hz, jogging 2.75 Hz, upstairs 1.55 Hz,
  downstairs 1.8 Hz) with harmonics (sharper impacts downstairs), amplitude largest at pocket/belt and ×3 when jogging;
- **segment rotation**: thigh swing and arm swing at half the step frequency (stride), pedalling thigh rotation at
  1.2 Hz, a slow trunk lean on stairs; gyro = the angular velocity of that rotation;
- **biking**: pedal-rate bounce and rotation at the pocket, a quiet wrist and arm, 8–14 Hz road vibration elsewhere;
- **magnetometer**: an Earth field (20, 0, −40) µT rotated into the device frame; **linear acc** = acc − gravity.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from polymodal.sensing.imu import ACTIVITIES, BLOCK_FIELDS, BLOCK_WIDTH, POSITION_HEADER, POSITIONS_2014

G = 9.81
FS = 50.0
EARTH_FIELD = np.array([20.0, 0.0, -40.0])

#: posture of each activity (picks the gravity direction table)
POSTURE = {"walking": "upright", "jogging": "upright", "upstairs": "upright", "downstairs": "upright",
           "standing": "upright", "sitting": "seated", "biking": "cycling"}
#: device-frame gravity direction by (position, posture); left/right pocket share the thigh table
GRAVITY_DIR = {
    "pocket": {"upright": (0.0, 1.0, 0.05), "seated": (0.1, 0.15, 0.98), "cycling": (0.0, 0.6, 0.8)},
    "belt": {"upright": (1.0, 0.0, 0.05), "seated": (0.95, 0.0, 0.3), "cycling": (0.85, 0.0, -0.5)},
    "upper_arm": {"upright": (0.0, 1.0, 0.1), "seated": (0.2, 0.9, 0.38), "cycling": (0.3, 0.7, 0.65)},
    "wrist": {"upright": (0.95, 0.0, 0.3), "seated": (0.15, 0.1, 0.98), "cycling": (0.3, 0.1, 0.95)},
}
#: step (or pedal) frequency in Hz
STEP_HZ = {"walking": 1.8, "jogging": 2.75, "upstairs": 1.55, "downstairs": 1.8, "biking": 1.2}
#: bounce amplitude (m/s²) at pocket, belt, upper arm, wrist
BOUNCE = {"walking": (2.6, 2.2, 1.6, 1.8), "jogging": (8.0, 7.0, 6.0, 6.5), "upstairs": (2.0, 1.7, 1.3, 1.4),
          "downstairs": (3.0, 2.6, 2.0, 2.2), "biking": (1.2, 0.25, 0.2, 0.15)}
#: (2nd, 3rd) harmonic ratios of the bounce: sharper impacts downstairs
HARMONICS = {"walking": (0.3, 0.1), "jogging": (0.35, 0.15), "upstairs": (0.25, 0.05), "downstairs": (0.5, 0.35),
             "biking": (0.1, 0.0)}
#: segment rotation amplitude (degrees) at pocket, belt, upper arm, wrist; its frequency is stride = step/2,
#: except biking (the thigh turns once per pedal stroke)
SWING_DEG = {"walking": (20, 4, 12, 25), "jogging": (35, 6, 20, 35), "upstairs": (30, 4, 8, 12),
             "downstairs": (22, 4, 8, 12), "biking": (25, 2, 2, 2)}
#: road vibration std (m/s², 8–14 Hz) when biking at pocket, belt, upper arm, wrist
VIBRATION = (0.15, 0.35, 0.3, 0.35)
_POS_INDEX = {"left_pocket": 0, "right_pocket": 0, "belt": 1, "upper_arm": 2, "wrist": 3}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _rodrigues(v: np.ndarray, k: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotate vector(s) ``v`` about unit axis ``k`` by angles ``theta`` (T,) → (T, 3)."""
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    v = np.broadcast_to(v, (len(theta), 3))
    return v * c + np.cross(k, v) * s + k[None, :] * (v @ k)[:, None] * (1 - c)


def _random_rotation(rng: np.random.Generator, max_deg: float):
    axis = _unit(rng.normal(size=3))
    ang = np.radians(rng.uniform(-max_deg, max_deg))
    return lambda v: _rodrigues(np.asarray(v, float), axis, np.array([ang]))[0]


def simulate_segment(activity: str, position: str, seconds: float, rng: np.random.Generator, *,
                     cadence_factor: float = 1.0, amplitude_factor: float = 1.0, mount=None, heading: float = 0.0,
                     noise: float = 0.1, fs: float = FS) -> np.ndarray:
    """One position's ``(N, 12)`` signals (acc, linear acc, gyro, mag) for one activity segment."""
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    pi = _POS_INDEX[position]
    table = "pocket" if "pocket" in position else position
    u0 = _unit(GRAVITY_DIR[table][POSTURE[activity]])
    if position == "left_pocket":  # mirrored thigh
        u0 = _unit(u0 * np.array([-1.0, 1.0, 1.0]))
    if mount is not None:
        u0 = _unit(mount(u0))
    # the swing axis: perpendicular to gravity, roughly the device x (or z) axis
    ref = np.array([1.0, 0.0, 0.0]) if abs(u0[0]) < 0.8 else np.array([0.0, 0.0, 1.0])
    k = _unit(np.cross(u0, ref))
    # a heading-rotated Earth field, expressed in the device frame at rest (gravity-aligned)
    m_world = np.array([EARTH_FIELD[0] * np.cos(heading), EARTH_FIELD[0] * np.sin(heading), EARTH_FIELD[2]])
    up = np.array([0.0, 0.0, 1.0])
    axis = np.cross(up, u0)
    ang = np.arccos(np.clip(up @ u0, -1, 1))
    m0 = m_world if np.linalg.norm(axis) < 1e-9 else _rodrigues(m_world, _unit(axis), np.array([ang]))[0]

    theta = np.zeros(n)
    bounce = np.zeros(n)
    extra = np.zeros((n, 3))
    if activity in STEP_HZ:
        f = STEP_HZ[activity] * cadence_factor
        # slowly wandering cadence: a phase random walk
        phase = 2 * np.pi * f * t + np.cumsum(rng.normal(0, 0.02, n)) + rng.uniform(0, 2 * np.pi)
        h2, h3 = HARMONICS[activity]
        a = BOUNCE[activity][pi] * amplitude_factor
        bounce = a * (np.sin(phase) + h2 * np.sin(2 * phase + 0.7) + h3 * np.sin(3 * phase + 1.3))
        rot_phase = phase if activity == "biking" else phase / 2
        theta = np.radians(SWING_DEG[activity][pi] * amplitude_factor) * np.sin(rot_phase)
        if activity in ("upstairs", "downstairs") and position in ("belt", "upper_arm"):
            theta = theta + np.radians(6.0) * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 6.28))
        if activity == "biking":
            b, a_ = _bandpass(8.0, 14.0, fs)
            from scipy.signal import lfilter

            vib = lfilter(b, a_, rng.normal(size=(n + 200, 3)), axis=0)[200:]
            extra += VIBRATION[pi] * vib / max(vib.std(), 1e-9)
    else:  # static: postural sway
        theta = np.radians(1.0) * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 6.28))
        bounce = 0.03 * np.sin(2 * np.pi * rng.uniform(0.2, 0.5) * t)
    u = _rodrigues(u0, k, theta)
    gravity = G * u
    lin = bounce[:, None] * u + extra + rng.normal(0, noise, (n, 3))
    acc = gravity + lin
    gyro = np.gradient(theta, 1 / fs)[:, None] * k[None, :] + rng.normal(0, 0.02, (n, 3))
    mag = _rodrigues(m0, k, theta) + rng.normal(0, 0.5, (n, 3))
    return np.concatenate([acc, lin, gyro, mag], axis=1)


def _bandpass(lo: float, hi: float, fs: float):
    from scipy.signal import butter

    return butter(2, [lo / (fs / 2), hi / (fs / 2)], btype="band")


def simulate_participant(participant: int, *, seconds_per_activity: float = 30.0, seed: int = 0,
                         activities=ACTIVITIES, fs: float = FS) -> tuple[dict[str, np.ndarray], list[str]]:
    """Arrays ``{position: (N, 13)}`` (timestamp ms, acc, linear acc, gyro, mag) and the N labels of one participant."""
    rng = np.random.default_rng([seed, participant])
    cadence = rng.uniform(0.9, 1.1)
    amp = rng.uniform(0.8, 1.2)
    noise = rng.uniform(0.05, 0.2)
    mounts = {p: _random_rotation(rng, 15.0) for p in POSITIONS_2014}
    heading = rng.uniform(0, 2 * np.pi)
    per_pos: dict[str, list[np.ndarray]] = {p: [] for p in POSITIONS_2014}
    labels: list[str] = []
    for act in activities:
        for p in POSITIONS_2014:
            per_pos[p].append(simulate_segment(act, p, seconds_per_activity, rng, cadence_factor=cadence,
                                               amplitude_factor=amp, mount=mounts[p], heading=heading, noise=noise,
                                               fs=fs))
        labels += [act] * len(per_pos[POSITIONS_2014[0]][-1])
    n = len(labels)
    ts = 1_400_000_000_000 + participant * 10_000_000 + np.arange(n) * (1000.0 / fs)
    out = {p: np.concatenate([ts[:, None], np.concatenate(v)], axis=1) for p, v in per_pos.items()}
    return out, labels


def write_shoaib_2014_csv(path: str | Path, arrays: dict[str, np.ndarray], labels: list[str], *,
                          typo: bool = False, decimals: int = 4) -> Path:
    """Write one participant in the exact 2014 layout (label in the last column; other 14th columns empty)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    head1, head2 = [], []
    for p in POSITIONS_2014:
        head1 += [POSITION_HEADER[p]] + [""] * (BLOCK_WIDTH - 1)
        head2 += list(BLOCK_FIELDS) + ["activity"]
    fmt = f"{{:.{decimals}f}}"
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(head1)
        w.writerow(head2)
        blocks = [arrays[p] for p in POSITIONS_2014]
        for i, lab in enumerate(labels):
            row: list[str] = []
            for b, arr in enumerate(blocks):
                row.append(str(int(arr[i, 0])))
                row += [fmt.format(v) for v in arr[i, 1:13]]
                last = b == len(blocks) - 1
                row.append(("upsatirs" if typo and lab == "upstairs" else lab) if last else "")
            w.writerow(row)
    tmp.replace(path)
    return path


def make_shoaib_2014(participants: int = 3, seconds_per_activity: float = 30.0, seed: int = 0,
                     out_dir: str | Path = ".", *, typo_participant: int | None = 1) -> list[Path]:
    """Write ``Participant_1..k.csv`` under ``out_dir`` (spec 8 defaults: 3 participants × 7 activities × 30 s);
    participant ``typo_participant`` spells upstairs "upsatirs" as a real file does. Returns the paths."""
    paths = []
    for k in range(1, participants + 1):
        arrays, labels = simulate_participant(k, seconds_per_activity=seconds_per_activity, seed=seed)
        paths.append(write_shoaib_2014_csv(Path(out_dir) / f"Participant_{k}.csv", arrays, labels,
                                           typo=(k == typo_participant)))
    return paths

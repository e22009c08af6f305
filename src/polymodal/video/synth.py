"""Seeded synthetic audio-visual action clips (spec video.md 1.5 and 2.5; every detail here is [reconstruction]).

No video dataset exists offline, so the embedded default is drawn on the fly: each clip shows one object whose
*shape, motion pattern and speed* define the action class (so a single frame is not enough: "driving a car" and
"reversing a car" differ only in direction and speed), over a textured background with a static distractor shape,
random colours, position and speed jitter and pixel noise. Each clip carries a 1-s 16 kHz audio track whose sound
event (engine hum, knocks, music notes, speech-like formants, water noise, bell) correlates with the action. The audio
label space is deliberately *different* from the video label space, with a many-to-many ground-truth relation, so the
audio-to-video label mapping of Audio-Assisted TTA is a real problem.

Layout used across the video family: a clip is a float tensor ``(T, C, H, W)`` in ``[0, 1]``; a batch is
``(B, T, C, H, W)``; audio is ``(n_samples,)`` mono float at ``sample_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

#: video classes: (name, shape, motion, speed in pixels/frame at 32 px, audio distribution {audio class: p})
VIDEO_CLASS_SPECS: tuple[tuple[str, str, str, float, dict[str, float]], ...] = (
    ("driving a car", "square", "right", 3.0, {"engine": 1.0}),
    ("reversing a car", "square", "left", 1.2, {"engine": 0.8, "speech": 0.2}),
    ("dribbling a basketball", "circle", "bounce", 2.5, {"knock": 0.8, "speech": 0.2}),
    ("knocking on a door", "square", "shake", 2.0, {"knock": 1.0}),
    ("playing the guitar", "triangle", "bounce", 1.0, {"music": 1.0}),
    ("dancing", "circle", "circle", 2.0, {"music": 0.7, "speech": 0.3}),
    ("giving a speech", "triangle", "wobble", 0.6, {"speech": 1.0}),
    ("rowing a boat", "circle", "left", 1.2, {"water": 0.8, "speech": 0.2}),
    ("swimming", "triangle", "right", 1.2, {"water": 1.0}),
    ("ringing a bell", "triangle", "swing", 1.5, {"bell": 1.0}),
)
VIDEO_CLASSES: tuple[str, ...] = tuple(s[0] for s in VIDEO_CLASS_SPECS)
#: audio event classes, in the wording a sound tagger would use (AudioSet-like names)
AUDIO_CLASSES: tuple[str, ...] = ("engine", "knock", "music", "speech", "water", "bell")


def audio_video_relation() -> np.ndarray:
    """Ground-truth relation ``R[a, v] = P(audio class a | video class v)`` (``len(AUDIO) x len(VIDEO)``)."""
    rel = np.zeros((len(AUDIO_CLASSES), len(VIDEO_CLASSES)), dtype=np.float32)
    for v, (*_, dist) in enumerate(VIDEO_CLASS_SPECS):
        for a_name, p in dist.items():
            rel[AUDIO_CLASSES.index(a_name), v] = p
    return rel


@dataclass
class AVClips:
    """A set of clips: ``video`` (N, T, C, H, W) float32 in [0, 1], optional ``audio`` (N, n_samples)."""

    video: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    audio: torch.Tensor | None = None
    audio_labels: torch.Tensor | None = None
    audio_class_names: tuple[str, ...] = ()
    sample_rate: int = 16000
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def subset(self, idx: torch.Tensor | np.ndarray | list[int]) -> AVClips:
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return AVClips(
            video=self.video[idx], labels=self.labels[idx], class_names=self.class_names,
            audio=None if self.audio is None else self.audio[idx],
            audio_labels=None if self.audio_labels is None else self.audio_labels[idx],
            audio_class_names=self.audio_class_names, sample_rate=self.sample_rate, meta=dict(self.meta))


# ------------------------------------------------------------------------------------------ drawing
def _shape_mask(shape: str, cy: float, cx: float, r: float, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if shape == "square":
        return (np.abs(yy - cy) <= r * 0.85) & (np.abs(xx - cx) <= r * 0.85)
    if shape == "triangle":  # apex up
        top, bottom = cy - r, cy + r
        inside_y = (yy >= top) & (yy <= bottom)
        half = (yy - top) / (2 * r) * r
        return inside_y & (np.abs(xx - cx) <= half)
    raise ValueError(f"unknown shape {shape!r}")


def _trajectory(motion: str, speed: float, frames: int, size: int, rng: np.random.Generator,
                speed_jitter: tuple[float, float] = (0.8, 1.25)) -> tuple[np.ndarray, np.ndarray]:
    """Object centre (y, x) per frame for a motion pattern; speeds are scaled from the 32-px reference and
    multiplied by a factor drawn uniformly from ``speed_jitter``."""
    s = speed * size / 32.0 * rng.uniform(*speed_jitter)
    t = np.arange(frames, dtype=np.float64)
    margin = size * 0.2
    cy0, cx0 = rng.uniform(margin, size - margin, size=2)
    phase = rng.uniform(0, 2 * math.pi)
    if motion in ("right", "left"):
        span = s * (frames - 1)
        lo, hi = margin, max(margin, size - margin - span)
        start = rng.uniform(lo, hi) if hi > lo else lo
        x = start + s * t if motion == "right" else (size - start) - s * t
        return np.full(frames, cy0), x
    if motion == "bounce":  # vertical oscillation, amplitude and frequency grow with speed
        amp = min(size * 0.25, 2.0 * s)
        return cy0 + amp * np.sin(phase + t * s / 2.0) * 0.9, np.full(frames, cx0)
    if motion == "shake":  # fast small horizontal oscillation
        return np.full(frames, cy0), cx0 + 0.5 * s * np.where(t % 2 == 0, 1.0, -1.0)
    if motion == "swing":  # pendulum: horizontal arc with a vertical dip
        ang = 0.6 * np.sin(phase + t * s / 3.0)
        return cy0 + size * 0.1 * (1 - np.cos(ang)), cx0 + size * 0.25 * np.sin(ang)
    if motion == "circle":
        rad = size * 0.18
        return cy0 + rad * np.sin(phase + t * s / 4.0), cx0 + rad * np.cos(phase + t * s / 4.0)
    if motion == "wobble":  # almost static, slow small jitter
        return cy0 + s * rng.normal(0, 0.6, frames), cx0 + s * rng.normal(0, 0.6, frames)
    raise ValueError(f"unknown motion {motion!r}")


@dataclass(frozen=True)
class Nuisance:
    """How hard the synthetic clips are (the defaults are the original generator's). Every knob keeps the random
    draws of the default, so a clip drawn with other knobs is the *same* scene (class, colours, positions, speed)
    rendered differently: ``distractor=False`` only leaves out the static distractor shape, ``texture=0`` only flattens
    the background texture.

    - ``distractor``: draw a static shape of a random kind (a clip's shape is then ambiguous from one frame);
    - ``texture``: std of the blocky low-frequency background texture;
    - ``object_scale``: object radius range as a fraction of the frame side;
    - ``speed_jitter``: range of the per-clip speed factor (1, 1 = the class's nominal speed).
    Pixel noise is ``audio_visual``'s ``noise`` argument."""

    distractor: bool = True
    texture: float = 0.04
    object_scale: tuple[float, float] = (0.12, 0.18)
    speed_jitter: tuple[float, float] = (0.8, 1.25)

    def __post_init__(self) -> None:
        lo, hi = self.object_scale
        if not 0.02 <= lo <= hi <= 0.4:
            raise ValueError(f"object_scale must satisfy 0.02 <= lo <= hi <= 0.4, got {self.object_scale}")
        lo, hi = self.speed_jitter
        if not 0 < lo <= hi:
            raise ValueError(f"speed_jitter must satisfy 0 < lo <= hi, got {self.speed_jitter}")
        if self.texture < 0:
            raise ValueError(f"texture must be >= 0, got {self.texture}")


#: the original generator's nuisance (distractor on, texture 0.04, radius 12-18 %, speed x0.8-1.25)
HARD = Nuisance()
#: the calibrated nuisance of the quick / default video recipes (docs/methods/video-data.md): no distractor, fainter
#: texture, bigger objects, narrower speed jitter; colours, positions, noise and the motion-defined classes unchanged
EASY = Nuisance(distractor=False, texture=0.02, object_scale=(0.2, 0.26), speed_jitter=(0.9, 1.1))
NUISANCE_PRESETS = {"hard": HARD, "easy": EASY}


def _draw_clip(spec: tuple, frames: int, size: int, rng: np.random.Generator, noise: float,
               nuisance: Nuisance = HARD) -> np.ndarray:
    _, shape, motion, speed, _ = spec
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    # background: a smooth random colour gradient plus low-frequency texture
    base = rng.uniform(0.1, 0.6, size=3)
    grad = rng.uniform(-0.2, 0.2, size=(3, 2))
    tex = rng.normal(0, nuisance.texture, size=(3, size // 4 + 1, size // 4 + 1))
    tex = tex.repeat(4, 1).repeat(4, 2)[:, :size, :size]
    bg = base[:, None, None] + grad[:, :1, None] * (yy / size) + grad[:, 1:, None] * (xx / size) + tex
    # a static distractor shape of a random kind
    dshape = ["circle", "square", "triangle"][rng.integers(3)]
    dcol = rng.uniform(0, 1, size=3)
    dmask = _shape_mask(dshape, *rng.uniform(0.15 * size, 0.85 * size, 2), size * rng.uniform(0.08, 0.14), yy, xx)
    if nuisance.distractor:
        bg = np.where(dmask[None], dcol[:, None, None], bg)
    colour = rng.uniform(0, 1, size=3)
    colour[rng.integers(3)] = rng.uniform(0.8, 1.0)  # keep the object visible
    radius = size * rng.uniform(*nuisance.object_scale)
    cy, cx = _trajectory(motion, speed, frames, size, rng, nuisance.speed_jitter)
    clip = np.empty((frames, 3, size, size), dtype=np.float64)
    for f in range(frames):
        mask = _shape_mask(shape, cy[f], cx[f], radius, yy, xx)
        clip[f] = np.where(mask[None], colour[:, None, None], bg)
    clip += rng.normal(0, noise, size=clip.shape)
    return np.clip(clip, 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------ sounds
def _envelope(n: int, attack: int, decay: float) -> np.ndarray:
    env = np.exp(-np.arange(n) / max(decay, 1.0))
    env[:attack] *= np.linspace(0, 1, attack)
    return env


def synth_sound(event: str, rng: np.random.Generator, *, seconds: float = 1.0, sample_rate: int = 16000
                ) -> np.ndarray:
    """One sound event of class ``event`` (AUDIO_CLASSES) as a mono float32 waveform in about [-1, 1]."""
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    y = np.zeros(n)
    if event == "engine":  # low harmonic hum with a slow throttle modulation
        f0 = rng.uniform(60, 110)
        for h in range(1, 7):
            y += np.sin(2 * math.pi * f0 * h * t + rng.uniform(0, 6.3)) / h
        y *= 0.6 + 0.4 * np.sin(2 * math.pi * rng.uniform(1, 4) * t)
    elif event == "knock":  # 2-4 short broadband decaying bursts
        for _ in range(rng.integers(2, 5)):
            start = rng.integers(0, n - sample_rate // 10)
            burst = rng.normal(0, 1, sample_rate // 10) * _envelope(sample_rate // 10, 20, sample_rate / 120)
            y[start:start + burst.size] += burst
    elif event == "music":  # 3-5 pentatonic notes with harmonics
        notes = rng.choice([261.6, 293.7, 329.6, 392.0, 440.0, 523.3], size=rng.integers(3, 6))
        seg = n // len(notes)
        for i, f in enumerate(notes):
            tt = t[: seg]
            tone = sum(np.sin(2 * math.pi * f * h * tt) / h ** 1.5 for h in (1, 2, 3))
            y[i * seg:(i + 1) * seg] += tone * _envelope(seg, 80, seg / 2.5)
    elif event == "speech":  # glottal pulse train through two moving formants, syllable-rate modulation
        f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * math.pi * 3 * t))
        phase = np.cumsum(2 * math.pi * f0 / sample_rate)
        src = np.sign(np.sin(phase)) * 0.5
        for fc in (rng.uniform(500, 900), rng.uniform(1200, 2200)):
            y += src * np.sin(2 * math.pi * fc * t) * 0.5
        y *= np.clip(np.sin(2 * math.pi * rng.uniform(3, 5) * t), 0, None)
    elif event == "water":  # band-limited noise with random gurgles
        white = rng.normal(0, 1, n)
        spec = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, 1 / sample_rate)
        lo = rng.uniform(800, 1500)
        spec[(freqs < lo) | (freqs > lo * 3)] = 0
        y = np.fft.irfft(spec, n)
        y *= 0.6 + 0.4 * np.abs(np.sin(2 * math.pi * rng.uniform(5, 12) * t))
    elif event == "bell":  # inharmonic partials, exponential decay
        f0 = rng.uniform(500, 900)
        for ratio, amp in ((1.0, 1.0), (2.76, 0.5), (5.4, 0.3), (8.9, 0.15)):
            y += amp * np.sin(2 * math.pi * f0 * ratio * t)
        start = rng.integers(0, n // 3)
        env = np.zeros(n)
        env[start:] = _envelope(n - start, 30, sample_rate * 0.3)
        y *= env
    else:
        raise ValueError(f"unknown audio event {event!r}; known: {AUDIO_CLASSES}")
    y = y / (np.abs(y).max() + 1e-8) * rng.uniform(0.5, 0.9)
    y += rng.normal(0, 0.02, n)  # room noise
    return y.astype(np.float32)


# ------------------------------------------------------------------------------------------ datasets
def audio_visual(n_per_class: int = 60, *, frames: int = 8, size: int = 32, seed: int = 0, with_audio: bool = True,
                 audio_seconds: float = 1.0, sample_rate: int = 16000, noise: float = 0.05,
                 nuisance: Nuisance | str = "hard") -> AVClips:
    """``n_per_class`` clips of each of the 10 video classes, shuffled, each with its audio event (spec 2.5).

    ``nuisance``: a :class:`Nuisance` or a preset name (``"hard"``: the original generator, the default here;
    ``"easy"``: the calibrated setting of the video recipes).

    The audio class is drawn from the video class's distribution (VIDEO_CLASS_SPECS), so the relation between the
    two label spaces is many-to-many (``audio_video_relation()``).
    """
    if n_per_class < 1 or frames < 2 or size < 16:
        raise ValueError(f"need n_per_class >= 1, frames >= 2, size >= 16 (got {n_per_class}, {frames}, {size})")
    nz = resolve_nuisance(nuisance)
    rng = np.random.default_rng(seed)
    n = n_per_class * len(VIDEO_CLASS_SPECS)
    labels = np.repeat(np.arange(len(VIDEO_CLASS_SPECS)), n_per_class)
    rng.shuffle(labels)
    video = np.empty((n, frames, 3, size, size), dtype=np.float32)
    audio = np.empty((n, int(audio_seconds * sample_rate)), dtype=np.float32) if with_audio else None
    audio_labels = np.empty(n, dtype=np.int64)
    for i, v in enumerate(labels):
        spec = VIDEO_CLASS_SPECS[v]
        video[i] = _draw_clip(spec, frames, size, rng, noise, nz)
        names, probs = zip(*spec[4].items(), strict=True)
        a_name = names[rng.choice(len(names), p=np.asarray(probs) / sum(probs))]
        audio_labels[i] = AUDIO_CLASSES.index(a_name)
        if audio is not None:
            audio[i] = synth_sound(a_name, rng, seconds=audio_seconds, sample_rate=sample_rate)
    return AVClips(
        video=torch.from_numpy(video), labels=torch.from_numpy(labels.astype(np.int64)), class_names=VIDEO_CLASSES,
        audio=None if audio is None else torch.from_numpy(audio), audio_labels=torch.from_numpy(audio_labels),
        audio_class_names=AUDIO_CLASSES, sample_rate=sample_rate,
        meta={"generator": "polymodal.video.synth.audio_visual", "seed": seed, "frames": frames, "size": size,
              "noise": noise, "nuisance": {"distractor": nz.distractor, "texture": nz.texture,
                                          "object_scale": list(nz.object_scale),
                                          "speed_jitter": list(nz.speed_jitter)}})


def resolve_nuisance(nuisance: Nuisance | str) -> Nuisance:
    """A :class:`Nuisance` from itself or a preset name (``NUISANCE_PRESETS``)."""
    if isinstance(nuisance, Nuisance):
        return nuisance
    if nuisance not in NUISANCE_PRESETS:
        raise ValueError(f"nuisance must be a Nuisance or one of {sorted(NUISANCE_PRESETS)}, got {nuisance!r}")
    return NUISANCE_PRESETS[nuisance]


def moving_shapes(n_per_class: int = 60, *, n_classes: int = 10, frames: int = 8, size: int = 32, seed: int = 0,
                  noise: float = 0.05, nuisance: Nuisance | str = "hard") -> AVClips:
    """Video-only clips (spec 1.5 ``synth.moving_shapes``); ``n_classes`` <= 10 keeps the first classes."""
    if not 2 <= n_classes <= len(VIDEO_CLASS_SPECS):
        raise ValueError(f"n_classes must be in 2..{len(VIDEO_CLASS_SPECS)}, got {n_classes}")
    clips = audio_visual(n_per_class, frames=frames, size=size, seed=seed, with_audio=False, noise=noise,
                         nuisance=nuisance)
    if n_classes < len(VIDEO_CLASS_SPECS):
        keep = torch.nonzero(clips.labels < n_classes).squeeze(1)
        clips = clips.subset(keep)
        clips.class_names = VIDEO_CLASSES[:n_classes]
    return clips


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Index arrays per part (e.g. ``(0.6, 0.2, 0.2)``), each class split in the same proportions, seeded."""
    if abs(sum(fractions) - 1.0) > 1e-6 or any(f <= 0 for f in fractions):
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    rng = np.random.default_rng(seed)
    y = labels.numpy()
    parts: list[list[int]] = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        cuts = np.round(np.cumsum(fractions)[:-1] * idx.size).astype(int)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].extend(chunk.tolist())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]

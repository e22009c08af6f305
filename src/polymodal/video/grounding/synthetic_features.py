"""Seeded synthetic clip and query features on a QVHighlights skeleton (OVG-HQ offline data plan, spec ``video.md`` 3.8).

No video or CLIP weights exist offline, so features are generated with the real shapes (2-s clips, 512-d CLIP-like):

* each query has an **event** latent; with ``text="minilm"`` it is the MiniLM embedding of the real query sentence
  (``polymodal.text.SentenceEncoder``) through a fixed random projection 384 -> dim, so similar sentences give similar
  events; ``text="hash"`` sums fixed random word vectors (no model, for fast tests);
* each **video** is a background of a few scene vectors with a slow AR(1) drift; clips inside a GT window add the
  event (per-clip visibility 0.5-1); other queries' events appear as **distractors** outside the GT windows; every
  clip gets i.i.d. noise and is L2-normalised like CLIP features; all queries on the same ``vid`` share one video;
* **text** tokens (L_t = 8-20) are noisy views of the event plus a per-query offset (a description never matches the
  pixels exactly) and a constant text-modality offset (CLIP's modality gap); **image** = one in-window clip + noise;
  **segment** = the 3 clips of a 6-s sub-span inside a GT window (``segment_query`` when the row has it) + noise.

Everything is seeded: the same rows, seed and settings give identical arrays. The event map (projection, word
vectors) does not depend on ``seed``: it is a fixed "world", and the seed draws videos and noise.
:func:`nearest_clip_baseline` measures how hard the result is (a model-free cosine localiser vs chance).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

from polymodal.core.errors import ConfigError
from polymodal.video.grounding.annotations import (
    CLIP_SECONDS,
    SEGMENT_CLIPS,
    GroundingDataset,
    GroundingSample,
    n_clips_for,
    window_clip_ids,
)

TEXT_ENCODERS = ("minilm", "hash")
_WORLD_SEED = 0x0DA7A  # fixed: the text -> event map is the same for every seed
_STOPWORDS = frozenset("a an the is are was were of in on at to and with while his her their its by for from".split())


def _unit(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def _gauss(rng: np.random.Generator, shape, dim: int) -> np.ndarray:
    """Random vectors with expected norm ~1 (N(0, 1/dim) entries)."""
    return rng.standard_normal(shape) / math.sqrt(dim)


def _stable_int(*parts: object) -> int:
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


def hash_events(texts: Sequence[str], dim: int) -> np.ndarray:
    """Model-free event latents: unit sum of fixed random word vectors (content words only)."""
    cache: dict[str, np.ndarray] = {}
    out = np.empty((len(texts), dim))
    for i, t in enumerate(texts):
        words = [w for w in re.findall(r"[a-z0-9']+", t.lower()) if w not in _STOPWORDS] or [t.lower()]
        acc = np.zeros(dim)
        for w in words:
            if w not in cache:
                cache[w] = np.random.default_rng(_stable_int(_WORLD_SEED, dim, w)).standard_normal(dim)
            acc += cache[w]
        out[i] = acc
    return _unit(out)


def minilm_events(texts: Sequence[str], dim: int, encoder=None) -> np.ndarray:
    """Event latents from MiniLM sentence embeddings projected 384 -> ``dim`` by a fixed Gaussian matrix."""
    if encoder is None:
        from polymodal.text import SentenceEncoder

        encoder = SentenceEncoder()
    emb = np.asarray(encoder.encode(list(texts)), dtype=np.float64)
    proj = np.random.default_rng(_stable_int(_WORLD_SEED, "minilm-proj", emb.shape[1], dim)).standard_normal(
        (emb.shape[1], dim))
    return _unit(emb @ proj)


def choose_segment_window(row: dict, n_clips: int, rng: np.random.Generator,
                          clip_seconds: float = CLIP_SECONDS) -> tuple[float, float]:
    """The 6-s sub-span a segment query shows: the row's ``segment_query`` when present; else a clip-aligned 6-s
    span drawn uniformly inside a random GT window of >= 6 s; else (all windows shorter) the longest GT window."""
    if "segment_query" in row:
        s, e = row["segment_query"]
        return float(s), float(e)
    span = SEGMENT_CLIPS * clip_seconds
    wins = [(float(s), float(e)) for s, e in row["relevant_windows"]]
    long_enough = [w for w in wins if w[1] - w[0] >= span - 1e-9]
    if not long_enough:
        return max(wins, key=lambda w: w[1] - w[0])
    s, e = long_enough[int(rng.integers(len(long_enough)))]
    first, last = math.ceil(s / clip_seconds - 1e-9), math.floor((e - span) / clip_seconds + 1e-9)
    if last < first:  # window >= 6 s but not clip-aligned
        return s, s + span
    start = int(rng.integers(first, last + 1)) * clip_seconds
    return start, start + span


def _segment_clip_ids(window: tuple[float, float], n_clips: int, clip_seconds: float) -> np.ndarray:
    ids = window_clip_ids(window, n_clips, clip_seconds)
    if len(ids) != SEGMENT_CLIPS:  # 2-4 s windows repeat clips, longer spans are resampled
        ids = ids[np.round(np.linspace(0, len(ids) - 1, SEGMENT_CLIPS)).astype(int)]
    return ids


def synthesize_features(
    rows: Sequence[dict],
    *,
    dim: int = 512,
    seed: int = 0,
    text: str = "minilm",
    clip_seconds: float = CLIP_SECONDS,
    latent_dim: int | None = None,
    ambient_noise: float = 0.3,
    ambient_rank: int | None = None,
    event_strength: float = 0.7,
    clip_noise: float = 0.8,
    drift: float = 0.8,
    scene_count: float = 4.0,
    distractors: float = 1.5,
    text_noise: float = 1.2,
    text_gap: float = 0.7,
    modality_gap: float = 0.5,
    image_noise: float = 3.5,
    segment_noise: float = 4.0,
    encoder=None,
) -> GroundingDataset:
    """Synthetic 2-s clip features and text/image/segment queries for QVHighlights-shaped ``rows`` (spec 3.8).

    The content lives in a ``latent_dim``-dimensional (default min(32, dim / 2)) subspace of the ``dim``-d feature space (real CLIP features are
    strongly anisotropic; in 512 isotropic dimensions random vectors would be too easy to tell apart), embedded by a
    fixed random orthonormal map, plus ``ambient_noise`` spread over ``ambient_rank`` (default min(64, dim - latent_dim)) further directions (full-rank
    noise in all ``dim`` directions would cost a 512-wide normal draw per clip for no difference in difficulty). Other noise settings are norms
    relative to a unit event vector in the latent space. ``scene_count`` = mean scenes per video, ``distractors`` =
    mean number (Poisson) of other queries' events inserted outside the GT windows of a video. ``encoder``: a ready
    ``SentenceEncoder`` (text="minilm" only). Returns a :class:`GroundingDataset`.
    """
    if text not in TEXT_ENCODERS:
        raise ConfigError(f"field 'text': {text!r} is not one of {TEXT_ENCODERS}")
    if dim < 4:
        raise ConfigError(f"field 'dim': must be >= 4, got {dim}")
    latent_dim = min(32, dim // 2) if latent_dim is None else latent_dim
    if not 2 <= latent_dim <= dim:
        raise ConfigError(f"field 'latent_dim': must be in [2, dim={dim}], got {latent_dim}")
    ambient_rank = min(64, dim - latent_dim) if ambient_rank is None else ambient_rank
    if not 0 <= ambient_rank <= dim - latent_dim:
        raise ConfigError(f"field 'ambient_rank': must be in [0, dim - latent_dim = {dim - latent_dim}], got {ambient_rank}")
    for name, v in dict(ambient_noise=ambient_noise, event_strength=event_strength, clip_noise=clip_noise,
                        drift=drift, distractors=distractors, text_noise=text_noise, text_gap=text_gap,
                        modality_gap=modality_gap, image_noise=image_noise, segment_noise=segment_noise).items():
        if not (math.isfinite(v) and v >= 0):
            raise ConfigError(f"field {name!r}: must be a finite number >= 0, got {v}")
    if scene_count < 1:
        raise ConfigError(f"field 'scene_count': must be >= 1, got {scene_count}")
    rows = list(rows)
    if not rows:
        raise ConfigError("synthesize_features: no rows")
    k = latent_dim
    texts = [r["query"] for r in rows]
    events = minilm_events(texts, k, encoder) if text == "minilm" else hash_events(texts, k)
    world = np.random.default_rng(_stable_int(_WORLD_SEED, "embedding", k, dim))
    # orthonormal rows: k for the content, ambient_rank for the ambient noise
    basis = np.linalg.qr(world.standard_normal((dim, k + ambient_rank)))[0].T.astype(np.float32)
    text_offset = _unit(world.standard_normal(k)) * modality_gap

    # latent arrays are collected and embedded in one matmul at the end (many tiny BLAS calls are slow)
    pending: list[np.ndarray] = []

    def defer(x: np.ndarray) -> int:
        pending.append(x)
        return len(pending) - 1

    # one video per vid, holding the events of every query on it (latent space)
    by_vid: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_vid.setdefault(r["vid"], []).append(i)
    raw_videos: dict[str, np.ndarray] = {}
    videos: dict[str, np.ndarray] = {}
    rho = 0.9
    for vid, members in by_vid.items():
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), _stable_int("video", vid) & 0xFFFFFFFF]))
        n = n_clips_for(max(float(rows[i]["duration"]) for i in members), clip_seconds)
        n_scenes = int(min(n, 1 + rng.poisson(scene_count - 1)))
        cuts = np.sort(rng.choice(np.arange(1, n), size=n_scenes - 1, replace=False)) if n_scenes > 1 else []
        scene_of_clip = np.searchsorted(np.asarray(cuts), np.arange(n), side="right")
        scenes = _unit(_gauss(rng, (n_scenes, k), k))
        steps = _gauss(rng, (n, k), k)
        steps[1:] *= math.sqrt(1 - rho**2)
        walk = lfilter([1.0], [1.0, -rho], steps, axis=0)  # AR(1) drift, stationary norm ~1, scaled by `drift`
        video = scenes[scene_of_clip] + drift * walk
        in_gt = np.zeros(n, dtype=bool)
        for i in members:
            for w in rows[i]["relevant_windows"]:
                ids = window_clip_ids(w, n, clip_seconds)
                video[ids] += event_strength * rng.uniform(0.5, 1.0, (len(ids), 1)) * events[i]
                in_gt[ids] = True
        n_distract = int(rng.poisson(distractors)) if len(rows) > 1 else 0
        for _ in range(n_distract):
            free = np.flatnonzero(~in_gt)
            other = int(rng.integers(len(rows)))
            if free.size == 0 or rows[other]["vid"] == vid:
                continue
            start = int(rng.choice(free))
            ids = np.arange(start, min(n, start + int(rng.integers(2, 9))))
            ids = ids[~in_gt[ids]]
            video[ids] += event_strength * rng.uniform(0.5, 1.0, (len(ids), 1)) * events[other]
        raw_videos[vid] = video.copy()  # content without the clip noise: image/segment queries are views of it
        video += clip_noise * _gauss(rng, (n, k), k)
        videos[vid] = defer(video)

    samples = []
    for i, r in enumerate(rows):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(r["qid"]) & 0xFFFFFFFF, i, 0x9E3]))
        raw = raw_videos[r["vid"]]
        n_own = n_clips_for(r["duration"], clip_seconds)
        n_tok = int(np.clip(len(r["query"].split()) + 2, 8, 20))
        gap = text_gap * _unit(rng.standard_normal(k))
        tokens = (rng.uniform(0.5, 1.0, (n_tok, 1)) * (events[i] + gap) + text_offset
                  + text_noise * _gauss(rng, (n_tok, k), k))
        gt_ids = np.unique(np.concatenate([window_clip_ids(w, n_own, clip_seconds) for w in r["relevant_windows"]]))
        image = raw[int(rng.choice(gt_ids))][None] + image_noise * _gauss(rng, (1, k), k)
        seg_win = choose_segment_window(r, n_own, rng, clip_seconds)
        seg_ids = _segment_clip_ids(seg_win, n_own, clip_seconds)
        seg = raw[seg_ids] + segment_noise * _gauss(rng, (SEGMENT_CLIPS, k), k)
        samples.append(GroundingSample(
            qid=int(r["qid"]), vid=r["vid"], duration=float(r["duration"]), query_text=r["query"],
            video=(videos[r["vid"]], n_own),
            windows=np.asarray(r["relevant_windows"], dtype=np.float64).reshape(-1, 2),
            queries={"text": defer(tokens), "image": defer(image), "segment": defer(seg)},
            segment_window=(float(seg_win[0]), float(seg_win[1])), row=r,
        ))
    sizes = np.cumsum([0] + [len(x) for x in pending])
    latent = np.concatenate(pending).astype(np.float32)
    noise_rng = np.random.default_rng(np.random.SeedSequence(
        [int(seed), 0xA4B1E47, _stable_int("ambient", len(rows), rows[0]["vid"]) & 0xFFFFFFFF]))
    ambient = noise_rng.standard_normal((len(latent), ambient_rank), dtype=np.float32)
    ambient *= np.float32(ambient_noise / math.sqrt(max(1, ambient_rank)))
    flat = np.concatenate([latent, ambient], axis=1) @ basis  # one matmul for everything
    flat /= np.maximum(np.sqrt(np.einsum("ij,ij->i", flat, flat)), 1e-12)[:, None]
    arrays = [flat[sizes[j]: sizes[j + 1]] for j in range(len(pending))]
    for smp in samples:
        ref, n_own = smp.video
        smp.video = arrays[ref][:n_own]
        smp.queries = {m: arrays[j] for m, j in smp.queries.items()}
    info = dict(source="synthetic", text=text, seed=seed, dim=dim, latent_dim=latent_dim, ambient_noise=ambient_noise,
                ambient_rank=ambient_rank,
                event_strength=event_strength, clip_noise=clip_noise, drift=drift, scene_count=scene_count,
                distractors=distractors, text_noise=text_noise, text_gap=text_gap, modality_gap=modality_gap,
                image_noise=image_noise, segment_noise=segment_noise)
    return GroundingDataset(samples, dim=dim, clip_seconds=clip_seconds, info=info)


# ------------------------------------------------------------------------------------- difficulty check


def _iou(a: tuple[float, float], b: np.ndarray) -> np.ndarray:
    inter = np.clip(np.minimum(a[1], b[:, 1]) - np.maximum(a[0], b[:, 0]), 0, None)
    union = np.maximum(a[1], b[:, 1]) - np.minimum(a[0], b[:, 0])
    return inter / np.maximum(union, 1e-9)


def pooled_query(sample: GroundingSample, modality: str) -> np.ndarray:
    """Mean of the query's unit features (hybrid = mean of the pooled segment and text vectors)."""
    if modality == "hybrid":
        return _unit(_unit(sample.queries["segment"].mean(0)) + _unit(sample.queries["text"].mean(0)))
    if modality not in sample.queries:
        raise ConfigError(f"modality {modality!r}: the sample has {sorted(sample.queries)}")
    return _unit(sample.queries[modality].mean(0))


def nearest_clip_baseline(ds: GroundingDataset, modality: str = "text", *, iou: float = 0.5,
                          seed: int = 0) -> dict[str, float]:
    """A model-free localiser, to check that the synthetic task is learnable but not trivial.

    Cosine of the pooled query with every clip; ``clip_hit1`` = the best clip lies in a GT window; the predicted
    window grows from the best clip while similarity >= (max + median) / 2, and ``r1`` = its IoU with the best GT
    window >= ``iou``. Chance: a uniformly random clip (``chance_clip_hit1``, exact) and a random window with a GT
    length drawn from the data placed uniformly (``chance_r1``, Monte Carlo with ``seed``). All in percent.
    """
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([s.windows[:, 1] - s.windows[:, 0] for s in ds.samples])
    hit = r1 = chance_hit = chance_r1 = 0.0
    cs = ds.clip_seconds
    for s in ds.samples:
        sims = s.video @ pooled_query(s, modality)
        n = len(sims)
        gt_clips = np.zeros(n, dtype=bool)
        for w in s.windows:
            gt_clips[window_clip_ids(w, n, cs)] = True
        best = int(np.argmax(sims))
        hit += gt_clips[best]
        chance_hit += gt_clips.mean()
        tau = (sims[best] + np.median(sims)) / 2
        lo = hi = best
        while lo > 0 and sims[lo - 1] >= tau:
            lo -= 1
        while hi < n - 1 and sims[hi + 1] >= tau:
            hi += 1
        pred = (lo * cs, min(s.duration, (hi + 1) * cs))
        r1 += _iou(pred, s.windows).max() >= iou
        for _ in range(8):
            length = min(float(rng.choice(lengths)), s.duration)
            start = rng.uniform(0, s.duration - length)
            chance_r1 += (_iou((start, start + length), s.windows).max() >= iou) / 8
    k = 100.0 / max(1, len(ds))
    return {"clip_hit1": hit * k, "chance_clip_hit1": chance_hit * k, "r1": r1 * k, "chance_r1": chance_r1 * k}

"""Online anchors of OVG-HQ (spec ``video.md`` section 3.2): encoding, decoding and labelling.

All quantities are in **clip units** (one clip = 2 s) unless a function says otherwise. At the decision after clip
index ``t_index`` (0-based) the stream time is ``t = t_index + 1`` (the end of the current clip) [reconstruction of
the index convention]; the anchors end at ``t`` with lengths ``L`` in ``ANCHOR_LENGTHS`` = 1, 2, 4, 8 clips.

- Regression target: ``offset = (e* - t) / L``, ``log_len = log(max(1, e* - s*) / L)``.
- Decoding: ``e = t + L * offset``, ``s = e - L * exp(log_len)``, both clipped to ``[0, duration]``.
- Labels: an anchor is positive if its IoU with a GT window is >= 0.5, or (largest anchor) it lies inside a longer
  GT, or (smallest anchor) a shorter GT lies inside it. "Strictly inside" is read as containment with a strictly
  longer (shorter) GT [reconstruction], so the largest anchor stays positive at the very clip where a long event ends.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ANCHOR_LENGTHS: tuple[int, ...] = (1, 2, 4, 8)
#: clamp of the decoded log-length before ``exp`` (a span of e^6 = 403 anchor lengths is already past any video)
MAX_LOG_LEN = 6.0


def anchor_spans(t: float, lengths: Sequence[float] = ANCHOR_LENGTHS) -> np.ndarray:
    """The anchors ``[t - L, t]`` (clip units), shape (A, 2)."""
    return np.array([[t - L, t] for L in lengths], dtype=np.float64)


def iou_1d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise temporal IoU of spans ``a`` (n, 2) and ``b`` (m, 2) -> (n, m); the hull denominator is clamped at 1
    clip (spec 3.2; for overlapping spans the hull is the union)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    hull = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return inter / np.maximum(hull, 1.0)


def encode(gt: Sequence[float], t: float, length: float) -> tuple[float, float]:
    """Regression target of GT span ``gt = (s*, e*)`` for the anchor of ``length`` ending at ``t``."""
    s, e = float(gt[0]), float(gt[1])
    return (e - t) / length, math.log(max(1.0, e - s) / length)


def decode(offset: float, log_len: float, t: float, length: float, duration: float | None = None
           ) -> tuple[float, float]:
    """Span ``(s, e)`` from a prediction ``(offset, log_len)`` of the anchor of ``length`` ending at ``t``, clipped
    to ``[0, duration]`` (no upper clip when ``duration`` is None)."""
    e = t + length * float(offset)
    s = e - length * math.exp(min(float(log_len), MAX_LOG_LEN))
    hi = math.inf if duration is None else float(duration)
    s, e = min(max(s, 0.0), hi), min(max(e, 0.0), hi)
    return s, e


def label_anchors(t: float, gts: np.ndarray | Sequence[Sequence[float]], lengths: Sequence[float] = ANCHOR_LENGTHS,
                  iou_threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of the anchors ending at ``t`` against GT spans ``gts`` (W, 2), clip units.

    Returns ``(positive (A,) bool, targets (A, 2) float32, matched GT index (A,) int, -1 when negative)``. A positive
    anchor regresses to its matched GT: the one with the largest IoU, or for the containment rules the containing
    (contained) GT with the largest IoU among those."""
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 2)
    A = len(lengths)
    positive = np.zeros(A, dtype=bool)
    targets = np.zeros((A, 2), dtype=np.float32)
    matched = np.full(A, -1, dtype=np.int64)
    if len(gts) == 0:
        return positive, targets, matched
    anchors = anchor_spans(t, lengths)
    iou = iou_1d(anchors, gts)  # (A, W)
    gt_len = gts[:, 1] - gts[:, 0]
    largest, smallest = int(np.argmax(lengths)), int(np.argmin(lengths))
    for a in range(A):
        ok = iou[a] >= iou_threshold
        a_s, a_e = anchors[a]
        a_len = a_e - a_s
        if a == largest:
            ok |= (gts[:, 0] <= a_s) & (a_e <= gts[:, 1]) & (gt_len > a_len)
        if a == smallest:
            ok |= (a_s <= gts[:, 0]) & (gts[:, 1] <= a_e) & (gt_len < a_len)
        if ok.any():
            cand = np.flatnonzero(ok)
            j = int(cand[np.argmax(iou[a, cand])])
            positive[a] = True
            matched[a] = j
            targets[a] = encode(gts[j], t, lengths[a])
    return positive, targets, matched


def label_video(n_clips: int, gts_clips: np.ndarray, lengths: Sequence[float] = ANCHOR_LENGTHS
                ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and targets for every decision of a video: ``(positive (N, A) bool, targets (N, A, 2) float32)``."""
    pos = np.zeros((n_clips, len(lengths)), dtype=bool)
    tgt = np.zeros((n_clips, len(lengths), 2), dtype=np.float32)
    for t_index in range(n_clips):
        pos[t_index], tgt[t_index], _ = label_anchors(t_index + 1, gts_clips, lengths)
    return pos, tgt

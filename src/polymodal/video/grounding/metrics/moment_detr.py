"""Offline Moment-DETR metrics for QVHighlights: moment retrieval (R1, mAP, by length bucket) and highlight detection.

Reimplements the standalone evaluation of Moment-DETR (Lei et al., NeurIPS 2021; public repository
``jayleicn/moment_detr``, ``standalone_eval/eval.py``) from its documented behaviour, spec ``video.md`` section 3.6.
It reproduces ``sample_val_preds_metrics_raw.json`` to the printed precision (tests check every number).

Facts that decide the numbers:

- **R1@m**: the *first* listed prediction of a query (the official code takes ``pred_relevant_windows[0]``, not the
  top-scored one); the GT window with the largest IoU to it; a hit when IoU >= m. Mean x 100, 2 decimals.
- **mAP**: at most ``max_pred_windows`` = 10 predictions per query, sorted by score (stable); greedy matching
  per IoU threshold: each prediction takes the highest-IoU GT window not yet matched if its IoU >= m, else it is a
  false positive; VOC-interpolated AP per query; mean over the queries that have predictions, then mean over the
  10 thresholds 0.5:0.05:0.95 ("average"). x 100, 2 decimals.
- **Length buckets** by GT window length: short (0, 10], middle (10, 30], long (30, 150] s: keep only GT windows in
  the range and only queries that still have one; "full" applies no filter.
- **Highlights**: a (floor(duration / 2) clips x 3 annotators) score matrix, binarised at 2 (Fair), 3 (Good),
  4 (VeryGood); HL-Hit1 = the top-saliency clip is positive for any annotator; HL-mAP = mean over queries and
  annotators of the AP of the predicted saliency (truncated / zero-padded to the clip count) with the official
  all-equal-labels rule (0 when all negative, 1 when all positive).

Everything runs in one process (the official code spawns 8 workers); the per-query work is small NumPy code.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from polymodal.core.errors import DataFormatError

#: IoU thresholds 0.5:0.05:0.95, rounded to 2 decimals exactly like the official code (so 0.7 is 0.7, not 0.70000001).
IOU_THRESHOLDS: tuple[float, ...] = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))

#: Length buckets (name, (low, high]) in seconds; "full" applies no filter.
LENGTH_RANGES: tuple[tuple[str, tuple[float, float]], ...] = (
    ("short", (0.0, 10.0)), ("middle", (10.0, 30.0)), ("long", (30.0, 150.0)), ("full", (0.0, 150.0)),
)

#: Highlight label thresholds: a clip is positive for an annotator when its score >= the value.
SALIENCY_LEVELS: tuple[tuple[str, int], ...] = (("Fair", 2), ("Good", 3), ("VeryGood", 4))

CLIP_SECONDS = 2.0


def _fmt(value: float) -> float:
    """The official formatting: ``float(f"{100 * v:.2f}")``."""
    return float(f"{100 * value:.2f}")


# --------------------------------------------------------------------------------------------- temporal IoU
def temporal_iou(spans_a: np.ndarray, spans_b: np.ndarray) -> np.ndarray:
    """IoU of every span in ``spans_a`` (N, 2) with every span in ``spans_b`` (M, 2) -> (N, M).

    Union = |a| + |b| - intersection (the official ``compute_temporal_iou_batch_cross``); a zero union gives IoU 0.
    """
    a = np.asarray(spans_a, dtype=float).reshape(-1, 2)
    b = np.asarray(spans_b, dtype=float).reshape(-1, 2)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    right = np.minimum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(right - left, 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union != 0)


def temporal_iou_paired(spans_a: np.ndarray, spans_b: np.ndarray) -> np.ndarray:
    """IoU of ``spans_a[i]`` with ``spans_b[i]`` (N, 2) each -> (N,).

    As in the official ``compute_temporal_iou_batch_paired`` the denominator is the hull (max end - min start), which
    equals the union whenever the spans overlap, so the value is the ordinary IoU; a zero hull gives 0.
    """
    a = np.asarray(spans_a, dtype=float).reshape(-1, 2)
    b = np.asarray(spans_b, dtype=float).reshape(-1, 2)
    inter = np.maximum(0.0, np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]))
    hull = np.maximum(a[:, 1], b[:, 1]) - np.minimum(a[:, 0], b[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


# --------------------------------------------------------------------------------------------- AP machinery
def interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC / ActivityNet interpolated AP of one precision-recall sequence (in prediction order).

    Pads precision with 0 at both ends and recall with 0 and 1, makes precision monotone from the right, and sums
    ``(r_i - r_{i-1}) * p_i`` over the indices where recall changes.
    """
    mprec = np.concatenate([[0.0], np.asarray(precision, dtype=float), [0.0]])
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=float), [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def interpolated_ap_rows(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """:func:`interpolated_ap` over the last axis of (..., P) arrays at once.

    The terms where recall does not change are zeroed and the rest summed sequentially, so each row's value is
    bit-identical to :func:`interpolated_ap` of that row (for up to 7 recall changes; beyond, equal to rounding).
    """
    precision = np.asarray(precision, dtype=float)
    shape = precision.shape[:-1]
    zeros, ones = np.zeros(shape + (1,)), np.ones(shape + (1,))
    mprec = np.concatenate([zeros, precision, zeros], axis=-1)
    mrec = np.concatenate([zeros, np.broadcast_to(np.asarray(recall, dtype=float), precision.shape), ones], axis=-1)
    mprec = np.flip(np.maximum.accumulate(np.flip(mprec, -1), axis=-1), -1)
    step = mrec[..., 1:] - mrec[..., :-1]
    terms = np.where(mrec[..., 1:] != mrec[..., :-1], step * mprec[..., 1:], 0.0)
    return np.cumsum(terms, axis=-1)[..., -1]


def greedy_match(iou: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Greedy ActivityNet matching of score-sorted predictions to GT windows, for every threshold at once.

    ``iou``: (P, G), rows in descending score order. Returns ``matched`` (T, P) int: the index of the GT window each
    prediction matched at each threshold, or -1 for a false positive. Each prediction walks the GT windows in
    descending IoU (the official ``argsort()[::-1]`` order, ties included) and takes the first one that is not yet
    matched at that threshold, provided its IoU >= the threshold.
    """
    thr = np.asarray(thresholds, dtype=float)
    n_pred, n_gt = iou.shape
    matched = np.full((len(thr), n_pred), -1, dtype=int)
    if n_gt == 0:
        return matched
    locked = np.zeros((len(thr), n_gt), dtype=bool)
    for p in range(n_pred):
        row = iou[p]
        done = np.zeros(len(thr), dtype=bool)
        for g in row.argsort()[::-1]:
            take = ~done & (row[g] >= thr) & ~locked[:, g]
            matched[take, p] = g
            locked[take, g] = True
            done |= take | (row[g] < thr)  # below the threshold: every later GT is lower, so a false positive
            if done.all():
                break
    return matched


def average_precision_detection(gt_windows: np.ndarray, pred_windows: np.ndarray, scores: np.ndarray,
                                thresholds: Sequence[float] = IOU_THRESHOLDS) -> np.ndarray:
    """AP of one query's predictions at each IoU threshold (binary true positives) -> (T,).

    ``pred_windows`` (P, 2) with ``scores`` (P,) in any order (sorted here, stable, by descending score);
    ``gt_windows`` (G, 2). No predictions -> zeros. No GT window -> NaN (recall is undefined, as officially).
    """
    thr = np.asarray(thresholds, dtype=float)
    if len(pred_windows) == 0:
        return np.zeros(len(thr))
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    preds = np.asarray(pred_windows, dtype=float).reshape(-1, 2)[order]
    gts = np.asarray(gt_windows, dtype=float).reshape(-1, 2)
    matched = greedy_match(temporal_iou(preds, gts), thr)
    tp = np.cumsum(matched >= 0, axis=1).astype(float)
    fp = np.cumsum(matched < 0, axis=1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / float(len(gts))
    precision = tp / (tp + fp)
    return interpolated_ap_rows(precision, recall)


def binary_ap(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Highlight AP of one (query, annotator): the official ``get_ap`` with interpolation, without sklearn.

    All labels equal -> 0 (all negative) or 1 (all positive). Otherwise the precision-recall curve at every distinct
    score (ties form one point, like sklearn's ``precision_recall_curve``), ordered from full recall to none,
    precision made a running max along that order, and AP = the mean precision at the points where the (float32)
    recall changes.
    """
    return float(binary_ap_columns(np.asarray(y_true, dtype=float)[:, None], y_score)[0])


def binary_ap_columns(labels: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """:func:`binary_ap` of each column of ``labels`` (n, K) against the same scores (n,) -> (K,), one sort."""
    y = np.asarray(labels, dtype=float)
    s = np.asarray(y_score, dtype=float)
    order = np.argsort(s, kind="mergesort")[::-1]
    s_sorted = s[order]
    last_of_tie = np.append(np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1)
    tps = np.cumsum(y[order], axis=0)[last_of_tie]  # (points, K)
    fps = (1 + last_of_tie)[:, None] - tps
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.concatenate([(tps / (tps + fps))[::-1], np.ones((1, y.shape[1]))])
        recall = np.concatenate([(tps / tps[-1])[::-1], np.zeros((1, y.shape[1]))]).astype(np.float32)
    precision = np.maximum.accumulate(precision, axis=0)
    out = np.empty(y.shape[1])
    for k in range(y.shape[1]):
        col = y[:, k]
        if col.min() == col.max():
            out[k] = 0.0 if col[0] == 0 else 1.0
        else:
            out[k] = np.mean(precision[np.flatnonzero(recall[1:, k] != recall[:-1, k]), k])
    return out


# --------------------------------------------------------------------------------------------- moment retrieval
def window_length(window: Sequence[float]) -> float:
    return float(window[1]) - float(window[0])


def filter_by_length(preds: list[dict], gts: list[dict], low: float, high: float) -> tuple[list[dict], list[dict]]:
    """The official length bucket (low, high]: GT rows keep only windows in range; rows and predictions without one go.

    (0, 150] is "full": everything is kept unchanged.
    """
    if low == 0 and high == 150:
        return preds, gts
    kept_gts, kept = [], set()
    for d in gts:
        windows = [w for w in d["relevant_windows"] if low < window_length(w) <= high]
        if windows:
            d = dict(d)
            d["relevant_windows"] = windows
            kept_gts.append(d)
            kept.add(d["qid"])
    return [p for p in preds if p["qid"] in kept], kept_gts


def compute_mr_ap(preds: list[dict], gts: list[dict], thresholds: Sequence[float] = IOU_THRESHOLDS,
                  max_pred_windows: int | None = 10) -> dict[str, float | None]:
    """mAP by IoU threshold (+ "average"), x 100 and rounded, over the queries that have predictions.

    No predictions at all (an empty length bucket) gives None values; the official code fails there.
    """
    gt_by_qid: dict[Any, list] = defaultdict(list)
    for d in gts:
        gt_by_qid[d["qid"]].extend(d["relevant_windows"])
    # a query whose list is empty counts with AP 0 (the official code would silently drop it from the mean)
    pred_by_qid: dict[Any, list] = {}
    for d in preds:
        windows = d["pred_relevant_windows"]
        pred_by_qid.setdefault(d["qid"], []).extend(
            windows[:max_pred_windows] if max_pred_windows is not None else windows)
    aps = []
    for qid, windows in pred_by_qid.items():
        w = np.asarray(windows, dtype=float).reshape(len(windows), -1) if windows else np.zeros((0, 3))
        aps.append(average_precision_detection(np.asarray(gt_by_qid[qid], dtype=float).reshape(-1, 2),
                                               w[:, :2], w[:, 2], thresholds))
    if not aps:  # an empty length bucket: no value (JSON null) rather than a misleading 0
        return {**{str(t): None for t in thresholds}, "average": None}
    ap_thds = np.mean(np.asarray(aps), axis=0)
    out = {str(t): _fmt(v) for t, v in zip(thresholds, ap_thds, strict=True)}
    out["average"] = _fmt(float(np.mean(ap_thds)))
    return out


def top1_windows(preds: list[dict], gts: list[dict]) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """(qids, first predicted window (N, 2), the GT window with max IoU to it (N, 2)) over the predictions' qids."""
    # an empty list (allowed for online streams that emit nothing) becomes a zero-length window: IoU 0, a miss
    first = {d["qid"]: (d["pred_relevant_windows"][0][:2] if d["pred_relevant_windows"] else [0.0, 0.0])
             for d in preds}
    gt_windows = {}
    for d in gts:
        windows = d["relevant_windows"]
        best = 0
        if len(windows) > 0 and d["qid"] in first:
            best = int(np.argmax(temporal_iou(np.asarray([first[d["qid"]]]), np.asarray(windows))[0]))
        gt_windows[d["qid"]] = windows[best]
    qids = list(first)
    return (qids, np.asarray([first[q] for q in qids], dtype=float).reshape(-1, 2),
            np.asarray([gt_windows[q] for q in qids], dtype=float).reshape(-1, 2))


def compute_mr_r1(preds: list[dict], gts: list[dict],
                  thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float | None]:
    """R1 by IoU threshold, x 100 and rounded: the first listed prediction against its best-matching GT window.

    A query with an empty prediction list counts as a miss; no queries at all gives None values.
    """
    if not preds:  # an empty length bucket
        return {str(t): None for t in thresholds}
    _, pred_w, gt_w = top1_windows(preds, gts)
    iou = temporal_iou_paired(pred_w, gt_w)
    return {str(t): float(f"{np.mean(iou >= t) * 100:.2f}") for t in thresholds}


def eval_moment_retrieval(preds: list[dict], gts: list[dict],
                          ranges: Iterable[tuple[str, tuple[float, float]]] = LENGTH_RANGES) -> dict[str, dict]:
    """{bucket: {"MR-mAP": {...}, "MR-R1": {...}}} for the short / middle / long / full buckets."""
    out = {}
    for name, (low, high) in ranges:
        p, g = filter_by_length(preds, gts, low, high)
        out[name] = {"MR-mAP": compute_mr_ap(p, g), "MR-R1": compute_mr_r1(p, g)}
    return out


# --------------------------------------------------------------------------------------------- highlights
def gt_saliency_matrix(gt: dict, clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
    """(floor(duration / 2) clips, 3 annotators) scores, zero outside ``relevant_clip_ids``."""
    n_clips = int(gt["duration"] / clip_seconds)
    scores = np.zeros((n_clips, 3))
    ids = np.asarray(gt["relevant_clip_ids"], dtype=int)
    if ids.size:
        scores[ids] = np.asarray(gt["saliency_scores"], dtype=float).reshape(len(ids), 3)
    return scores


def _fit_length(pred: np.ndarray, n: int) -> np.ndarray:
    if len(pred) >= n:
        return pred[:n]
    out = np.zeros(n)
    out[: len(pred)] = pred
    return out


def eval_highlight(preds: list[dict], gts: list[dict]) -> dict[str, dict[str, float]]:
    """{"HL-min-Fair": {"HL-mAP", "HL-Hit1"}, "HL-min-Good": ..., "HL-min-VeryGood": ...}."""
    gt_by_qid = {d["qid"]: d for d in gts}
    n_levels = len(SALIENCY_LEVELS)
    levels = np.repeat([lv for _, lv in SALIENCY_LEVELS], 3)  # columns: level-major, 3 annotators each
    unique = list({d["qid"]: d for d in preds}.values())  # one row per qid, the last one (as officially)
    hits = np.zeros((len(unique), n_levels, 3))
    aps = np.zeros((len(unique), n_levels, 3))
    for i, d in enumerate(unique):
        saliency = np.asarray(d["pred_saliency_scores"], dtype=float)
        scores = gt_saliency_matrix(gt_by_qid[d["qid"]])
        labels = (np.tile(scores, n_levels) >= levels).astype(float)  # (clips, levels * 3)
        top = int(np.argmax(saliency))
        if top < len(labels):
            hits[i] = labels[top].reshape(n_levels, 3)
        aps[i] = binary_ap_columns(labels, _fit_length(saliency, len(labels))).reshape(n_levels, 3)
    return {f"HL-min-{name}": {"HL-mAP": _fmt(float(np.mean(aps[:, k]))),
                               "HL-Hit1": _fmt(float(np.mean(hits[:, k].max(1))))}
            for k, (name, _) in enumerate(SALIENCY_LEVELS)}


# --------------------------------------------------------------------------------------------- submission
MR_BRIEF_KEYS: dict[str, tuple[str, str, str]] = {
    "MR-full-mAP": ("full", "MR-mAP", "average"),
    "MR-full-mAP@0.5": ("full", "MR-mAP", "0.5"),
    "MR-full-mAP@0.75": ("full", "MR-mAP", "0.75"),
    "MR-short-mAP": ("short", "MR-mAP", "average"),
    "MR-middle-mAP": ("middle", "MR-mAP", "average"),
    "MR-long-mAP": ("long", "MR-mAP", "average"),
    "MR-full-R1@0.5": ("full", "MR-R1", "0.5"),
    "MR-full-R1@0.7": ("full", "MR-R1", "0.7"),
}


def match_qids(preds: list[dict], gts: list[dict], match_number: bool = True,
               pred_name: str = "predictions", gt_name: str = "ground truth") -> tuple[list[dict], list[dict]]:
    """Same query ids on both sides (``match_number``), or keep only the shared ones."""
    pred_qids = {d["qid"] for d in preds}
    gt_qids = {d["qid"] for d in gts}
    if match_number:
        if pred_qids != gt_qids:
            missing, extra = sorted(gt_qids - pred_qids, key=str), sorted(pred_qids - gt_qids, key=str)
            raise DataFormatError(
                pred_name, f"query ids differ from {gt_name}: {len(missing)} without a prediction "
                f"(e.g. {missing[:5]}), {len(extra)} unknown (e.g. {extra[:5]})",
                expected="one prediction per ground-truth qid (or match_number=False to keep the shared ones)")
        return preds, gts
    shared = pred_qids & gt_qids
    return [d for d in preds if d["qid"] in shared], [d for d in gts if d["qid"] in shared]


def eval_submission(preds: list[dict], gts: list[dict], verbose: bool = False,
                    match_number: bool = True) -> OrderedDict:
    """Moment-DETR evaluation of a submission: ``{"brief": {...}, "HL-min-*": {...}, "full"/"long"/...: {...}}``.

    ``preds``: rows with ``qid``, ``pred_relevant_windows`` ([[s, e, score], ...]) and/or ``pred_saliency_scores``;
    ``gts``: QVHighlights rows. Key names and order are the official ones: the brief holds the moment-retrieval
    keys sorted by name, then the highlight keys; the detailed blocks follow sorted by name.
    """
    if not preds:
        raise DataFormatError("predictions", "no prediction rows", expected="at least one row")
    preds, gts = match_qids(preds, gts, match_number)
    metrics: dict[str, Any] = {}
    brief: OrderedDict = OrderedDict()
    if "pred_relevant_windows" in preds[0]:
        mr = eval_moment_retrieval(preds, gts)
        metrics.update(mr)
        values = {k: mr[b][m][t] for k, (b, m, t) in MR_BRIEF_KEYS.items()}
        brief.update(sorted(values.items()))
        if verbose:
            for name, (low, high) in LENGTH_RANGES:
                kept = len(filter_by_length([], gts, low, high)[1])
                print(f"{name}: ({low:g}, {high:g}], {kept}/{len(gts)} = {100 * kept / max(1, len(gts)):.2f}% queries")
    if "pred_saliency_scores" in preds[0]:
        hl = eval_highlight(preds, gts)
        metrics.update(hl)
        brief.update((f"{k}-{sub.split('-')[1]}", v[sub]) for k, v in hl.items() for sub in v)
    out: OrderedDict = OrderedDict(brief=brief)
    out.update(sorted(metrics.items()))
    return out


__all__ = [
    "IOU_THRESHOLDS", "LENGTH_RANGES", "SALIENCY_LEVELS", "MR_BRIEF_KEYS",
    "temporal_iou", "temporal_iou_paired", "interpolated_ap", "interpolated_ap_rows", "greedy_match", "average_precision_detection",
    "binary_ap", "binary_ap_columns", "filter_by_length", "compute_mr_ap", "compute_mr_r1", "top1_windows", "eval_moment_retrieval",
    "gt_saliency_matrix", "eval_highlight", "match_qids", "eval_submission",
]

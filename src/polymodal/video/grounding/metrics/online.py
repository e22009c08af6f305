"""OVG-HQ online metrics: oR@1 and omAP with a timeliness weight (spec ``video.md`` section 3.5).

OVG-HQ (Zeng, Mao et al., ICCV 2025, arXiv 2508.11903) scores a streaming grounder's proposals by *when* they were
emitted. Each prediction is ``[s, e, score, g]`` with ``g`` the stream time (s) at which it was emitted; for a GT
window ``[s*, e*]`` and a delay tolerance ``L`` (1, 3, 5 s) the weight ``beta`` is:

- ``"pos"`` (the reported one): 1 if g <= e*; 1 - (g - e*)/L if e* < g <= e* + L; 0 after.
- ``"zero"``: 1 up to s*, falling linearly to 0.5 at e*, then to 0 at e* + L, 0 after.
- ``"minus"``: 1 up to s*, falling linearly to 0 at e*, then to -1 at e* + L, -1 after.

(``g < s*`` never matters at IoU >= 0.5, since a proposal ending before s* does not overlap the window: the value 1
there is a [reconstruction].)

- **oR@1, IoU m**: the top-scored prediction, the GT window with max IoU to it; beta (w.r.t. that window) if
  IoU >= m, else 0 — and -1 for the ``"minus"`` weight (a miss is as bad as the latest hit). Mean x 100.
- **omAP@m** (``omap_variant="code"``, the one that produced the paper's tables): all predictions in score order (no
  truncation), greedy ActivityNet matching exactly as offline; a matched prediction weighs beta w.r.t. the GT window it
  matched. With cumulative W_k (beta-weighted hits), T_k (hits), F_k (false positives): recall W_k/#GT, precision
  W_k/(T_k + F_k), VOC-interpolated AP; mean over queries; "average" = mean over m in 0.5:0.05:0.95.
  ``omap_variant="paper"`` is the paper's formula oAP = sum_j (beta_j R_j - beta_{j-1} R_{j-1}) beta_j P_j over the
  hits j in score order (R_j, P_j binary recall / precision at hit j) [reconstruction of its indexing].
- **gamma** = online / offline: the ratio of the online value to the offline one at the same threshold (x 100);
  the gamma "average" is the mean of the per-threshold ratios. Zero offline value -> gamma 0.
- The offline values (binary hits, same predictions, no truncation) are computed alongside ("OFF-" keys).
- Averages over the tolerances ("edlen_avg", "On-Avg-") are means of the unrounded per-tolerance values.

The result mirrors the reference evaluation's layout key for key, so it reproduces
``sample_online_val_preds_metrics.json`` exactly (tests check every number). :func:`merge_reports` adds the
highlight metrics of the offline Moment-DETR evaluation, as the reference file does.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from polymodal.core.errors import ConfigError
from polymodal.video.grounding.metrics.moment_detr import (
    IOU_THRESHOLDS,
    greedy_match,
    interpolated_ap_rows,
    match_qids,
    temporal_iou,
)

WEIGHT_VARIANTS = ("zero", "minus", "pos")
#: The weights whose gamma (online / offline) is reported: a ratio of a possibly negative score means nothing.
GAMMA_VARIANTS = ("zero", "pos")
#: The reference's key order differs between the mAP block (zero, minus, pos) and the R1 block (zero, pos, minus).
R1_ORDER = ("zero", "pos", "minus")
OMAP_VARIANTS = ("code", "paper")
#: IoU thresholds of the brief's R1 / mAP keys.
BRIEF_R1 = (0.5, 0.7)
BRIEF_MAP = ("0.5", "0.75", "average")
TOLERANCE_CLAMP = 10000.0


def _fmt(value: float) -> float:
    return float(f"{100 * value:.2f}")


def timeliness_weight(gentime: np.ndarray | float, start: np.ndarray | float, end: np.ndarray | float,
                      tolerance: float, variant: str = "pos") -> np.ndarray:
    """beta of a proposal emitted at ``gentime`` for the GT window [start, end] and delay tolerance L (broadcasts).

    ``"pos"``: 1 until e*, linear to 0 at e* + L, then 0. ``"zero"``: 1 until s*, 0.5 at e*, 0 at e* + L, then 0.
    ``"minus"``: 1 until s*, 0 at e*, -1 at e* + L, then -1. (e* + L is clamped at 10000 s, as in the reference.)
    """
    if variant not in WEIGHT_VARIANTS:
        raise ConfigError(f"timeliness variant {variant!r}: expected one of {', '.join(WEIGHT_VARIANTS)}")
    if not tolerance > 0:
        raise ConfigError(f"delay tolerance L = {tolerance!r}: expected a positive number of seconds")
    g = np.asarray(gentime, dtype=float)
    s = np.asarray(start, dtype=float)
    e = np.asarray(end, dtype=float)
    deadline = np.minimum(e + tolerance, TOLERANCE_CLAMP)
    late = np.clip((g - e) / np.maximum(deadline - e, 1e-12), 0.0, 1.0)  # 0 at e*, 1 at e* + L
    early = np.clip((g - s) / np.maximum(e - s, 1e-12), 0.0, 1.0)  # 0 at s*, 1 at e*
    if variant == "pos":
        beta = np.where(g <= e, 1.0, 1.0 - late)
    elif variant == "zero":
        beta = np.where(g <= e, 1.0 - 0.5 * early, 0.5 * (1.0 - late))
    else:
        beta = np.where(g <= e, 1.0 - early, -late)
    return np.where(g > deadline, {"pos": 0.0, "zero": 0.0, "minus": -1.0}[variant], beta)


def _paper_ap_rows(weights: np.ndarray, hits: np.ndarray, n_gt: int) -> np.ndarray:
    """The paper's oAP = sum_j (beta_j R_j - beta_{j-1} R_{j-1}) beta_j P_j over hits j (binary R_j, P_j)."""
    ranks = np.arange(1, hits.shape[-1] + 1)
    tp = np.cumsum(hits, axis=-1)
    recall, precision = tp / n_gt, tp / ranks
    out = np.zeros(weights.shape[:-1])
    for idx in np.ndindex(*weights.shape[:-1]):
        t_idx = idx[1:] if hits.ndim < weights.ndim else idx
        h = np.nonzero(hits[t_idx])[0]
        prev, total = 0.0, 0.0
        for j in h:
            cur = weights[idx][j] * recall[t_idx][j]
            total += (cur - prev) * weights[idx][j] * precision[t_idx][j]
            prev = cur
        out[idx] = total
    return out


def query_scores(windows: np.ndarray, gt_windows: np.ndarray, configs: Sequence[tuple[str, float]],
                 thresholds: Sequence[float] = IOU_THRESHOLDS, omap_variant: str = "code",
                 max_pred_windows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One query's (AP, R1) arrays, each (1 + len(configs), T): row 0 offline, then one row per (variant, L).

    ``windows``: (P, 4) [s, e, score, gentime] in any order; ``gt_windows``: (G, 2), G >= 1.
    """
    thr = np.asarray(thresholds, dtype=float)
    n_rows = 1 + len(configs)
    ap = np.zeros((n_rows, len(thr)))
    r1 = np.zeros((n_rows, len(thr)))
    for c, (variant, _) in enumerate(configs):
        if variant == "minus":
            r1[1 + c] = -1.0  # no prediction: a miss
    w = np.asarray(windows, dtype=float).reshape(-1, 4)
    gts = np.asarray(gt_windows, dtype=float).reshape(-1, 2)
    if len(w) == 0:
        return ap, r1
    w = w[np.argsort(-w[:, 2], kind="stable")]
    if max_pred_windows is not None:
        w = w[:max_pred_windows]
    iou = temporal_iou(w[:, :2], gts)
    g = w[:, 3]
    betas = np.stack([timeliness_weight(g[:, None], gts[None, :, 0], gts[None, :, 1], L, v) for v, L in configs])

    # oR@1: the top-scored prediction against its best GT window (first max, like the official argmax)
    best = int(np.argmax(iou[0]))
    hit = iou[0, best] >= thr
    r1[0] = hit
    for c, (variant, _) in enumerate(configs):
        r1[1 + c] = np.where(hit, betas[c, 0, best], -1.0 if variant == "minus" else 0.0)

    # omAP: greedy matching once, then weights per (variant, L)
    matched = greedy_match(iou, thr)  # (T, P), -1 = false positive
    hits = matched >= 0
    gathered = np.take_along_axis(betas[:, None, :, :].repeat(len(thr), 1),
                                  np.maximum(matched, 0)[None, :, :, None].repeat(len(configs), 0), axis=3)[..., 0]
    weights = np.concatenate([hits[None].astype(float), np.where(hits[None], gathered, 0.0)], axis=0)  # (C+1, T, P)
    w_cum = np.cumsum(weights, axis=-1)
    n_seen = np.cumsum(hits, axis=-1) + np.cumsum(~hits, axis=-1)
    ap[:] = interpolated_ap_rows(w_cum / n_seen, w_cum / float(len(gts)))
    if omap_variant == "paper":  # the online rows only: the offline row stays the standard interpolated AP
        ap[1:] = _paper_ap_rows(weights[1:], hits, len(gts))
    return ap, r1


def _ratio(online: np.ndarray, offline: np.ndarray) -> np.ndarray:
    return np.divide(online, offline, out=np.zeros_like(online, dtype=float), where=offline != 0)


def evaluate(preds: list[dict], gts: list[dict], tolerances: Sequence[float] = (1, 3, 5), variant: str = "pos",
             omap_variant: str = "code", thresholds: Sequence[float] = IOU_THRESHOLDS,
             brief_tolerances: Sequence[float] | None = (3,), max_pred_windows: int | None = None,
             match_number: bool = True) -> OrderedDict:
    """Online metrics of a submission -> ``{"brief": {...}, "full": {"MR-mAP": {...}, "MR-R1": {...}}}``.

    ``preds``: rows with ``qid`` and ``pred_relevant_windows`` [[s, e, score, gentime], ...]; ``gts``: QVHighlights
    rows. Every weight of :data:`WEIGHT_VARIANTS` is computed for every tolerance L; ``variant`` ("pos" or "zero")
    is the one averaged over L and put in the brief, beside "minus" and the ``variant`` gamma, as the reference does:
    ``On-Avg-R1@0.5_pos``, ``On-Avg-mAP@Avg_pos``, ``On-Avg-R1@0.5_pos_gamma``, ``On-Avg-R1@0.5_minus``, the
    per-tolerance ``On3-...`` (``brief_tolerances``) and the offline ``OFF-R1@0.5`` ... ``OFF-mAP@Avg``.
    """
    if variant not in GAMMA_VARIANTS:
        raise ConfigError(f"variant {variant!r}: expected one of {', '.join(GAMMA_VARIANTS)} (the averaged weight; "
                          "'minus' is always reported beside it)")
    if omap_variant not in OMAP_VARIANTS:
        raise ConfigError(f"omap_variant {omap_variant!r}: expected one of {', '.join(OMAP_VARIANTS)}")
    tolerances = [float(L) for L in tolerances]
    if not tolerances or any(not L > 0 for L in tolerances):
        raise ConfigError(f"tolerances {tolerances}: expected one or more positive numbers of seconds")
    if not preds:
        raise ConfigError("no predictions to evaluate")
    preds, gts = match_qids(preds, gts, match_number)
    thresholds = [float(t) for t in thresholds]
    configs = [(v, L) for L in tolerances for v in WEIGHT_VARIANTS]
    gt_by_qid = {d["qid"]: d["relevant_windows"] for d in gts}

    aps, r1s = [], []
    for d in preds:
        rows = d["pred_relevant_windows"]
        if any(len(w) < 4 for w in rows):
            raise ConfigError(f"qid {d['qid']}: online windows need [s, e, score, gentime]; got {rows[:2]}...")
        windows = np.asarray([w[:4] for w in rows], dtype=float).reshape(len(rows), 4)
        ap, r1 = query_scores(windows,
                              np.asarray(gt_by_qid[d["qid"]], dtype=float), configs, thresholds, omap_variant,
                              max_pred_windows)
        aps.append(ap)
        r1s.append(r1)
    ap_mean = np.asarray(aps).mean(0)  # (1 + C, T)
    r1_mean = np.asarray(r1s).mean(0)
    row = {cfg: 1 + i for i, cfg in enumerate(configs)}
    tkey = [str(t) for t in thresholds]

    def lname(L: float) -> str:
        return f"{L:g}"

    # ---- MR-mAP, in the reference's order
    mr_map: OrderedDict = OrderedDict()

    def put_map(name: str, values: np.ndarray, average: float | None = None) -> None:
        block = {k: _fmt(v) for k, v in zip(tkey, values, strict=True)}
        block["average"] = _fmt(float(np.mean(values)) if average is None else average)
        mr_map[name] = block

    off_ap = ap_mean[0]
    put_map("offline", off_ap)
    for L in tolerances:
        for v in WEIGHT_VARIANTS:
            put_map(f"edlen_{lname(L)}_{v}_online", ap_mean[row[(v, L)]])
    for v in GAMMA_VARIANTS:
        for L in tolerances:
            put_map(f"edlen_{lname(L)}_{v}_online_gamma", _ratio(ap_mean[row[(v, L)]], off_ap))
    avg_ap = {v: np.mean([ap_mean[row[(v, L)]] for L in tolerances], axis=0) for v in WEIGHT_VARIANTS}
    avg_ap_gamma = np.mean([_ratio(ap_mean[row[(variant, L)]], off_ap) for L in tolerances], axis=0)
    put_map(f"edlen_avg_{variant}_online_gamma", avg_ap_gamma)
    put_map(f"edlen_avg_{variant}_online", avg_ap[variant],
            average=float(np.mean([np.mean(ap_mean[row[(variant, L)]]) for L in tolerances])))
    put_map("edlen_avg_minus_online", avg_ap["minus"],
            average=float(np.mean([np.mean(ap_mean[row[("minus", L)]]) for L in tolerances])))

    # ---- MR-R1
    off_r1 = r1_mean[0]
    mr_r1: OrderedDict = OrderedDict()
    for i, L in enumerate(tolerances):
        for t, k in enumerate(tkey):
            if i == 0:
                mr_r1[f"{k}_offline"] = _fmt(off_r1[t])
            for v in R1_ORDER:
                mr_r1[f"{k}_edlen_{lname(L)}_{v}_online"] = _fmt(r1_mean[row[(v, L)], t])
            for v in GAMMA_VARIANTS:
                mr_r1[f"{k}_edlen_{lname(L)}_{v}_gamma"] = _fmt(_ratio(r1_mean[row[(v, L)], t], off_r1[t]))
    brief_t = [t for t, k in enumerate(tkey) if float(k) in BRIEF_R1]
    avg_r1 = {v: np.mean([r1_mean[row[(v, L)]] for L in tolerances], axis=0) for v in WEIGHT_VARIANTS}
    avg_r1_gamma = np.mean([_ratio(r1_mean[row[(variant, L)]], off_r1) for L in tolerances], axis=0)
    for name, values in ((f"{variant}_online", avg_r1[variant]), (f"{variant}_gamma", avg_r1_gamma),
                         ("minus_online", avg_r1["minus"])):
        for t in brief_t:
            mr_r1[f"{tkey[t]}_edlen_avg_{name}"] = _fmt(values[t])

    # ---- brief (sorted by name, like the official brief)
    brief: dict[str, float] = {}
    for t in brief_t:
        brief[f"OFF-R1@{tkey[t]}"] = mr_r1[f"{tkey[t]}_offline"]
    for k in BRIEF_MAP:
        brief[f"OFF-mAP@{_brief_map_name(k)}"] = mr_map["offline"][k]
    suffixes = {variant: f"{variant}_online", f"{variant}_gamma": f"{variant}_gamma", "minus": "minus_online"}
    map_blocks = {variant: f"{variant}_online", f"{variant}_gamma": f"{variant}_online_gamma",
                  "minus": "minus_online"}
    prefixes: list[tuple[str, str]] = [("On-Avg", "avg")]
    for L in brief_tolerances or ():
        if float(L) in tolerances:
            prefixes.append((f"On{lname(float(L))}", lname(float(L))))
    for prefix, lkey in prefixes:
        for suffix, r1_name in suffixes.items():
            for t in brief_t:
                brief[f"{prefix}-R1@{tkey[t]}_{suffix}"] = mr_r1[f"{tkey[t]}_edlen_{lkey}_{r1_name}"]
            for k in BRIEF_MAP:
                brief[f"{prefix}-mAP@{_brief_map_name(k)}_{suffix}"] = mr_map[f"edlen_{lkey}_{map_blocks[suffix]}"][k]
    out: OrderedDict = OrderedDict()
    out["brief"] = OrderedDict(sorted(brief.items()))
    out["full"] = OrderedDict([("MR-mAP", mr_map), ("MR-R1", mr_r1)])
    return out


def _brief_map_name(key: str) -> str:
    return "Avg" if key == "average" else key


def merge_reports(offline: dict[str, Any], online: dict[str, Any]) -> OrderedDict:
    """The combined report of the reference evaluation ("the same file as both the offline and online submission").

    ``offline``: :func:`moment_detr.eval_submission` output; ``online``: :func:`evaluate` output. The brief holds the
    online brief (OFF-/On- keys, sorted) followed by the offline highlight keys; then the ``HL-min-*`` blocks and the
    online ``full`` block, sorted by name. (The offline length buckets are not part of the reference's file.)
    """
    brief: OrderedDict = OrderedDict(online["brief"])
    brief.update((k, v) for k, v in offline.get("brief", {}).items() if k.startswith("HL-"))
    blocks = {k: v for k, v in offline.items() if k.startswith("HL-")}
    blocks["full"] = online["full"]
    out: OrderedDict = OrderedDict(brief=brief)
    out.update(sorted(blocks.items()))
    return out


__all__ = [
    "WEIGHT_VARIANTS", "GAMMA_VARIANTS", "OMAP_VARIANTS", "timeliness_weight", "query_scores", "evaluate",
    "merge_reports",
]

"""Full-ranking top-K metrics with RecBole's definitions (spec section 1.4).

Recall@K uses |T_u| as denominator (not min(K, |T_u|)); NDCG uses binary gains with
IDCG over min(|T_u|, K) positions; MAP@K divides by min(|T_u|, K). Only users with at least one
ground-truth item count; the result is the mean over them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

METRICS = ("recall", "ndcg", "precision", "hit", "mrr", "map")


def topk_metrics(hits: np.ndarray, n_truth: np.ndarray, ks: Sequence[int],
                 metrics: Sequence[str] = METRICS) -> dict[str, np.ndarray]:
    """Per-user metric values from a hit matrix.

    ``hits[u, r]`` is 1 when the item ranked r+1 for user u is relevant (shape users x max K);
    ``n_truth[u]`` = |T_u| > 0. Returns ``{"recall@10": array(users), ...}``.
    """
    hits = np.asarray(hits, dtype=np.float64)
    n_truth = np.asarray(n_truth, dtype=np.float64)
    if hits.ndim != 2 or hits.shape[0] != n_truth.shape[0]:
        raise ValueError(f"hits must be users x K and match n_truth, got {hits.shape} and {n_truth.shape}")
    if np.any(n_truth <= 0):
        raise ValueError("every evaluated user needs at least one ground-truth item")
    max_k = max(ks)
    if hits.shape[1] < max_k:
        raise ValueError(f"hits has {hits.shape[1]} columns, need {max_k}")
    ranks = np.arange(1, max_k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    cum_hits = np.cumsum(hits[:, :max_k], axis=1)
    cum_dcg = np.cumsum(hits[:, :max_k] * discount, axis=1)
    ideal = np.cumsum(discount)
    prec_at_r = cum_hits / ranks
    cum_ap = np.cumsum(prec_at_r * hits[:, :max_k], axis=1)
    first_hit = np.where(hits[:, :max_k].any(axis=1), hits[:, :max_k].argmax(axis=1) + 1, 0)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        n_hit = cum_hits[:, k - 1]
        denom = np.minimum(n_truth, k)
        for m in metrics:
            if m == "recall":
                v = n_hit / n_truth
            elif m == "precision":
                v = n_hit / k
            elif m == "hit":
                v = (n_hit > 0).astype(np.float64)
            elif m == "ndcg":
                v = cum_dcg[:, k - 1] / ideal[denom.astype(int) - 1]
            elif m == "mrr":
                v = np.where((first_hit > 0) & (first_hit <= k), 1.0 / np.maximum(first_hit, 1), 0.0)
            elif m == "map":
                v = cum_ap[:, k - 1] / denom
            else:
                raise ValueError(f"unknown metric {m!r}; choose from {METRICS}")
            out[f"{m}@{k}"] = v
    return out


def evaluate_full_ranking(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    truth: sp.csr_matrix,
    masks: Sequence[sp.csr_matrix],
    ks: Sequence[int] = (10, 20, 50),
    metrics: Sequence[str] = METRICS,
    *,
    chunk_users: int = 512,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Score every item for every user with ground truth, mask ``masks`` (set to -inf), rank, average.

    ``score_fn(user_ids) -> (len(user_ids), n_items)`` scores; ``truth`` and ``masks`` are user x item CSR
    matrices (e.g. truth = valid, masks = [train]; at test truth = test, masks = [train, valid]).
    Users are processed in chunks of ``chunk_users`` so memory stays bounded.
    """
    truth = truth.tocsr()
    n_truth_all = np.diff(truth.indptr)
    users = np.flatnonzero(n_truth_all > 0)
    if users.size == 0:
        raise ValueError("no user has a ground-truth item in the evaluated split")
    max_k = max(ks)
    n_items = truth.shape[1]
    k_eff = min(max_k, n_items)
    sums: dict[str, float] = {}
    mask_sum = sum(m.tocsr() for m in masks) if masks else None
    for start in range(0, users.size, chunk_users):
        batch = users[start:start + chunk_users]
        with torch.no_grad():
            # a private copy: masking writes in place, and score_fn may return a view or a cached tensor
            scores = score_fn(torch.as_tensor(batch, dtype=torch.long, device=device)).float().clone()
            if mask_sum is not None:
                sub = mask_sum[batch].tocoo()
                scores[torch.as_tensor(sub.row, dtype=torch.long, device=scores.device),
                       torch.as_tensor(sub.col, dtype=torch.long, device=scores.device)] = float("-inf")
            top = torch.topk(scores, k_eff, dim=1).indices.cpu().numpy()
        t = truth[batch].tocoo()
        relevant = np.zeros((len(batch), n_items), dtype=bool)
        relevant[t.row, t.col] = True
        hits = np.take_along_axis(relevant, top, axis=1)
        if k_eff < max_k:
            hits = np.pad(hits, ((0, 0), (0, max_k - k_eff)))
        per_user = topk_metrics(hits, n_truth_all[batch], ks, metrics)
        for name, vals in per_user.items():
            sums[name] = sums.get(name, 0.0) + float(vals.sum())
    return {name: s / users.size for name, s in sums.items()}

"""Item cold-start protocol for SG-URInit's evaluation (spec 6.4) [reconstruction].

A seeded fraction of items is made cold: every interaction on them leaves train/valid/test of the warm data
(the item tables keep their rows, so feature matrices stay aligned). After training on the warm data, each user
who interacted with cold items ranks the cold items only; a model reaches them through its modality path
(FREEDOM: kNN neighbours, VBPR: the Linear(features) half), an ID-only model only through random ID rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch

from polymodal.core.errors import ConfigError
from polymodal.recsys.data import InteractionData
from polymodal.recsys.metrics import evaluate_full_ranking


@dataclass
class ColdItems:
    items: np.ndarray  # sorted ids of the cold items
    pairs: np.ndarray  # (n, 2) every interaction on a cold item, from all splits


def split_cold_items(data: InteractionData, frac: float = 0.2, seed: int = 0) -> tuple[InteractionData, ColdItems]:
    """(warm data without any interaction on the cold items, the cold items and their interactions)."""
    if not 0.0 < frac < 1.0:
        raise ConfigError(f"field 'cold_item_frac': must be in (0, 1), got {frac}")
    seen = np.unique(np.concatenate([data.train[:, 1], data.valid[:, 1], data.test[:, 1]]))
    n_cold = int(round(frac * seen.size))
    if n_cold < 1:
        raise ConfigError(f"cold_item_frac={frac} selects no item out of {seen.size}")
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(seen, size=n_cold, replace=False))
    is_cold = np.zeros(data.n_items, dtype=bool)
    is_cold[cold] = True

    def warm(pairs: np.ndarray) -> np.ndarray:
        return pairs[~is_cold[pairs[:, 1]]]

    all_pairs = np.concatenate([data.train, data.valid, data.test])
    cold_pairs = np.unique(all_pairs[is_cold[all_pairs[:, 1]]], axis=0)
    warm_data = replace(data, train=warm(data.train), valid=warm(data.valid), test=warm(data.test),
                        name=f"{data.name}-warm")
    return warm_data, ColdItems(items=cold, pairs=cold_pairs)


def evaluate_cold(model, cold: ColdItems, n_users: int, ks=(10, 20), *, device: str = "cpu",
                  chunk_users: int = 512) -> dict[str, float]:
    """Recall/NDCG@K of each user's cold items, ranked among the cold items only (nothing masked)."""
    position = {int(i): k for k, i in enumerate(cold.items)}
    cols = np.array([position[int(i)] for i in cold.pairs[:, 1]], dtype=np.int64)
    truth = sp.csr_matrix((np.ones(len(cols)), (cold.pairs[:, 0], cols)), shape=(n_users, len(cold.items)))
    index = torch.as_tensor(cold.items, dtype=torch.long, device=device)
    model.eval()
    return evaluate_full_ranking(lambda u: model.full_sort_scores(u)[:, index], truth, [], ks,
                                 metrics=("recall", "ndcg"), chunk_users=chunk_users, device=device)

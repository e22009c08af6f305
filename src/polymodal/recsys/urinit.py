"""SG-URInit: training-free, model-agnostic user representation initialisation (spec section 6).

"Well Begun is Half Done" (SIGIR 2026, arXiv 2604.14839) has no public code; the algorithm here is the spec's
reconstruction (6.3), every choice a constructor flag:

1. local  l_u^m = aggregate of x_i^m over the user's training items N_u (``local_agg``: "mean" | "degree_norm")
2. K-means (seeded k-means++) on item features (``cluster_on="items"``, per modality or on the concatenation) or
   on the users' local vectors (``cluster_on="users"``)
3. global g_u^m = sum_k w_uk c_k^m, w_uk = |N_u ∩ C_k| / |N_u| (items), or the centroid of u's cluster (users)
4. fusion h_u^m = (1 - lam) l_u^m + lam g_u^m ("convex") or l_u^m + lam g_u^m ("additive")
5. projection into each user table the model exposes (its own projection, or PCA), averaged over modalities,
   rescaled so the table's std equals the model's default init std, written once under ``torch.no_grad()``.
Users without training items keep the model's default init.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys.data import InteractionData
from polymodal.recsys.models.user_init import UserInitTarget, user_init_targets

ClusterOn = Literal["items", "users"]
ClusterSpace = Literal["per_modality", "concat"]
Fusion = Literal["convex", "additive"]
LocalAgg = Literal["mean", "degree_norm"]
ProjectionMode = Literal["model", "pca"]
Rescale = Literal["match_init_std", "none"]
Centroids = Literal["raw_mean", "kmeans"]


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _kmeans(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, centroids) of seeded k-means++ K-means (scikit-learn)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, init="k-means++", n_init=1, random_state=seed)
    labels = km.fit_predict(x.astype(np.float64))
    return labels.astype(np.int64), km.cluster_centers_


def _cluster_means(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of the rows of ``x`` in each cluster (zeros for an empty cluster)."""
    onehot = sp.csr_matrix((np.ones(labels.size), (labels, np.arange(labels.size))), shape=(k, labels.size))
    counts = np.asarray(onehot.sum(axis=1)).ravel()
    return np.asarray(onehot @ x) / np.maximum(counts, 1)[:, None]


class SGURInit:
    """``SGURInit(n_clusters=32, lam=0.5).apply(model, data)`` overwrites the model's user table(s) in place.

    ``fit(train_pairs_or_data, item_features, n_users=None)`` computes h_u^m per modality (``self.user_features``)
    without touching a model; ``apply`` fits first when needed. ``seconds`` holds the one-off cost.
    """

    def __init__(
        self,
        n_clusters: int = 32,
        lam: float = 0.5,
        *,
        cluster_on: ClusterOn = "items",
        cluster_space: ClusterSpace = "per_modality",
        fusion: Fusion = "convex",
        local_agg: LocalAgg = "mean",
        projection: ProjectionMode = "model",
        rescale: Rescale = "match_init_std",
        normalize_before_clustering: bool = True,
        centroids: Centroids = "raw_mean",
        targets: tuple[str, ...] | None = None,
        seed: int = 0,
    ):
        if n_clusters < 1:
            raise ConfigError(f"field 'n_clusters': must be >= 1, got {n_clusters}")
        if not 0.0 <= lam <= (1.0 if fusion == "convex" else 10.0):
            raise ConfigError(f"field 'lam': {lam} out of range for fusion {fusion!r}")
        choices = {"cluster_on": (cluster_on, ("items", "users")),
                   "cluster_space": (cluster_space, ("per_modality", "concat")),
                   "fusion": (fusion, ("convex", "additive")), "local_agg": (local_agg, ("mean", "degree_norm")),
                   "projection": (projection, ("model", "pca")), "rescale": (rescale, ("match_init_std", "none")),
                   "centroids": (centroids, ("raw_mean", "kmeans"))}
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"field '{name}': {value!r} is not one of {allowed}")
        self.n_clusters, self.lam = int(n_clusters), float(lam)
        self.cluster_on, self.cluster_space, self.fusion = cluster_on, cluster_space, fusion
        self.local_agg, self.projection, self.rescale = local_agg, projection, rescale
        self.normalize_before_clustering, self.centroids = normalize_before_clustering, centroids
        self.targets, self.seed = targets, int(seed)
        self.user_features: dict[str, np.ndarray] | None = None
        self.local: dict[str, np.ndarray] = {}
        self.global_: dict[str, np.ndarray] = {}
        self.weights: sp.csr_matrix | dict[str, sp.csr_matrix] | None = None
        self.has_items: np.ndarray | None = None
        self.item_features: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    # -- steps 1-4: user vectors in item-feature space ---------------------------------------------------------
    def fit(self, train: InteractionData | np.ndarray, item_features: Mapping[str, np.ndarray] | None = None,
            n_users: int | None = None) -> dict[str, np.ndarray]:
        """h_u^m for every modality. ``train`` is an ``InteractionData`` (its train split and item features are
        used) or an (n, 2) array of training (user, item) pairs with ``item_features`` and ``n_users``."""
        t0 = time.perf_counter()
        if isinstance(train, InteractionData):
            pairs, n_users = train.train, train.n_users
            item_features = item_features if item_features is not None else train.item_features
            n_items = train.n_items
        else:
            pairs = np.asarray(train, dtype=np.int64).reshape(-1, 2)
            if n_users is None:
                n_users = int(pairs[:, 0].max()) + 1 if len(pairs) else 0
            n_items = None
        if not item_features:
            raise ConfigError("SG-URInit needs item features (at least one modality); the data has none")
        feats = {m: np.asarray(x, dtype=np.float64) for m, x in item_features.items()}
        rows = {m: x.shape[0] for m, x in feats.items()}
        if n_items is None:
            n_items = next(iter(rows.values()))
        for m, x in feats.items():
            if x.ndim != 2 or x.shape[0] != n_items:
                raise DataFormatError(f"item_features[{m!r}]", f"shape {x.shape} does not match {n_items} items",
                                      expected=f"({n_items}, d)")
        if len(pairs) and (pairs[:, 1].max() >= n_items or pairs[:, 0].max() >= n_users):
            raise ConfigError("training pairs reference users/items beyond the feature tables")
        self.item_features = {m: x.astype(np.float32) for m, x in feats.items()}

        r = sp.csr_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items))
        r.sum_duplicates()
        r.data[:] = 1.0
        deg_u = np.asarray(r.sum(axis=1)).ravel()
        self.has_items = deg_u > 0
        if self.local_agg == "degree_norm":
            deg_i = np.asarray(r.sum(axis=0)).ravel()
            w = r @ sp.diags(1.0 / np.sqrt(np.maximum(deg_i, 1.0)))
        else:
            w = r.copy()
        row_sum = np.asarray(w.sum(axis=1)).ravel()
        w_local = sp.diags(1.0 / np.maximum(row_sum, 1e-12)) @ w  # rows sum to 1 (0 for users without items)
        self.local = {m: np.asarray(w_local @ x) for m, x in feats.items()}

        if self.cluster_on == "items":
            self.global_ = self._global_from_item_clusters(r, deg_u, feats, n_items)
        else:
            self.global_ = self._global_from_user_clusters()
        if self.fusion == "convex":
            h = {m: (1.0 - self.lam) * self.local[m] + self.lam * self.global_[m] for m in feats}
        else:
            h = {m: self.local[m] + self.lam * self.global_[m] for m in feats}
        self.user_features = {m: v.astype(np.float32) for m, v in h.items()}
        self.seconds = time.perf_counter() - t0
        return self.user_features

    def _item_partition(self, feats: dict[str, np.ndarray], n_items: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        if self.n_clusters > n_items:
            raise ConfigError(f"field 'n_clusters': {self.n_clusters} exceeds the number of items ({n_items})")
        prep = (lambda x: _l2_normalize(x)) if self.normalize_before_clustering else (lambda x: x)
        out = {}
        if self.cluster_space == "concat":
            labels, centers = _kmeans(np.hstack([prep(x) for x in feats.values()]), self.n_clusters, self.seed)
            offset = 0
            for m, x in feats.items():
                d = x.shape[1]
                out[m] = (labels, centers[:, offset: offset + d])
                offset += d
        else:
            for m, x in feats.items():
                out[m] = _kmeans(prep(x), self.n_clusters, self.seed)
        return out

    def _centroids(self, x: np.ndarray, labels: np.ndarray, kmeans_centers: np.ndarray) -> np.ndarray:
        # raw_mean keeps l and g in the same space (both are means of raw item features).
        return _cluster_means(x, labels, self.n_clusters) if self.centroids == "raw_mean" else kmeans_centers

    def _global_from_item_clusters(self, r: sp.csr_matrix, deg_u: np.ndarray, feats: dict[str, np.ndarray],
                                   n_items: int) -> dict[str, np.ndarray]:
        parts = self._item_partition(feats, n_items)
        out, weights = {}, {}
        for m, x in feats.items():
            labels, centers = parts[m]
            onehot = sp.csr_matrix((np.ones(n_items), (np.arange(n_items), labels)), shape=(n_items, self.n_clusters))
            w_uk = sp.diags(1.0 / np.maximum(deg_u, 1.0)) @ (r @ onehot)  # |N_u ∩ C_k| / |N_u|
            weights[m] = sp.csr_matrix(w_uk)
            out[m] = np.asarray(w_uk @ self._centroids(x, labels, centers))
        self.weights = weights if self.cluster_space == "per_modality" else weights[next(iter(weights))]
        return out

    def _global_from_user_clusters(self) -> dict[str, np.ndarray]:
        active = np.flatnonzero(self.has_items)
        if self.n_clusters > active.size:
            raise ConfigError(f"field 'n_clusters': {self.n_clusters} exceeds the users with training items "
                              f"({active.size})")
        prep = (lambda x: _l2_normalize(x)) if self.normalize_before_clustering else (lambda x: x)
        out = {}
        spaces = [(None, np.hstack([prep(self.local[m][active]) for m in self.local]))] \
            if self.cluster_space == "concat" else [(m, prep(self.local[m][active])) for m in self.local]
        for m_key, x in spaces:
            labels, centers = _kmeans(x, self.n_clusters, self.seed)
            for m in ([m_key] if m_key is not None else list(self.local)):
                cent = self._centroids(self.local[m][active], labels, centers) if self.centroids == "raw_mean" \
                    else self._slice_centers(centers, m)
                g = np.zeros_like(self.local[m])
                g[active] = cent[labels]
                out[m] = g
        return out

    def _slice_centers(self, centers: np.ndarray, modality: str) -> np.ndarray:
        if self.cluster_space != "concat":
            return centers
        offset = 0
        for m, x in self.local.items():
            if m == modality:
                return centers[:, offset: offset + x.shape[1]]
            offset += x.shape[1]
        raise KeyError(modality)

    # -- step 5: into the model -----------------------------------------------------------------------------
    def _pca(self, modality: str, width: int, h: np.ndarray) -> np.ndarray:
        """Project h (users x d_m) with the PCA of the item features of ``modality`` onto ``width`` components.

        When d_m < width the remaining columns come from a seeded Gaussian random projection of the centred
        features [reconstruction: the spec does not say how to widen]."""
        x = self.item_features[modality].astype(np.float64)
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        k = min(width, vt.shape[0])
        proj = vt[:k].T  # (d_m, k)
        if k < width:
            rng = np.random.default_rng(self.seed)
            extra = rng.normal(size=(x.shape[1], width - k)) / np.sqrt(x.shape[1])
            proj = np.hstack([proj, extra])
        return (h - mean) @ proj

    def _projected(self, target: UserInitTarget, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        assert self.user_features is not None
        if self.projection == "model" and target.projection is not None:
            h = {m: torch.as_tensor(v, device=device, dtype=dtype) for m, v in self.user_features.items()}
            return target.projection(h).detach()
        parts = [self._pca(m, target.width, v) for m, v in self.user_features.items()]
        return torch.as_tensor(np.mean(parts, axis=0), device=device, dtype=dtype)

    @staticmethod
    def _rescale_factor(new: torch.Tensor, keep: torch.Tensor, target_std: float) -> float:
        """Scale s such that std(concat(s * new, keep)) == target_std (population std over all entries)."""
        n = new.numel() + keep.numel()
        a, b = float(new.sum()), float((new.double() ** 2).sum())
        c, e = float(keep.sum()), float((keep.double() ** 2).sum())
        qa = b / n - (a / n) ** 2
        qb = -2.0 * a * c / n**2
        qc = e / n - (c / n) ** 2 - target_std**2
        if qa <= 0:
            return 1.0
        disc = qb**2 - 4 * qa * qc
        if disc < 0:
            return float(np.sqrt(max(target_std**2 - (e / n - (c / n) ** 2), 0.0) / qa))
        return float((-qb + np.sqrt(disc)) / (2 * qa))

    def apply(self, model: nn.Module, data: InteractionData | None = None) -> nn.Module:
        """Overwrite the model's user table(s) once; nothing else changes and no gradient is involved."""
        targets = user_init_targets(model)  # a model without a user table fails here, before any work
        if data is not None:
            self.fit(data)
        if self.user_features is None:
            raise ConfigError("SGURInit.apply: call fit(...) first or pass the data")
        assert self.has_items is not None
        if self.targets is not None:
            unknown = set(self.targets) - {t.name for t in targets}
            if unknown:
                raise ConfigError(f"field 'targets': {sorted(unknown)} not among the model's user tables "
                                  f"{[t.name for t in targets]}")
            targets = [t for t in targets if t.name in self.targets]
        t0 = time.perf_counter()
        with torch.no_grad():
            for target in targets:
                table = target.param
                if table.shape[0] != self.has_items.size:
                    raise ConfigError(f"{type(model).__name__}.{target.name} has {table.shape[0]} rows but the data "
                                      f"has {self.has_items.size} users")
                block = table[:, target.columns]
                proj = self._projected(target, table.device, table.dtype)
                if proj.shape != block.shape:
                    raise ConfigError(f"projection for {target.name} gives {tuple(proj.shape)}, table block is "
                                      f"{tuple(block.shape)}")
                rows = torch.as_tensor(self.has_items, device=table.device)
                new = proj[rows]
                if self.rescale == "match_init_std" and new.numel():
                    std = target.init_std if target.init_std is not None else float(block.std(unbiased=False))
                    new = new * self._rescale_factor(new, block[~rows], std)
                block[rows] = new.to(block.dtype)
                table[:, target.columns] = block
        self.seconds += time.perf_counter() - t0
        return model

"""Seeded synthetic interaction data with latent clusters and item features (spec section 8.1).

Generative story (all draws from ``numpy.random.default_rng(seed)``, in this order):

1. Items: cluster ``c_i`` - a shuffled, near-balanced assignment of ``n_items`` to ``n_clusters``; popularity
   ``pop_i = rank_i ** -pop_exponent`` over a random rank permutation (power law).
2. Users: a main cluster (uniform) and a preference vector over clusters
   ``theta_u = main_weight * onehot(main) + (1 - main_weight) * Dirichlet(spread_alpha)``.
3. Degree ``d_u = round(lognormal)`` with mean ``avg_degree`` (sigma ``degree_sigma``), clipped to
   ``[min_degree, n_items // 2]``.
4. ``P(i | u) ∝ theta_u[c_i] * pop_i / sum_{j in c_i} pop_j``; ``d_u`` distinct items drawn without replacement.
5. Features per modality (in the order given): random centroids ``N(0, I)`` per cluster, item feature
   ``= centroid[c_i] + feature_noise * N(0, I)``, float32.

In-cluster items are far more likely than the rest, so a collaborative model can learn the structure (item-kNN
clearly beats popularity, which beats random), and item features carry the same cluster signal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from polymodal.core.errors import ConfigError
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.splits import split_mmrec, split_recbole

__all__ = ["SyntheticTruth", "make_synthetic", "make_synthetic_raw"]

DEFAULT_MODALITIES: dict[str, int] = {"text": 64, "image": 32}


@dataclass
class SyntheticTruth:
    """Latent structure behind a synthetic data set (for tests and diagnostics)."""

    item_cluster: np.ndarray  # (n_items,) int64
    user_cluster: np.ndarray  # (n_users,) int64, the main cluster
    user_pref: np.ndarray  # (n_users, n_clusters) float64, rows sum to 1
    item_popularity: np.ndarray  # (n_items,) float64, sums to 1


def make_synthetic_raw(
    n_users: int = 300,
    n_items: int = 400,
    n_clusters: int = 8,
    avg_degree: float = 30,
    modalities: Mapping[str, int] | None = None,
    seed: int = 0,
    *,
    pop_exponent: float = 0.8,
    main_weight: float = 0.8,
    spread_alpha: float = 0.3,
    degree_sigma: float = 0.5,
    min_degree: int = 5,
    feature_noise: float = 0.8,
) -> tuple[RawInteractions, SyntheticTruth]:
    """Un-split synthetic interactions plus the latent truth; see the module docstring for the model."""
    modalities = DEFAULT_MODALITIES if modalities is None else dict(modalities)
    if n_users < 1 or n_items < 2 or n_clusters < 1 or n_clusters > n_items:
        raise ConfigError(
            f"need n_users >= 1, n_items >= 2 and 1 <= n_clusters <= n_items; "
            f"got n_users={n_users}, n_items={n_items}, n_clusters={n_clusters}"
        )
    if avg_degree <= 0 or min_degree < 1:
        raise ConfigError(f"avg_degree must be > 0 and min_degree >= 1, got {avg_degree}, {min_degree}")
    if not 0.0 <= main_weight <= 1.0:
        raise ConfigError(f"main_weight must be in [0, 1], got {main_weight}")
    for m, d in modalities.items():
        if int(d) < 1:
            raise ConfigError(f"modalities[{m!r}] must be a positive dimension, got {d}")
    rng = np.random.default_rng(seed)

    # 1. items
    item_cluster = rng.permutation(np.arange(n_items) % n_clusters).astype(np.int64)
    ranks = rng.permutation(n_items) + 1
    pop = ranks.astype(np.float64) ** -pop_exponent
    pop /= pop.sum()
    cluster_mass = np.bincount(item_cluster, weights=pop, minlength=n_clusters)
    within = pop / cluster_mass[item_cluster]  # popularity share inside the item's cluster

    # 2. users
    user_cluster = rng.integers(n_clusters, size=n_users).astype(np.int64)
    spread = rng.dirichlet(np.full(n_clusters, spread_alpha), size=n_users)
    pref = (1.0 - main_weight) * spread
    pref[np.arange(n_users), user_cluster] += main_weight

    # 3. degrees
    sigma = float(degree_sigma)
    mu = np.log(avg_degree) - 0.5 * sigma**2
    max_degree = max(n_items // 2, 1)
    deg = np.clip(np.rint(rng.lognormal(mu, sigma, size=n_users)), min(min_degree, max_degree), max_degree)
    deg = deg.astype(np.int64)

    # 4. interactions
    probs = pref[:, item_cluster] * within[None, :]
    probs /= probs.sum(axis=1, keepdims=True)
    users_l: list[np.ndarray] = []
    items_l: list[np.ndarray] = []
    for u in range(n_users):
        p = probs[u]
        k = min(int(deg[u]), int(np.count_nonzero(p)))
        chosen = rng.choice(n_items, size=k, replace=False, p=p)
        users_l.append(np.full(k, u, dtype=np.int64))
        items_l.append(chosen.astype(np.int64))
    users = np.concatenate(users_l)
    items = np.concatenate(items_l)

    # 5. features
    feats: dict[str, np.ndarray] = {}
    for m, d in modalities.items():
        centroids = rng.normal(size=(n_clusters, int(d)))
        x = centroids[item_cluster] + feature_noise * rng.normal(size=(n_items, int(d)))
        feats[m] = x.astype(np.float32)

    raw = RawInteractions(
        users=users,
        items=items,
        n_users=n_users,
        n_items=n_items,
        user_tokens=[f"u{k}" for k in range(n_users)],
        item_tokens=[f"i{k}" for k in range(n_items)],
        item_features=feats,
        source=f"synthetic-{n_users}x{n_items}",
    )
    truth = SyntheticTruth(
        item_cluster=item_cluster, user_cluster=user_cluster, user_pref=pref, item_popularity=pop
    )
    return raw, truth


def make_synthetic(
    n_users: int = 300,
    n_items: int = 400,
    n_clusters: int = 8,
    avg_degree: float = 30,
    modalities: Mapping[str, int] | None = None,
    seed: int = 0,
    split: str = "recbole",
    **kwargs: float,
) -> InteractionData:
    """Synthetic ``InteractionData`` named ``synthetic-<n_users>x<n_items>``, fully determined by ``seed``.

    ``modalities`` maps a modality name to its feature dimension (default ``{"text": 64, "image": 32}``; ``{}``
    for none). ``split``: ``"recbole"`` (8:1:1 RecBole rule) or ``"mmrec"``; the split is seeded with ``seed``
    too. Further keyword arguments (``pop_exponent``, ``main_weight``, ``spread_alpha``, ``degree_sigma``,
    ``min_degree``, ``feature_noise``) go to :func:`make_synthetic_raw`.
    """
    if split not in ("recbole", "mmrec"):
        raise ConfigError(f"split must be 'recbole' or 'mmrec', got {split!r}")
    raw, _ = make_synthetic_raw(n_users, n_items, n_clusters, avg_degree, modalities, seed, **kwargs)  # type: ignore[arg-type]
    name = f"synthetic-{n_users}x{n_items}"
    if split == "recbole":
        return split_recbole(raw, seed=seed, name=name)
    return split_mmrec(raw, seed=seed, name=name)

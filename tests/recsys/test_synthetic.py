"""Synthetic data generator (spec 8.1)."""

from __future__ import annotations

import numpy as np

from polymodal.recsys.synthetic import make_synthetic, make_synthetic_raw


def test_default_shape_and_validity() -> None:
    data = make_synthetic()
    assert data.name == "synthetic-300x400"
    assert (data.n_users, data.n_items) == (300, 400)
    data.validate()
    n = len(data.train) + len(data.valid) + len(data.test)
    assert 0.7 * 300 * 30 < n < 1.3 * 300 * 30
    assert data.item_features["text"].shape == (400, 64) and data.item_features["text"].dtype == np.float32
    assert data.item_features["image"].shape == (400, 32)
    deg = np.bincount(np.concatenate([data.train, data.valid, data.test])[:, 0], minlength=300)
    assert deg.min() >= 5 and deg.std() > 3  # degrees vary
    assert (np.bincount(data.test[:, 0], minlength=300) >= 1).all()  # every user (>= 5 rows) has a test item


def test_deterministic_by_seed() -> None:
    a, b, c = make_synthetic(seed=3), make_synthetic(seed=3), make_synthetic(seed=4)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    np.testing.assert_array_equal(a.item_features["text"], b.item_features["text"])
    assert not np.array_equal(a.item_features["text"], c.item_features["text"])
    assert len(a.train) != len(c.train) or not np.array_equal(a.train, c.train)


def test_item_features_cluster() -> None:
    raw, truth = make_synthetic_raw(seed=0)
    c = truth.item_cluster
    same = c[:, None] == c[None, :]
    off_diag = ~np.eye(len(c), dtype=bool)
    for m, x in raw.item_features.items():
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        cos = xn @ xn.T
        within = cos[same & off_diag].mean()
        between = cos[~same].mean()
        assert within > between + 0.3, (m, within, between)


def test_structure_is_learnable() -> None:
    """Item-kNN on train beats popularity, which beats random, on test Recall@20 (a graph CF model will too)."""
    data = make_synthetic(seed=0)
    x = data.train_csr.toarray()
    t = data.test_csr.toarray()

    def recall(scores: np.ndarray) -> float:
        s = np.where(x > 0, -np.inf, scores)
        top = np.argsort(-s, axis=1)[:, :20]
        hits = np.take_along_axis(t, top, 1).sum(1)
        m = t.sum(1) > 0
        return float((hits[m] / t.sum(1)[m]).mean())

    rnd = recall(np.random.default_rng(0).random(x.shape))
    pop = recall(np.broadcast_to(x.sum(0), x.shape).astype(float))
    norm = np.linalg.norm(x, axis=0) + 1e-9
    sim = (x.T @ x) / np.outer(norm, norm)
    np.fill_diagonal(sim, 0)
    knn = recall(x @ sim)
    assert knn > 1.5 * pop and pop > 2 * rnd, (rnd, pop, knn)


def test_mmrec_split_and_no_modalities() -> None:
    data = make_synthetic(
        n_users=50, n_items=80, n_clusters=4, avg_degree=12, modalities={}, seed=1, split="mmrec"
    )
    data.validate()
    assert data.item_features == {}
    assert (np.bincount(data.valid[:, 0], minlength=50) >= 1).sum() > 40

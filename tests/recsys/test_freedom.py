"""FREEDOM checks of spec 5.4: kNN graph, S mix, degree-sensitive pruning, eval graph, loss, SG-URInit target."""

from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from polymodal.core.errors import ConfigError
from polymodal.recsys.models import FREEDOM
from polymodal.recsys.models.freedom import knn_graph
from polymodal.recsys.models.user_init import user_init_targets, xavier_uniform_std
from polymodal.recsys.synthetic import make_synthetic

# 4 items in 2-d: cos(0,1)=.894, cos(1,2)=.447, cos(0,2)=cos(2,3)=0, cos(0,3)=-1, cos(1,3)=-.894
IMG = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
TXT = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
# 3 users x 4 items; item 3 is cold (no training edge); degrees d_u = [2, 2, 1], d_i = [3, 1, 1, 0]
U = np.array([0, 0, 1, 1, 2])
ITEMS = np.array([0, 1, 0, 2, 0])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _dense(t):
    return t.to_dense().numpy().astype(np.float64)


def _knn_ref(x, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    a = np.zeros_like(sim)
    for i, row in enumerate(sim):
        a[i, np.argsort(-row, kind="stable")[:k]] = 1.0
    r = a.sum(1) + 1e-7
    return a / np.sqrt(np.outer(r, r))


def _adj_ref(users, items, n_users, n_items):
    a = np.zeros((n_users + n_items,) * 2)
    a[users, n_users + items] = a[n_users + items, users] = 1.0
    d = a.sum(1)
    inv = np.where(d > 0, 1 / np.sqrt(np.maximum(d, 1e-12)), 0.0)
    return inv[:, None] * a * inv[None, :]


def _model(**kw):
    kw = {"embedding_size": 5, "feat_embed_dim": 5, "knn_k": 2, **kw}
    return FREEDOM(3, 4, U, ITEMS, {"image": IMG, "text": TXT}, **kw)


def test_knn_graph_by_hand():
    s = knn_graph(IMG, 2).toarray()
    binary = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=float)
    np.testing.assert_array_equal(s > 0, binary > 0)
    assert ((s > 0).sum(1) == 2).all()  # exactly k per row, self included
    np.testing.assert_allclose(s[s > 0], 1.0 / (2 + 1e-7), rtol=1e-6)  # r_i^-1/2 r_j^-1/2, r = k + 1e-7
    assert not np.allclose(s, s.T)  # 2 -> 1 but not 1 -> 2: S is not symmetric, hence no propagate()
    assert (knn_graph(IMG, 10).toarray() > 0).all()  # k clipped to |I|
    big = np.random.default_rng(0).normal(size=(50, 6))
    np.testing.assert_allclose(knn_graph(big, 7, chunk_rows=8).toarray(), _knn_ref(big, 7), rtol=1e-6)
    z = knn_graph(np.vstack([IMG, np.zeros((1, 2))]), 2).toarray()  # a zero feature row: no NaN
    assert np.isfinite(z).all() and ((z > 0).sum(1) == 2).all()


def test_item_graph_mix_and_single_modality():
    m = _model()
    np.testing.assert_allclose(_dense(m.item_graph), 0.1 * _knn_ref(IMG, 2) + 0.9 * _knn_ref(TXT, 2), atol=1e-7)
    np.testing.assert_allclose(_dense(m.item_graph_t), _dense(m.item_graph).T)
    one = FREEDOM(3, 4, U, ITEMS, {"text": TXT}, knn_k=2)
    np.testing.assert_allclose(_dense(one.item_graph), _knn_ref(TXT, 2), atol=1e-7)
    assert _model(mm_image_weight=0.3).modality_weights == pytest.approx({"image": 0.3, "text": 0.7})
    with pytest.raises(ConfigError):
        FREEDOM(3, 4, U, ITEMS, {"a": IMG, "b": TXT})
    assert FREEDOM(3, 4, U, ITEMS, {"a": IMG, "b": TXT}, modality_weights={"a": 0.5, "b": 0.5}).modalities == ("a", "b")


def test_forward_and_loss_match_hand_computation():
    m = _model(dropout=0.0, reg_weight=0.5)
    users, pos, neg = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 2, 0, 0]), torch.tensor([3, 1, 3, 2])
    parts = m.calculate_loss(users, pos, neg)
    a = _adj_ref(U, ITEMS, 3, 4)
    s = 0.1 * _knn_ref(IMG, 2) + 0.9 * _knn_ref(TXT, 2)
    e_u, e_i = _np(m.user_embedding.weight), _np(m.item_id_embedding.weight)
    x0 = np.vstack([e_u, e_i])
    mean = (x0 + a @ x0 + a @ a @ x0) / 3
    uu, ii = mean[:3], mean[3:] + s @ e_i
    u_all, i_all = m.final_embeddings()
    np.testing.assert_allclose(_np(u_all), uu, atol=1e-6)
    np.testing.assert_allclose(_np(i_all), ii, atol=1e-6)

    def bpr(u, p, n):
        return np.mean(np.log1p(np.exp(-((u * p).sum(1) - (u * n).sum(1)))))

    u = uu[[0, 1, 2, 0]]
    assert float(parts["bpr"]) == pytest.approx(bpr(u, ii[[1, 2, 0, 0]], ii[[3, 1, 3, 2]]), rel=1e-5)
    mm = 0.0
    for name, x in (("image", IMG), ("text", TXT)):
        w, b = _np(m.projections[name].weight), _np(m.projections[name].bias)
        t = x @ w.T + b
        mm += bpr(u, t[[1, 2, 0, 0]], t[[3, 1, 3, 2]])
    assert float(parts["modality_bpr"]) == pytest.approx(0.5 * mm, rel=1e-5)
    assert set(_model(dropout=0.0, reg_weight=0.0).calculate_loss(users, pos, neg)) == {"bpr"}


def test_cold_item_gets_representation_through_knn_neighbours():
    m = _model()
    m.eval()
    _, items = m.final_embeddings()
    e_i = _np(m.item_id_embedding.weight)
    s = _dense(m.item_graph)
    # item 3 has no edge: LightGCN keeps only its layer-0 share, h comes from its kNN rows (items 2, 3)
    np.testing.assert_allclose(_np(items)[3], e_i[3] / 3 + s[3] @ e_i, atol=1e-6)
    assert np.isfinite(m.edge_weights).all() and np.isfinite(_np(items)).all()


def test_item_graph_gradient_uses_transpose():
    m = _model(dropout=0.0)
    r = torch.randn(4, 5)
    (m.item_graph_embeddings() * r).sum().backward()
    np.testing.assert_allclose(_np(m.item_id_embedding.weight.grad), _dense(m.item_graph).T @ _np(r), atol=1e-6)


def test_pruning_count_normalisation_and_eval_graph():
    data = make_synthetic(n_users=60, n_items=80, seed=1)
    m = FREEDOM(data.n_users, data.n_items, data.train[:, 0], data.train[:, 1], data.item_features, dropout=0.8)
    n_edges = len(np.unique(data.train, axis=0))
    m.pre_epoch(np.random.default_rng(0))
    kept = _dense(m.masked_adj)
    assert (kept > 0).sum() == 2 * int(np.floor(0.2 * n_edges))  # each kept edge appears twice (u-i and i-u)
    d = (kept > 0).sum(1)
    rows, cols = np.nonzero(kept)
    np.testing.assert_allclose(kept[rows, cols], 1 / np.sqrt(d[rows] * d[cols]), rtol=1e-6)
    first = kept.copy()
    m.pre_epoch(np.random.default_rng(1))
    assert not np.array_equal(first, _dense(m.masked_adj))  # re-drawn each epoch
    m.train()
    train_u, train_i = m.final_embeddings()
    ref_u, ref_i = m.forward_graph(m.masked_adj)
    assert torch.equal(train_u, ref_u) and torch.equal(train_i, ref_i)
    m.eval()
    eval_u, eval_i = m.final_embeddings()
    full_u, full_i = m.forward_graph(m.norm_adj)
    assert torch.equal(eval_u, full_u) and torch.equal(eval_i, full_i)
    assert not torch.allclose(eval_u, train_u)
    with pytest.raises(RuntimeError):
        FREEDOM(3, 4, U, ITEMS, {"image": IMG}, knn_k=2).calculate_loss(*(torch.tensor([0]),) * 3)


def test_pruning_samples_proportional_to_inverse_sqrt_degree():
    # 6 edges with weights 1/sqrt(d_u d_i) in {.33, .41, .58, .71}
    users, items = np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 2, 0, 3, 0])
    feats = {"image": np.random.default_rng(0).normal(size=(4, 3))}
    w = 1 / np.sqrt(np.array([3 * 3, 3 * 1, 3 * 1, 2 * 3, 2 * 1, 1 * 3], dtype=float))
    p = w / w.sum()
    rng = np.random.default_rng(2024)
    n_draws = 6000

    one = FREEDOM(3, 4, users, items, feats, knn_k=2, dropout=0.8)  # keeps floor(0.2 * 6) = 1 edge
    np.testing.assert_allclose(one.edge_weights, w)
    assert one.n_keep == 1
    counts = np.bincount([one.sample_edges(rng)[0] for _ in range(n_draws)], minlength=6)
    assert chisquare(counts, n_draws * p).pvalue > 1e-3
    assert chisquare(counts).pvalue < 1e-6  # the test has the power to reject uniform sampling

    two = FREEDOM(3, 4, users, items, feats, knn_k=2, dropout=0.6)  # keeps floor(0.4 * 6) = 2 edges
    assert two.n_keep == 2
    pairs = list(combinations(range(6), 2))
    expected = np.array([p[a] * p[b] / (1 - p[a]) + p[b] * p[a] / (1 - p[b]) for a, b in pairs])  # successive
    index = {pair: k for k, pair in enumerate(pairs)}
    counts = np.bincount([index[tuple(two.sample_edges(rng))] for _ in range(n_draws)], minlength=len(pairs))
    assert chisquare(counts, n_draws * expected).pvalue > 1e-3


def test_user_init_target():
    m = _model()
    (t,) = user_init_targets(m)
    assert t.name == "user_embedding" and t.param is m.user_embedding.weight and t.width == 5
    assert t.init_std == pytest.approx(xavier_uniform_std(3, 5))
    h = {"image": torch.randn(3, 2), "text": torch.randn(3, 3)}
    expected = (m.projections["image"](h["image"]) + m.projections["text"](h["text"])) / 2
    assert torch.allclose(t.projection(h), expected, atol=1e-6)
    (wide,) = user_init_targets(_model(feat_embed_dim=7))
    assert wide.projection is None  # T_m does not reach the user width: the initialiser falls back to PCA



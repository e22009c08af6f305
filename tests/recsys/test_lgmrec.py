"""LGMRec (MMRec computation): CGE/MGE propagation, hypergraph pieces, loss parts, SG-URInit target,
training."""


import numpy as np
import pytest
import torch

from polymodal.recsys.models import LGMRec
from polymodal.recsys.models.user_init import user_init_targets, xavier_uniform_std

# 3 users x 4 items; item 3 has no training edge (cold)
U = np.array([0, 0, 1, 2, 2])
ITEMS = np.array([0, 1, 1, 0, 2])
N_USERS, N_ITEMS = 3, 4
D = 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"image": rng.normal(size=(N_ITEMS, 5)).astype(np.float32),
            "text": rng.normal(size=(N_ITEMS, 3)).astype(np.float32)}


def _model(features=None, **kw):
    torch.manual_seed(0)
    kw.setdefault("embedding_size", D)
    return LGMRec(N_USERS, N_ITEMS, _features() if features is None else features, U, ITEMS, **kw)


def _r():
    r = np.zeros((N_USERS, N_ITEMS))
    r[U, ITEMS] = 1
    return r


def _a_hat():
    r = _r()
    a = np.block([[np.zeros((N_USERS, N_USERS)), r], [r.T, np.zeros((N_ITEMS, N_ITEMS))]])
    d = a.sum(1)
    inv = np.divide(1.0, np.sqrt(d), out=np.zeros_like(d), where=d > 0)
    return inv[:, None] * a * inv[None, :]


def _np(t):
    return t.detach().numpy().astype(np.float64)


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def test_cge_is_lightgcn_layer_mean_over_dense_reference():
    m = _model()
    a = _a_hat()
    x0 = np.vstack([_np(m.user_embedding.weight), _np(m.item_id_embedding.weight)])
    want = (x0 + a @ x0 + a @ a @ x0) / 3
    np.testing.assert_allclose(_np(m.cge()), want, atol=1e-6)
    np.testing.assert_allclose(_np(_model(cf_model="mf").cge()), x0, atol=0)


def test_mge_user_rows_are_item_means_then_two_propagations():
    m = _model()
    a, r = _a_hat(), _r()
    for mod, x in _features().items():
        item = x.astype(np.float64) @ _np(m.item_trs[mod])
        deg = r.sum(1, keepdims=True)
        user = (r @ item) / deg
        want = a @ a @ np.vstack([user, item])
        np.testing.assert_allclose(_np(m.mge(mod)), want, atol=1e-5)
    assert torch.all(m.mge("text")[N_USERS + 3] == 0)  # cold item: no neighbours


def test_hyperedge_shapes_logits_and_eval_relaxation():
    m = _model(hyper_num=4).eval()
    r = _r()
    for mod, x in _features().items():
        li, lu = m.hyperedge_logits(mod)
        assert li.shape == (N_ITEMS, 4) and lu.shape == (N_USERS, 4)
        np.testing.assert_allclose(_np(li), x @ _np(m.hyper[mod]), atol=1e-5)
        np.testing.assert_allclose(_np(lu), r @ x @ _np(m.hyper[mod]), atol=1e-5)  # summed, not averaged
        h_i, h_u = m.hypergraph_dependencies(mod)
        np.testing.assert_allclose(_np(h_i), _np(torch.softmax(li / 0.2, dim=1)), atol=1e-6)
        np.testing.assert_allclose(_np(h_u.sum(1)), 1.0, atol=1e-6)
        assert torch.equal(h_i, m.hypergraph_dependencies(mod)[0])  # deterministic at evaluation


def test_training_relaxation_is_gumbel_with_keep_rate_dropout():
    m = _model(keep_rate=0.5).train()
    li, lu = m.hyperedge_logits("image")
    torch.manual_seed(3)
    h_i, h_u = m.hypergraph_dependencies("image")
    torch.manual_seed(3)
    g_i, g_u = m._relax(li), m._relax(lu)  # the same Gumbel draws, before dropout
    np.testing.assert_allclose(_np(g_i.sum(1)), 1.0, atol=1e-6)
    assert not torch.allclose(g_i, torch.softmax(li / 0.2, dim=1))  # noise was added
    for h, g in ((h_i, g_i), (h_u, g_u)):
        kept = h != 0
        assert torch.allclose(h[kept], 2.0 * g[kept])  # inverted dropout: kept entries scaled by 1/keep_rate
    assert (h_i == 0).any() or (h_u == 0).any()
    torch.manual_seed(4)
    assert not torch.equal(m.hypergraph_dependencies("image")[0], h_i)  # redrawn on every forward


@pytest.mark.parametrize("n_hyper_layer", [1, 2])
def test_hgnn_matches_numpy(n_hyper_layer):
    m = _model(n_hyper_layer=n_hyper_layer)
    rng = np.random.default_rng(1)
    h_i, h_u, e = rng.random((N_ITEMS, 4)), rng.random((N_USERS, 4)), rng.normal(size=(N_ITEMS, D))
    ei = e
    for _ in range(n_hyper_layer):
        lat = h_i.T @ ei
        ei, eu = h_i @ lat, h_u @ lat
    got_u, got_i = m.hgnn(*(torch.tensor(v, dtype=torch.float32) for v in (h_i, h_u, e)))
    np.testing.assert_allclose(_np(got_u), eu, rtol=1e-5)
    np.testing.assert_allclose(_np(got_i), ei, rtol=1e-5)


def test_final_embedding_composition():
    m = _model(alpha=0.3).eval()
    cge = _np(m.cge())
    local = cge + sum(_normalize(_np(m.mge(mod))) for mod in m.modalities)
    ghe = 0
    for mod in m.modalities:
        eu, ei = m.hgnn(*m.hypergraph_dependencies(mod), m.cge()[N_USERS:])
        ghe = ghe + np.vstack([_np(eu), _np(ei)])
    want = local + 0.3 * _normalize(ghe)
    u, i = m.final_embeddings()
    np.testing.assert_allclose(np.vstack([_np(u), _np(i)]), want, atol=1e-5)


def test_loss_parts_match_mmrec_formulas():
    m = _model(cl_weight=0.5, reg_weight=0.1).eval()  # eval: no noise, so the pieces can be recomputed
    users, pos, neg = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 1]), torch.tensor([3, 3, 1, 2])
    parts = m.calculate_loss(users, pos, neg)
    assert set(parts) == {"bpr", "cl", "reg"} and all(torch.isfinite(v) for v in parts.values())
    u_all, i_all, hyper = m.forward_all()
    u, ip, ineg = _np(u_all[users]), _np(i_all[pos]), _np(i_all[neg])
    diff = (u * ip).sum(1) - (u * ineg).sum(1)
    assert float(parts["bpr"]) == pytest.approx(float(np.mean(np.log1p(np.exp(-diff)))), rel=1e-5)
    reg = (np.linalg.norm(u) + np.linalg.norm(ip) + np.linalg.norm(ineg)) / 4
    assert float(parts["reg"]) == pytest.approx(0.1 * reg, rel=1e-5)

    def triple(e1, e2, all_e, tau=0.2):  # MMRec ssl_triple_loss, written out
        n1, n2, na = _normalize(e1), _normalize(e2), _normalize(all_e)
        pos_s = np.exp((n1 * n2).sum(1) / tau)
        ttl = np.exp(n1 @ na.T / tau).sum(1)
        return -np.log(pos_s / ttl).sum()

    (uv, iv), (ut, it) = [tuple(_np(t) for t in hyper[mod]) for mod in ("image", "text")]
    hcl = triple(uv[users], ut[users], ut) + triple(iv[pos], it[pos], it)
    assert float(parts["cl"]) == pytest.approx(0.5 * hcl, rel=1e-5)


def test_training_randomness_comes_from_torch_global_generator():
    m = _model().train()
    b = (torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 3, 1]))
    torch.manual_seed(7)
    a = m.calculate_loss(*b)["cl"]
    torch.manual_seed(7)
    assert torch.equal(a, m.calculate_loss(*b)["cl"])
    torch.manual_seed(8)
    assert not torch.equal(a, m.calculate_loss(*b)["cl"])


def test_single_modality_has_no_contrast_term():
    m = _model(features={"text": _features()["text"]})
    parts = m.calculate_loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))
    assert set(parts) == {"bpr", "reg"} and all(torch.isfinite(v) for v in parts.values())


def test_user_init_target_uses_the_models_modality_projections():
    m = _model()
    (t,) = user_init_targets(m)
    assert t.name == "user_embedding" and t.param is m.user_embedding.weight and t.width == D
    assert t.init_std == pytest.approx(xavier_uniform_std(N_USERS, D))
    h = {"image": torch.randn(N_USERS, 5), "text": torch.randn(N_USERS, 3)}
    with torch.no_grad():
        got = t.projection(h)
        want = (h["image"] @ m.item_trs["image"] + h["text"] @ m.item_trs["text"]) / 2
        assert torch.allclose(got, want)
        m.item_trs["text"].mul_(3.0)
        assert not torch.allclose(t.projection(h), got)
    # a user given the mean of its items' raw features sits at its (pre-propagation) MGE row, per modality
    x = torch.as_tensor(_features()["image"])
    r = torch.as_tensor(_r(), dtype=torch.float32)
    with torch.no_grad():
        mean_item = (r @ x) / r.sum(1, keepdim=True)
        mge_user = m.user_sum(x @ m.item_trs["image"]) * m.user_inv_degree
        assert torch.allclose(mean_item @ m.item_trs["image"], mge_user, atol=1e-5)


def test_cold_items_get_finite_scores_and_eval_is_deterministic():
    m = _model().eval()
    s1 = m.full_sort_scores(torch.arange(N_USERS))
    m.train()
    m.eval()  # drops the cache
    assert torch.isfinite(s1).all() and torch.equal(s1, m.full_sort_scores(torch.arange(N_USERS)))



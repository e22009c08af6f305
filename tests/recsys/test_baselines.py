"""LightGCN, BPR-MF, SGL, SimGCL, XSimGCL checks of spec 4.4."""

import numpy as np
import pytest
import torch

from polymodal.recsys.models import BPRMF, SGL, LightGCN, SimGCL, XSimGCL
from polymodal.recsys.models.base import emb_loss
from polymodal.recsys.models.graph import normalized_adjacency
from polymodal.recsys.models.simgcl import perturb

U = np.array([0, 0, 1, 2, 2, 3])
ITEMS = np.array([0, 1, 1, 0, 2, 2])


def _adj(n_users=4, n_items=3):
    return normalized_adjacency(U, ITEMS, n_users, n_items)


def test_lightgcn_propagation_matches_dense_reference():
    # 2 users x 2 items = a 4-node graph: u0-i0, u0-i1, u1-i1
    adj = normalized_adjacency(np.array([0, 0, 1]), np.array([0, 1, 1]), 2, 2)
    a = np.zeros((4, 4))
    for u, i in [(0, 0), (0, 1), (1, 1)]:
        a[u, 2 + i] = a[2 + i, u] = 1
    d = a.sum(1)
    a_hat = a / np.sqrt(np.outer(d, d))
    m = LightGCN(2, 2, adj, embedding_size=3, n_layers=2)
    x0 = m.ego_embeddings().detach().numpy()
    layers = [x.detach().numpy() for x in m.layer_embeddings()]
    np.testing.assert_allclose(layers[1], a_hat @ x0, atol=1e-6)
    np.testing.assert_allclose(layers[2], a_hat @ a_hat @ x0, atol=1e-6)
    u, i = m.final_embeddings()
    mean = (x0 + a_hat @ x0 + a_hat @ a_hat @ x0) / 3
    np.testing.assert_allclose(np.vstack([u.detach(), i.detach()]), mean, atol=1e-6)


def test_zero_degree_rows_stay_zero():
    adj = normalized_adjacency(np.array([0]), np.array([0]), 2, 2).to_dense()
    assert torch.all(adj[1] == 0) and torch.all(adj[3] == 0)


def test_bprmf_is_lightgcn_without_layers():
    m = BPRMF(4, 3, embedding_size=4)
    u, i = m.final_embeddings()
    assert torch.equal(u, m.user_embedding.weight) and torch.equal(i, m.item_embedding.weight)
    assert m.propagations_per_step == 0


def test_emb_loss_definitions():
    a, b = torch.ones(2, 3), 2 * torch.ones(2, 3)
    assert float(emb_loss(a, b)) == pytest.approx((np.sqrt(6) + np.sqrt(24)) / 2)
    assert float(emb_loss(a, b, require_pow=True)) == pytest.approx((6 + 24) / 2 / 2)


def test_sgl_edge_dropout_count_and_redrawn_each_epoch():
    m = SGL(4, 3, _adj(), U, ITEMS, embedding_size=4, drop_ratio=0.34)
    rng = np.random.default_rng(0)
    kept = [m._edge_dropout(rng) for _ in range(6)]
    assert all(k[0].size == int(np.floor((1 - 0.34) * U.size)) for k in kept)
    assert len({tuple(zip(*k, strict=True)) for k in kept}) > 1
    m.pre_epoch(rng)
    first = [v[0].to_dense().clone() for v in m.views]
    m.pre_epoch(rng)
    assert any(not torch.equal(a, v[0].to_dense()) for a, v in zip(first, m.views, strict=True))
    assert m.views[0][0] is m.views[0][-1]  # ED: one subgraph for every layer


def test_sgl_rw_draws_a_subgraph_per_layer_and_nd_drops_nodes():
    m = SGL(4, 3, _adj(), U, ITEMS, embedding_size=4, n_layers=3, aug_type="RW", drop_ratio=0.5)
    view = m.sample_subgraph(np.random.default_rng(1))
    assert len({id(a) for a in view}) == 3
    nd = SGL(4, 3, _adj(), U, ITEMS, embedding_size=4, aug_type="ND", drop_ratio=0.5)
    users, items = nd._node_dropout(np.random.default_rng(3))
    assert len(np.unique(users)) <= 2 or len(np.unique(items)) <= 2


def test_sgl_uses_all_user_negatives():
    m = SGL(4, 3, _adj(), U, ITEMS, embedding_size=4, ssl_tau=1.0, ssl_weight=1.0, reg_weight=0.0)
    m.pre_epoch(np.random.default_rng(0))
    users, pos, neg = torch.tensor([0, 0]), torch.tensor([0, 1]), torch.tensor([2, 2])
    got = m.calculate_loss(users, pos, neg)["ssl"]
    u1, i1 = m.view_embeddings(m.views[0])
    u2, i2 = m.view_embeddings(m.views[1])
    n = torch.nn.functional.normalize

    def full_denominator(a, c, idx):  # candidates = every row of the table
        logits = n(a, dim=-1) @ n(c, dim=-1).T
        return sum(torch.logsumexp(logits[b], 0) - logits[b, idx[b]] for b in range(len(idx)))

    want = full_denominator(u1[users], u2, users) + full_denominator(i1[pos], i2, pos)
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert u2.shape[0] == 4  # |U| terms in each denominator


def test_simgcl_noise_norm_eps_and_sign():
    torch.manual_seed(0)
    e = torch.randn(50, 8)
    delta = perturb(e, 0.1) - e
    np.testing.assert_allclose(delta.norm(dim=1).numpy(), 0.1, rtol=1e-5)
    assert torch.all(torch.sign(delta) * torch.sign(e) >= 0)


@pytest.mark.parametrize("cls", [SimGCL, XSimGCL])
def test_eps_zero_equals_lightgcn_mean_over_layers_1_to_l(cls):
    torch.manual_seed(0)
    m = cls(4, 3, _adj(), embedding_size=4, n_layers=2, eps=0.0)
    lg = LightGCN(4, 3, _adj(), embedding_size=4, n_layers=2, layer_mean_from=1)
    lg.load_state_dict(m.state_dict())
    for a, b in zip(m.final_embeddings(), lg.final_embeddings(), strict=True):
        assert torch.allclose(a, b)
    if cls is SimGCL:
        u, i = m.readout(m.perturbed_layers())
        assert torch.allclose(u, lg.final_embeddings()[0])
    users = torch.tensor([0, 1])
    assert torch.allclose(m.full_sort_scores(users), lg.full_sort_scores(users))


def test_simgcl_and_xsimgcl_exclude_layer_zero_from_mean():
    torch.manual_seed(0)
    m = SimGCL(4, 3, _adj(), embedding_size=4, n_layers=2)
    layers = m.layer_embeddings()
    u, _ = m.final_embeddings()
    assert torch.allclose(u, ((layers[1] + layers[2]) / 2)[:4])


def test_xsimgcl_deduplicates_batch_ids():
    torch.manual_seed(0)
    m = XSimGCL(4, 3, _adj(), embedding_size=4, n_layers=2, eps=0.0, cl_weight=1.0)
    a = m.calculate_loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 2]))["cl"]
    b = m.calculate_loss(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]), torch.tensor([2, 2, 2]))["cl"]
    assert float(a) == pytest.approx(float(b), rel=1e-6)


def test_simgcl_keeps_duplicates_and_sums():
    torch.manual_seed(0)
    m = SimGCL(4, 3, _adj(), embedding_size=4, n_layers=2, eps=0.0, cl_weight=1.0)
    one = m.calculate_loss(torch.tensor([0]), torch.tensor([0]), torch.tensor([2]))["cl"]
    two = m.calculate_loss(torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([2, 2]))["cl"]
    # eps = 0: both views equal, so each single-row term is 0; with the row duplicated each of the two
    # rows has its positive twice in the denominator (log 2), for users and items: 4·log 2 in all
    assert float(one) == pytest.approx(0.0, abs=1e-6)
    assert float(two) == pytest.approx(4 * np.log(2), rel=1e-5)


def test_propagations_per_step_declared():
    sgl = SGL(4, 3, _adj(), U, ITEMS, embedding_size=4)
    assert sgl.propagations_per_step == 3 and SimGCL(4, 3, _adj()).propagations_per_step == 3
    assert XSimGCL(4, 3, _adj()).propagations_per_step == 1 and LightGCN(4, 3, _adj()).propagations_per_step == 1
    assert BPRMF(4, 3).propagations_per_step == 0


def test_symmetric_propagation_gradient_matches_dense():
    from polymodal.recsys.models.graph import propagate

    adj = _adj()
    x = torch.randn(7, 3, requires_grad=True)
    w = torch.randn(7, 3)
    (propagate(adj, propagate(adj, x)) * w).sum().backward()
    dense = adj.to_dense()
    x2 = x.detach().clone().requires_grad_(True)
    ((dense @ (dense @ x2)) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)

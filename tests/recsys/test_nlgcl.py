"""NLGCL loss (spec 3.2 / 3.8 checks) on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from polymodal.recsys.models import NLGCL, LightGCN
from polymodal.recsys.models import graph as graph_mod
from polymodal.recsys.models.graph import normalized_adjacency

# 3 users x 3 items; edges u0-i0, u0-i1, u1-i1, u2-i2
EDGES_U = np.array([0, 0, 1, 2])
EDGES_I = np.array([0, 1, 1, 2])


def _cos(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _infonce_by_hand(anchors, candidates, tau):
    """Σ_b [-cos(a_b, c_b)/τ + log Σ_k exp(cos(a_b, c_k)/τ)] with explicit loops."""
    total = 0.0
    for b, a in enumerate(anchors):
        sims = [_cos(a, c) / tau for c in candidates]
        total += -sims[b] + math.log(sum(math.exp(s) for s in sims))
    return total


def _model(n_layers=1, **kw):
    torch.manual_seed(0)
    adj = normalized_adjacency(EDGES_U, EDGES_I, 3, 3)
    m = NLGCL(3, 3, adj, embedding_size=2, n_layers=n_layers, **kw)
    with torch.no_grad():
        m.user_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.5, 1.0], [-1.0, 0.5]]))
        m.item_embedding.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.0], [-0.5, -1.0]]))
    return m


def _layers_by_hand():
    """Layer 0 and layer 1 with Â computed by hand: degrees u0=2,u1=1,u2=1,i0=1,i1=2,i2=1."""
    u0 = np.array([[1.0, 0.0], [0.5, 1.0], [-1.0, 0.5]])
    i0 = np.array([[0.0, 1.0], [1.0, 1.0], [-0.5, -1.0]])
    du, di = [2, 1, 1], [1, 2, 1]
    u1 = np.zeros_like(u0)
    i1 = np.zeros_like(i0)
    for u, i in zip(EDGES_U, EDGES_I, strict=True):
        w = 1.0 / math.sqrt(du[u] * di[i])
        u1[u] += w * i0[i]
        i1[i] += w * u0[u]
    return (u0, i0), (u1, i1)


def test_layer_one_matches_hand_propagation():
    m = _model()
    layers = m.layer_embeddings()
    (u0, i0), (u1, i1) = _layers_by_hand()
    got_u1, got_i1 = m.split(layers[1])
    np.testing.assert_allclose(got_u1.detach().numpy(), u1, atol=1e-6)
    np.testing.assert_allclose(got_i1.detach().numpy(), i1, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.6, 0.25])
def test_cl_loss_hand_computed_l1_b2_tau1(alpha):
    m = _model(cl_temp=1.0, alpha=alpha)
    users, pos = torch.tensor([0, 2]), torch.tensor([1, 2])
    got = float(m.neighbour_layer_loss(m.layer_embeddings(), users, pos))
    (u0, i0), (u1, i1) = _layers_by_hand()
    # user term: anchor = positive item at layer 1, candidates = batch users at layer 0
    user_term = _infonce_by_hand([i1[1], i1[2]], [u0[0], u0[2]], 1.0)
    # item term: anchor = user at layer 1, candidates = batch positive items at layer 0
    item_term = _infonce_by_hand([u1[0], u1[2]], [i0[1], i0[2]], 1.0)
    assert user_term != pytest.approx(item_term)  # the case distinguishes the two weights
    assert got == pytest.approx(alpha * user_term + (1 - alpha) * item_term, rel=1e-6)


def test_sum_vs_mean_reduction_factor_b_and_matching_weights():
    users, pos, neg = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 1]), torch.tensor([2, 2, 0, 2])
    s = _model(n_layers=2, cl_reduction="sum", cl_reg=1e-2)
    mn = _model(n_layers=2, cl_reduction="mean", cl_reg=1e-2 * 4)
    layers = s.layer_embeddings()
    l_sum = float(s.neighbour_layer_loss(layers, users, pos))
    l_mean = float(mn.neighbour_layer_loss(layers, users, pos))
    assert l_sum == pytest.approx(4 * l_mean, rel=1e-6)
    assert float(s.calculate_loss(users, pos, neg)["cl"]) == pytest.approx(
        float(mn.calculate_loss(users, pos, neg)["cl"]), rel=1e-6)


def test_direction_matters_swapping_layers_changes_value():
    m = _model(cl_temp=1.0)
    users, pos = torch.tensor([0, 2]), torch.tensor([1, 2])
    layers = m.layer_embeddings()
    forward = float(m.neighbour_layer_loss(layers, users, pos))
    swapped = float(m.neighbour_layer_loss([layers[1], layers[0]], users, pos))
    assert forward != pytest.approx(swapped, rel=1e-4)


def test_l1_pair_included_and_duplicates_stay_in_denominator():
    m = _model(cl_temp=1.0, alpha=1.0)
    layers = m.layer_embeddings()
    assert float(m.neighbour_layer_loss(layers, torch.tensor([0, 2]), torch.tensor([1, 2]))) != 0.0
    # user 0 twice: the duplicated candidate counts twice in each log-sum-exp
    users, pos = torch.tensor([0, 0, 2]), torch.tensor([0, 1, 2])
    got = float(m.neighbour_layer_loss(layers, users, pos))
    (u0, _), (_, i1) = _layers_by_hand()
    want = _infonce_by_hand([i1[0], i1[1], i1[2]], [u0[0], u0[0], u0[2]], 1.0)
    assert got == pytest.approx(want, rel=1e-6)


def test_last_only_equals_last_pair_term():
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2])
    full = _model(n_layers=2, cl_temp=0.5)
    last = _model(n_layers=2, cl_temp=0.5, cl_layers="last_only")
    layers = full.layer_embeddings()
    only_pair_2 = float(full.neighbour_layer_loss(layers, users, pos)) - float(
        full.neighbour_layer_loss(layers[:2], users, pos))
    assert float(last.neighbour_layer_loss(layers, users, pos)) == pytest.approx(only_pair_2, rel=1e-5)
    assert float(last.neighbour_layer_loss(layers, users, pos)) != pytest.approx(
        float(full.neighbour_layer_loss(layers, users, pos)), rel=1e-3)


def test_one_propagation_per_step(monkeypatch):
    calls = []
    real = torch.sparse.mm

    def counting(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(graph_mod.torch.sparse, "mm", counting)
    m = _model(n_layers=2)
    m.calculate_loss(torch.tensor([0, 1]), torch.tensor([1, 1]), torch.tensor([2, 0]))
    assert len(calls) == 2  # one propagation = L sparse products
    assert m.propagations_per_step == 1


def test_cl_reg_zero_reproduces_lightgcn_loss_and_gradients():
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([1, 1, 2]), torch.tensor([2, 0, 0])
    n = _model(n_layers=2, cl_reg=0.0)
    adj = normalized_adjacency(EDGES_U, EDGES_I, 3, 3)
    lg = LightGCN(3, 3, adj, embedding_size=2, n_layers=2)
    lg.load_state_dict(n.state_dict())
    ln, ll = sum(n.calculate_loss(users, pos, neg).values()), sum(lg.calculate_loss(users, pos, neg).values())
    ln.backward()
    ll.backward()
    assert float(ln) == float(ll)
    for a, b in zip(n.parameters(), lg.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_bad_options_raise():
    adj = normalized_adjacency(EDGES_U, EDGES_I, 3, 3)
    with pytest.raises(ValueError, match="cl_reduction"):
        NLGCL(3, 3, adj, cl_reduction="avg")
    with pytest.raises(ValueError, match="cl_layers"):
        NLGCL(3, 3, adj, cl_layers="first")
    with pytest.raises(ValueError, match="n_layers"):
        NLGCL(3, 3, adj, n_layers=0)

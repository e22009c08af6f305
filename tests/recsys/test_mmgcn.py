"""MMGCN (MMRec computation): mean aggregation, one layer by hand, loss parts, SG-URInit targets, training."""


import numpy as np
import pytest
import torch

from polymodal.recsys.models import MMGCN
from polymodal.recsys.models.user_init import user_init_targets, xavier_uniform_std

# 3 users x 4 items; item 3 has no training edge (cold)
U = np.array([0, 0, 1, 2, 2])
ITEMS = np.array([0, 1, 1, 0, 2])
N_USERS, N_ITEMS = 3, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(seed=0):
    rng = np.random.default_rng(seed)
    return {"text": rng.normal(size=(N_ITEMS, 5)).astype(np.float32),
            "image": rng.normal(size=(N_ITEMS, 3)).astype(np.float32)}


def _model(**kw):
    torch.manual_seed(0)
    kw.setdefault("embedding_size", 4)
    return MMGCN(N_USERS, N_ITEMS, _features(), U, ITEMS, **kw)


def _dense_adjacency():
    n = N_USERS + N_ITEMS
    a = np.zeros((n, n))
    for u, i in zip(U, ITEMS, strict=True):
        a[u, N_USERS + i] = a[N_USERS + i, u] = 1
    return a


def _lrelu(x):
    return np.where(x > 0, x, 0.01 * x)


def test_mean_aggregation_matches_dense_reference_and_isolated_rows_are_zero():
    m = _model()
    y = torch.randn(N_USERS + N_ITEMS, 6)
    a = _dense_adjacency()
    deg = a.sum(1)
    want = np.divide(a @ y.numpy(), deg[:, None], out=np.zeros((len(deg), 6)), where=deg[:, None] > 0)
    got = m.mean_aggregate(y).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(got[N_USERS + 3] == 0)  # the cold item receives no message


def test_mean_aggregation_gradient_matches_dense():
    m = _model()
    y = torch.randn(N_USERS + N_ITEMS, 3, requires_grad=True)
    w = torch.randn(N_USERS + N_ITEMS, 3)
    (m.mean_aggregate(y) * w).sum().backward()
    a = torch.as_tensor(_dense_adjacency(), dtype=torch.float32)
    deg = a.sum(1, keepdim=True).clamp(min=1)
    y2 = y.detach().clone().requires_grad_(True)
    ((a @ y2 / deg) * w).sum().backward()
    assert torch.allclose(y.grad, y2.grad, atol=1e-6)


@pytest.mark.parametrize("modality", ["image", "text"])
def test_one_layer_matches_numpy_reference(modality):
    m = _model(n_layers=1)
    g = m.gcn[modality]
    p = {k: v.detach().numpy().astype(np.float64) for k, v in g.named_parameters()}
    feats = _features()[modality].astype(np.float64)
    t = feats @ p["mlp.weight"].T + p["mlp.bias"] if g.mlp is not None else feats
    x = np.vstack([g.preference.detach().numpy(), t])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    a = _dense_adjacency()
    deg = np.maximum(a.sum(1, keepdims=True), 1)
    h = _lrelu((a @ (x @ p["conv.0"])) / deg)
    ids = m.id_embedding().detach().numpy()
    x_hat = _lrelu(x @ p["linear.0.weight"].T + p["linear.0.bias"]) + ids
    want = _lrelu(np.hstack([h, x_hat]) @ p["combine.0.weight"].T + p["combine.0.bias"])
    got = g(m.features(modality), m.id_embedding(), m.mean_aggregate).detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mmrec_structure_defaults():
    m = _model()
    assert m.n_layers == 3 and m.propagations_per_step == 6
    img, txt = m.gcn["image"], m.gcn["text"]
    assert img.mlp is not None and img.mlp.out_features == 256 and txt.mlp is None
    assert img.preference.shape == (N_USERS, 256) and txt.preference.shape == (N_USERS, 5)
    # concatenation (MMRec's concate = 'False' is truthy): G_1 sees [h ; x_hat]
    assert img.combine[0].in_features == 256 + 4 and img.combine[1].in_features == 8
    assert img.conv[0].shape == (256, 256) and img.conv[1].shape == (4, 4)
    summed = _model(concat=False)
    assert summed.gcn["image"].combine[0].in_features == 256


def test_final_representation_is_mean_over_modalities():
    m = _model()
    reps = m.modality_representations()
    u, i = m.final_embeddings()
    mean = (reps["image"] + reps["text"]) / 2
    assert torch.allclose(torch.cat([u, i]), mean)


def test_loss_parts_match_definitions():
    m = _model(reg_weight=0.1)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 3, 1])
    parts = m.calculate_loss(users, pos, neg)
    assert set(parts) == {"bpr", "reg"} and all(torch.isfinite(v) for v in parts.values())
    u, i = m.final_embeddings()
    diff = (u[users] * i[pos]).sum(-1) - (u[users] * i[neg]).sum(-1)
    assert float(parts["bpr"]) == pytest.approx(float(-torch.log(torch.sigmoid(diff)).mean()), rel=1e-6)
    ids = m.id_embedding()
    rep_users = users.repeat_interleave(2)
    rep_items = torch.stack([pos, neg], dim=1).reshape(-1) + N_USERS
    reg = (ids[rep_users] ** 2 + ids[rep_items] ** 2).mean() + (m.gcn["image"].preference ** 2).mean()
    assert float(parts["reg"]) == pytest.approx(0.1 * float(reg), rel=1e-6)
    assert "reg" not in _model(reg_weight=0.0).calculate_loss(users, pos, neg)


def test_user_init_targets_project_through_each_modalitys_own_transform():
    m = _model()
    targets = {t.name: t for t in user_init_targets(m)}
    assert set(targets) == {"gcn.image.preference", "gcn.text.preference"}
    assert targets["gcn.image.preference"].width == 256 and targets["gcn.text.preference"].width == 5
    assert targets["gcn.image.preference"].param is m.gcn["image"].preference
    assert targets["gcn.text.preference"].init_std == pytest.approx(xavier_uniform_std(N_USERS, 5))
    h = {"image": torch.randn(N_USERS, 3), "text": torch.randn(N_USERS, 5)}
    with torch.no_grad():
        got = targets["gcn.image.preference"].projection(h)
        assert torch.allclose(got, m.gcn["image"].mlp(h["image"]))
        m.gcn["image"].mlp.weight.mul_(2.0)  # the projection is the model's own (live) layer
        assert not torch.allclose(targets["gcn.image.preference"].projection(h), got)
    # MMRec: text features are used untransformed, so the projection is the identity
    assert torch.equal(targets["gcn.text.preference"].projection(h), h["text"])
    assert isinstance(m.user_embedding, torch.nn.Parameter) and m.user_embedding.shape == (N_USERS, 4)


def test_mmrec_frozen_tables_are_not_trained():
    m = _model(mmrec_frozen_tables=True)
    names = {n for n, _ in m.named_parameters()}
    assert "user_embedding" not in names and not any(n.endswith("preference") for n in names)
    before = m.gcn["image"].preference.clone()
    opt = torch.optim.Adam(m.parameters(), lr=0.1)
    loss = m.calculate_loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    sum(loss.values()).backward()
    opt.step()
    assert torch.equal(before, m.gcn["image"].preference)
    assert "gcn.image.preference" in m.state_dict()


def test_cold_items_get_finite_scores():
    m = _model().eval()
    scores = m.full_sort_scores(torch.arange(N_USERS))
    assert scores.shape == (N_USERS, N_ITEMS) and torch.isfinite(scores).all()



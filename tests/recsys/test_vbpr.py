"""VBPR checks of spec 5.4: item vector = [ID | Linear(features)], user width 2d, loss, SG-URInit targets."""


import numpy as np
import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.recsys.models import VBPR
from polymodal.recsys.models.user_init import user_init_targets, xavier_uniform_std

RNG = np.random.default_rng(0)
FEATS = {"image": RNG.normal(size=(5, 3)).astype(np.float32), "text": RNG.normal(size=(5, 4)).astype(np.float32)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _np(t):
    return t.detach().numpy().astype(np.float64)


def test_widths_order_and_item_vector():
    m = VBPR(4, 5, FEATS, embedding_size=6)
    assert m.modality_order == ("text", "image")  # MMRec's concat(text, image)
    assert m.user_embedding.weight.shape == (4, 12)
    assert m.item_embedding.weight.shape == (5, 6)
    assert m.item_linear.in_features == 7 and m.item_linear.out_features == 6
    u, i = m.final_embeddings()
    assert u.shape == (4, 12) and i.shape == (5, 12)
    x = np.hstack([FEATS["text"], FEATS["image"]])
    lin = x @ _np(m.item_linear.weight).T + _np(m.item_linear.bias)
    np.testing.assert_allclose(_np(i), np.hstack([_np(m.item_embedding.weight), lin]), atol=1e-6)
    assert m.item_raw_features.dtype == torch.float32
    assert "item_raw_features" not in m.state_dict()  # features come from the data, not the checkpoint
    scores = m.full_sort_scores(torch.tensor([1, 3]))
    np.testing.assert_allclose(_np(scores), _np(u)[[1, 3]] @ _np(i).T, atol=1e-5)


def test_modalities_argument_and_errors():
    m = VBPR(4, 5, FEATS, embedding_size=6, modalities=["image"])
    assert m.modality_order == ("image",) and m.item_linear.in_features == 3
    with pytest.raises(ConfigError):
        VBPR(4, 5, FEATS, modalities=["audio"])
    with pytest.raises(ConfigError):
        VBPR(4, 5, {})
    with pytest.raises(ConfigError):
        VBPR(4, 6, FEATS)  # row count mismatch


def test_loss_matches_hand_computation():
    m = VBPR(4, 5, FEATS, embedding_size=6, reg_weight=0.3)
    users, pos, neg = torch.tensor([0, 2, 2]), torch.tensor([1, 0, 4]), torch.tensor([3, 3, 2])
    parts = m.calculate_loss(users, pos, neg)
    uu, ii = _np(m.user_embedding.weight), _np(m.item_vectors())
    u, p, n = uu[[0, 2, 2]], ii[[1, 0, 4]], ii[[3, 3, 2]]
    diff = (u * p).sum(1) - (u * n).sum(1)
    bpr = np.mean(-np.log(1e-10 + 1 / (1 + np.exp(-diff))))
    reg = (np.linalg.norm(u) + np.linalg.norm(p) + np.linalg.norm(n)) / 3
    assert float(parts["bpr"]) == pytest.approx(bpr, rel=1e-5)
    assert float(parts["reg"]) == pytest.approx(0.3 * reg, rel=1e-5)
    assert set(VBPR(4, 5, FEATS, reg_weight=0.0).calculate_loss(users, pos, neg)) == {"bpr"}


def test_user_init_targets():
    m = VBPR(4, 5, FEATS, embedding_size=6)
    targets = user_init_targets(m)
    assert [t.name for t in targets] == ["id", "feature"]
    assert [t.width for t in targets] == [6, 6]
    assert targets[0].columns == slice(0, 6) and targets[1].columns == slice(6, 12)
    assert all(t.param is m.user_embedding.weight for t in targets)
    assert all(t.init_std == pytest.approx(xavier_uniform_std(4, 12)) for t in targets)
    h = {"image": torch.randn(4, 3), "text": torch.randn(4, 4)}
    expected = m.item_linear(torch.cat([h["text"], h["image"]], dim=1))
    for t in targets:
        assert torch.allclose(t.projection(h), expected)
    with pytest.raises(ConfigError):
        targets[0].projection({"image": h["image"]})



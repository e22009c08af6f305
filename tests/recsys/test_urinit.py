"""SG-URInit (spec 6.5 checks): hand-computed user vectors, flags, and what apply() may and may not touch."""

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys.models import LightGCN
from polymodal.recsys.models.graph import normalized_adjacency
from polymodal.recsys.models.user_init import UserInitTarget, xavier_uniform_std
from polymodal.recsys.urinit import SGURInit

# 3 users x 4 items, one 2-d modality with two obvious clusters: {0, 1} near (1, 0) and {2, 3} near (0, 1)
X = np.array([[1.0, 0.0], [1.2, 0.0], [0.0, 1.0], [0.0, 1.4]])
PAIRS = np.array([[0, 0], [0, 2], [1, 1], [2, 0], [2, 1], [2, 3]])


def fit(**kw):
    init = SGURInit(**{"n_clusters": 2, "lam": 0.5, "normalize_before_clustering": False, **kw})
    return init, init.fit(PAIRS, {"text": X}, n_users=3)["text"]


def test_hand_computed_case():
    init, h = fit()
    # cluster means (raw features): A = (1.1, 0), B = (0, 1.2)
    # u0: items {0, 2}:    l = (0.5, 0.5),       w = (1/2, 1/2), g = (0.55, 0.6)
    # u1: item {1}:        l = (1.2, 0),         w = (1, 0),     g = (1.1, 0)
    # u2: items {0, 1, 3}: l = (2.2/3, 1.4/3),   w = (2/3, 1/3), g = (2.2/3, 0.4)
    local = np.array([[0.5, 0.5], [1.2, 0.0], [2.2 / 3, 1.4 / 3]])
    glob = np.array([[0.55, 0.6], [1.1, 0.0], [2.2 / 3, 0.4]])
    np.testing.assert_allclose(init.local["text"], local, atol=1e-12)
    np.testing.assert_allclose(init.global_["text"], glob, atol=1e-12)
    np.testing.assert_allclose(h, 0.5 * local + 0.5 * glob, atol=1e-6)
    w = init.weights["text"].toarray()  # K-means may number the two clusters either way
    expected = np.array([[0.5, 0.5], [1.0, 0.0], [2 / 3, 1 / 3]])
    np.testing.assert_allclose(w if w[1, 0] == 1 else w[:, ::-1], expected, atol=1e-12)


def test_lambda_extremes_and_additive_fusion():
    init0, h0 = fit(lam=0.0)
    np.testing.assert_allclose(h0, init0.local["text"], atol=1e-6)
    init1, h1 = fit(lam=1.0)
    np.testing.assert_allclose(h1, init1.global_["text"], atol=1e-6)
    init_add, h_add = fit(lam=0.3, fusion="additive")
    np.testing.assert_allclose(h_add, init_add.local["text"] + 0.3 * init_add.global_["text"], atol=1e-6)


def test_every_item_its_own_cluster_gives_the_local_mean():
    init, _ = fit(n_clusters=4)
    np.testing.assert_allclose(init.global_["text"], init.local["text"], atol=1e-12)


def test_degree_norm_weights_items_by_inverse_sqrt_degree():
    init, _ = fit(local_agg="degree_norm")
    deg = np.array([2, 2, 1, 1])  # item degrees in PAIRS
    w = 1 / np.sqrt(deg[[0, 1, 3]])
    expected_u2 = (w[:, None] * X[[0, 1, 3]]).sum(0) / w.sum()
    np.testing.assert_allclose(init.local["text"][2], expected_u2, atol=1e-12)


def test_user_clustering_uses_the_centroid_of_the_users_cluster():
    init, _ = fit(cluster_on="users", n_clusters=3)
    np.testing.assert_allclose(init.global_["text"], init.local["text"], atol=1e-12)  # K = #users
    init2, _ = fit(cluster_on="users", n_clusters=1)
    np.testing.assert_allclose(init2.global_["text"], np.tile(init2.local["text"].mean(0), (3, 1)), atol=1e-12)


def test_deterministic_for_fixed_inputs():
    rng = np.random.default_rng(0)
    feats = {"text": rng.normal(size=(40, 8)), "image": rng.normal(size=(40, 5))}
    pairs = np.stack([rng.integers(0, 30, 300), rng.integers(0, 40, 300)], 1)
    a = SGURInit(n_clusters=5, seed=3).fit(pairs, feats, n_users=30)
    b = SGURInit(n_clusters=5, seed=3).fit(pairs, feats, n_users=30)
    for m in feats:
        np.testing.assert_array_equal(a[m], b[m])


def _lightgcn(n_users=3, n_items=4):
    torch.manual_seed(0)
    adj = normalized_adjacency(PAIRS[:, 0], PAIRS[:, 1], n_users, n_items)
    return LightGCN(n_users, n_items, adj, embedding_size=4, n_layers=2)


def test_apply_changes_only_the_user_table_with_matched_std_and_no_gradients():
    model = _lightgcn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    init, _ = fit()
    init.apply(model)
    after = model.state_dict()
    for k, v in before.items():
        if k == "user_embedding.weight":
            assert not torch.equal(v, after[k])
        else:
            assert torch.equal(v, after[k]), k
    table = model.user_embedding.weight
    assert float(table.std(unbiased=False)) == pytest.approx(xavier_uniform_std(3, 4), abs=1e-6)
    assert table.grad is None and table.requires_grad


def test_users_without_items_keep_their_default_init():
    model = _lightgcn(n_users=4)
    default_row = model.user_embedding.weight[3].clone()
    init = SGURInit(n_clusters=2, normalize_before_clustering=False)
    init.fit(PAIRS, {"text": X}, n_users=4)
    init.apply(model)
    assert torch.equal(model.user_embedding.weight[3], default_row)
    assert float(model.user_embedding.weight.std(unbiased=False)) == pytest.approx(xavier_uniform_std(4, 4), abs=1e-6)


class ProjectedModel(nn.Module):
    """A model that exposes its own projection: items' feature -> user space through a Linear layer."""

    def __init__(self):
        super().__init__()
        self.user_embedding = nn.Embedding(3, 2)
        self.proj = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]]))

    def user_init_targets(self):
        return [UserInitTarget("user_embedding", self.user_embedding.weight, slice(None),
                               lambda h: self.proj(h["text"]), None)]


def test_model_projection_is_used_and_rescale_none_keeps_its_values():
    model = ProjectedModel()
    init, h = fit(rescale="none")
    init.apply(model)
    np.testing.assert_allclose(model.user_embedding.weight.detach().numpy(), h @ np.array([[2, 0], [0, -1]]).T,
                               atol=1e-6)
    assert torch.equal(model.proj.weight, torch.tensor([[2.0, 0.0], [0.0, -1.0]]))


def test_pca_projection_when_the_model_has_none():
    model = _lightgcn()
    init, h = fit(rescale="none", projection="pca")
    init.apply(model)
    # PCA of X onto 4 columns: 2 principal directions, then 2 seeded random columns
    out = model.user_embedding.weight.detach().numpy()
    centred = h - X.mean(0)
    _, _, vt = np.linalg.svd(X - X.mean(0))
    np.testing.assert_allclose(np.abs(out[:, :2]), np.abs(centred @ vt.T), atol=1e-5)


def test_clear_errors():
    with pytest.raises(ConfigError, match="has no user embedding table"):
        SGURInit().apply(nn.Linear(2, 2))
    with pytest.raises(ConfigError, match="exceeds the number of items"):
        SGURInit(n_clusters=9).fit(PAIRS, {"text": X}, n_users=3)
    with pytest.raises(DataFormatError, match=r"item_features\['image'\]"):
        SGURInit(n_clusters=2).fit(PAIRS, {"text": X, "image": np.ones((3, 2))}, n_users=3)
    with pytest.raises(ConfigError, match="needs item features"):
        SGURInit().fit(PAIRS, {}, n_users=3)
    with pytest.raises(ConfigError, match="field 'fusion'"):
        SGURInit(fusion="mean")
    with pytest.raises(ConfigError, match="call fit"):
        SGURInit().apply(_lightgcn())
    init, _ = fit()
    with pytest.raises(ConfigError, match="has 5 rows but the data has 3 users"):
        init.apply(_lightgcn(n_users=5))
    bad = SGURInit(n_clusters=2, targets=("nope",))
    bad.fit(PAIRS, {"text": X}, n_users=3)
    with pytest.raises(ConfigError, match="field 'targets'"):
        bad.apply(_lightgcn())

"""Skeleton16 graph, ST-GCN / STEPNet / SkeletonImageCNN shapes and relabelling invariance (spec 3.4, 3.7)."""

import numpy as np
import pytest
import torch

from polymodal.affect.skeleton import (
    JOINT_NAMES,
    MIRROR,
    STGCN,
    Skeleton16,
    SkeletonImageCNN,
    STEPNet,
    TraditionalClassifier,
    make_synthetic_gaits,
    normalize_adjacency,
    normalize_sequence,
    resample_time,
)

torch.set_num_threads(1)


def test_joint_convention_and_mirror_map():
    assert JOINT_NAMES[4] == "l_shoulder" and JOINT_NAMES[12] == "l_foot"  # README order, not STEP's swap
    sk = Skeleton16()
    for i, j in enumerate(MIRROR):
        assert MIRROR[j] == i
        a, b = JOINT_NAMES[i], JOINT_NAMES[j]
        assert a.replace("l_", "X").replace("r_", "l_").replace("X", "r_") == b
    x = np.random.default_rng(0).standard_normal((5, 16, 3))
    np.testing.assert_allclose(sk.mirror(sk.mirror(x)), x)


def test_adjacency_symmetric_and_normalised():
    sk = Skeleton16()
    a = sk.adjacency()
    assert np.array_equal(a, a.T) and a.sum() == 2 * 15  # a tree: 15 bones
    n = sk.normalized_adjacency()
    assert np.allclose(n, n.T)
    deg = (a + np.eye(16)).sum(1)
    np.testing.assert_allclose(n, (a + np.eye(16)) / np.sqrt(np.outer(deg, deg)))
    assert np.max(np.abs(np.linalg.eigvalsh(n))) == pytest.approx(1.0)  # spectrum in [-1, 1]
    parts = sk.spatial_partitions()
    np.testing.assert_allclose(parts.sum(0).sum(0), 1.0)  # each column normalised by its degree


@pytest.mark.parametrize("t", [26, 30, 32, 48])
def test_output_shapes_any_length(t):
    x = torch.randn(3, t, 16, 3)
    assert STGCN(4, channels=(8, 16)).eval()(x).shape == (3, 4)
    assert STGCN(4, channels=(8, 16), partition="spatial").eval()(x).shape == (3, 4)
    assert STEPNet(4, 29, channels=(8, 16)).eval()(x, torch.randn(3, 29)).shape == (3, 4)
    assert SkeletonImageCNN(4, width=4).eval()(x).shape == (3, 4)
    assert resample_time(x[0].numpy(), 48).shape == (48, 16, 3)


@pytest.mark.parametrize("motion", [True, False])
def test_stgcn_invariant_to_consistent_joint_relabelling(motion):
    torch.manual_seed(0)
    sk = Skeleton16()
    a = sk.normalized_adjacency()
    model = STGCN(4, channels=(8, 16, 16), motion=motion).eval()
    perm = np.random.default_rng(1).permutation(16)  # new joint i = old joint perm[i]
    relabelled = STGCN(4, adjacency=a[np.ix_(perm, perm)], channels=(8, 16, 16), motion=motion).eval()
    relabelled.load_state_dict(model.state_dict())
    x = torch.randn(2, 30, 16, 3)
    torch.testing.assert_close(relabelled(x[:, :, perm]), model(x), rtol=1e-4, atol=1e-5)
    # an inconsistent relabelling (joints permuted, adjacency not) changes the output
    assert not torch.allclose(model(x[:, :, perm]), model(x), atol=1e-4)


def test_normalize_adjacency_hand_computed():
    a = np.array([[0, 1], [1, 0]])
    np.testing.assert_allclose(normalize_adjacency(a), [[0.5, 0.5], [0.5, 0.5]])


def test_normalize_sequence_faces_forward():
    d = make_synthetic_gaits(n_per_class=1, T=20, seed=0, heading_deg=60)
    x = normalize_sequence(d.x[0])
    hip = (x[:, 13] - x[:, 10]).mean(0)  # R-hip - L-hip
    assert hip[2] == pytest.approx(0.0, abs=1e-9) and hip[0] < 0
    assert x[0, 0, 0] == pytest.approx(0.0, abs=1e-9) and x[0, 0, 2] == pytest.approx(0.0, abs=1e-9)


def test_synthetic_is_seeded_and_learnable_but_not_trivial():
    a, b = make_synthetic_gaits(10, 32, seed=5), make_synthetic_gaits(10, 32, seed=5)
    assert np.array_equal(a.x, b.x) and a.x.shape == (40, 32, 16, 3)
    assert not np.array_equal(a.x, make_synthetic_gaits(10, 32, seed=6).x)
    d = make_synthetic_gaits(60, 40, seed=0)
    idx = np.random.default_rng(0).permutation(len(d.y))
    tr, te = idx[:180], idx[180:]
    clf = TraditionalClassifier("svm").fit(d.x[tr], d.y[tr])
    acc = (clf.predict(d.x[te]) == d.y[te]).mean()
    assert 0.5 < acc < 0.99

"""Partitioners of spec federated.md 1.2: coverage, disjointness, skew, hand-computed counts, determinism, errors."""

import numpy as np
import pytest

from polymodal.core.errors import ConfigError
from polymodal.federated import partition as P


@pytest.fixture(scope="module")
def digit_labels():
    from sklearn.datasets import load_digits

    return load_digits().target.astype(np.int64)


def balanced_labels(n_classes=10, per_class=100):
    return np.repeat(np.arange(n_classes), per_class)


def assert_cover(parts, n):
    """Disjoint and exhaustive: every index 0..n-1 appears in exactly one part."""
    assert all(p.dtype == np.int64 and p.ndim == 1 for p in parts)
    allidx = np.concatenate(parts)
    assert len(allidx) == n
    np.testing.assert_array_equal(np.sort(allidx), np.arange(n))


def mean_label_entropy(parts, labels):
    table = P.partition_summary(parts, labels).astype(float)
    prob = table / table.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.nansum(np.where(prob > 0, prob * np.log(prob), 0.0), axis=1)
    return float(ent.mean())


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------------------------------------------- iid


def test_iid_covers_with_near_equal_sizes():
    parts = P.iid(103, 10, seed=3)
    assert_cover(parts, 103)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert same(parts, P.iid(103, 10, seed=3))
    assert not same(parts, P.iid(103, 10, seed=4))


def test_iid_errors():
    with pytest.raises(ConfigError, match="n_clients"):
        P.iid(5, 6)
    with pytest.raises(ConfigError, match="n_clients"):
        P.iid(5, 0)
    with pytest.raises(ConfigError, match="seed"):
        P.iid(5, 2, seed="x")
    with pytest.raises(ConfigError, match="seed"):
        P.iid(5, 2, seed=-1)
    with pytest.raises(ConfigError, match="n must"):
        P.iid(2.5, 2)


# ------------------------------------------------------------------------------------------------- dirichlet


@pytest.mark.parametrize("alpha", [0.1, 0.5, 100.0])
def test_dirichlet_covers_and_keeps_min_size(digit_labels, alpha):
    n, k = len(digit_labels), 10
    for seed in range(3):
        parts = P.dirichlet(digit_labels, k, alpha, seed=seed)
        assert_cover(parts, n)
        assert min(len(p) for p in parts) >= 0.5 * n / k


def test_dirichlet_min_size_frac_is_honoured(digit_labels):
    parts = P.dirichlet(digit_labels, 5, 0.3, seed=0, min_size_frac=0.8)
    assert min(len(p) for p in parts) >= 0.8 * len(digit_labels) / 5


def test_dirichlet_skew_grows_as_alpha_shrinks(digit_labels):
    def ent(alpha):
        return np.mean(
            [mean_label_entropy(P.dirichlet(digit_labels, 10, alpha, seed=s), digit_labels) for s in range(3)]
        )

    e_small, e_mid, e_large = ent(0.1), ent(1.0), ent(100.0)
    assert e_small < e_mid < e_large
    assert e_large > 0.95 * np.log(10)  # alpha = 100 is close to IID


def test_dirichlet_groups_indices_by_class(digit_labels):
    for p in P.dirichlet(digit_labels, 10, 0.5, seed=1):
        assert np.all(np.diff(digit_labels[p]) >= 0)


def test_dirichlet_is_deterministic_and_takes_a_generator(digit_labels):
    a = P.dirichlet(digit_labels, 8, 0.5, seed=11)
    assert same(a, P.dirichlet(digit_labels, 8, 0.5, seed=11))
    assert not same(a, P.dirichlet(digit_labels, 8, 0.5, seed=12))
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    assert same(P.dirichlet(digit_labels, 8, 0.5, seed=g1), P.dirichlet(digit_labels, 8, 0.5, seed=g2))


def test_dirichlet_single_client_gets_everything(digit_labels):
    (only,) = P.dirichlet(digit_labels, 1, 0.1)
    assert_cover([only], len(digit_labels))


def test_dirichlet_absolute_min_size_pfllib_style():
    labels = balanced_labels(10, 300)
    parts = P.dirichlet(labels, 20, 0.1, seed=0, min_size=10)
    assert_cover(parts, len(labels))
    assert min(len(p) for p in parts) >= 10
    with pytest.raises(ConfigError, match="lower min_size "):
        P.dirichlet(labels, 20, 0.01, seed=0, min_size=150, max_tries=2)
    with pytest.raises(ConfigError, match="min_size must"):
        P.dirichlet(labels, 20, 0.1, min_size=151)


def test_dirichlet_gives_up_with_a_clear_error():
    labels = balanced_labels(10, 10)
    with pytest.raises(ConfigError, match=r"max_tries=3.*min_size_frac|min_size_frac.*max_tries=3"):
        P.dirichlet(labels, 10, 0.01, seed=0, min_size_frac=1.0, max_tries=3)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"n_clients": 0}, "n_clients"),
        ({"n_clients": 10_000}, "n_clients"),
        ({"min_size_frac": 1.5}, "min_size_frac"),
        ({"max_tries": 0}, "max_tries"),
        ({"labels": np.zeros((3, 3), dtype=int)}, "labels"),
        ({"labels": np.array([0, -1, 2])}, "labels"),
        ({"labels": np.array([0.5, 1.0])}, "labels"),
        ({"labels": np.array([], dtype=int)}, "labels"),
        ({"labels": np.array(["a", "b"])}, "labels"),
    ],
)
def test_dirichlet_validates_arguments(kwargs, name):
    args = {"labels": balanced_labels(), "n_clients": 5, "alpha": 0.5} | kwargs
    with pytest.raises(ConfigError, match=name):
        P.dirichlet(**args)


def test_dirichlet_accepts_integer_valued_float_labels():
    parts = P.dirichlet(balanced_labels().astype(float), 4, 1.0)
    assert_cover(parts, 1000)


# ------------------------------------------------------------------------------------------------ fedsm


@pytest.mark.parametrize("k", [20, 25, 10, 4])
def test_fedsm_dirichlet_equal_chunks_cover(digit_labels, k):
    parts = P.fedsm_dirichlet(digit_labels, k, 0.5, seed=7)
    assert len(parts) == k
    assert_cover(parts, len(digit_labels))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    # the remainder goes to the first chunks, like the code's partition_balance
    assert sizes == sorted(sizes, reverse=True)


def test_fedsm_dirichlet_keeps_label_skew_and_is_deterministic(digit_labels):
    parts = P.fedsm_dirichlet(digit_labels, 20, 0.1, seed=7)
    assert same(parts, P.fedsm_dirichlet(digit_labels, 20, 0.1, seed=7))
    assert mean_label_entropy(parts, digit_labels) < 0.8 * mean_label_entropy(
        P.iid(len(digit_labels), 20, seed=7), digit_labels
    )


def test_fedsm_dirichlet_validates():
    with pytest.raises(ConfigError, match="group_size"):
        P.fedsm_dirichlet(balanced_labels(), 20, 0.5, group_size=0)
    with pytest.raises(ConfigError, match="alpha"):
        P.fedsm_dirichlet(balanced_labels(), 20, -1)


# ------------------------------------------------------------------------------------------------ shards


def test_shards_limit_labels_per_client():
    labels = balanced_labels(10, 100)
    for spc in (1, 2, 5):
        parts = P.shards(labels, 10, shards_per_client=spc, seed=0)
        assert_cover(parts, len(labels))
        assert all(len(np.unique(labels[p])) <= spc for p in parts)
        assert {len(p) for p in parts} == {100}


def test_shards_on_uneven_classes_cover_and_stay_deterministic(digit_labels):
    parts = P.shards(digit_labels, 10, 2, seed=1)
    assert_cover(parts, len(digit_labels))
    assert all(len(np.unique(digit_labels[p])) <= 4 for p in parts)  # a shard may straddle two labels
    assert same(parts, P.shards(digit_labels, 10, 2, seed=1))


def test_shards_errors():
    with pytest.raises(ConfigError, match="n_clients"):
        P.shards(np.arange(10) % 2, 6, 2)
    with pytest.raises(ConfigError, match="shards_per_client"):
        P.shards(np.arange(10) % 2, 2, 0)


# ------------------------------------------------------------------------------------------------ long tail


def test_long_tail_counts_by_hand():
    # C = 4, n_max = 20, imb 0.1: 20 * 0.1 ** (c / 3) = 20, 9.28, 4.31, 2.0 -> 20, 9, 4, 2
    assert P.long_tail_counts(20, 4, 0.1) == [20, 9, 4, 2]
    # CIFAR-10-LT, imb 0.01: the usual 5000 ... 50 table
    assert P.long_tail_counts(5000, 10, 0.01) == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert P.long_tail_counts(20, 4, 0.1, profile="step") == [20, 20, 2, 2]
    assert P.long_tail_counts(7, 1, 0.5) == [7]


def test_long_tail_keeps_the_formula_counts():
    labels = np.tile(np.arange(4), 20)  # 20 per class, interleaved
    kept = P.long_tail(labels, 0.1, seed=0)
    assert kept.dtype == np.int64 and np.all(np.diff(kept) > 0)
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=4), [20, 9, 4, 2])
    np.testing.assert_array_equal(P.long_tail(labels, imbalance_ratio=10, seed=0), kept)
    assert not np.array_equal(P.long_tail(labels, 0.1, seed=1), kept)  # which images: seeded random subset
    np.testing.assert_array_equal(P.long_tail(labels, 0.1, seed=0), kept)


def test_long_tail_defaults_to_mean_class_size_and_caps_small_classes():
    labels = np.array([0] * 5 + [1] * 15)  # N / C = 10
    kept = P.long_tail(labels, 1.0)
    np.testing.assert_array_equal(np.bincount(labels[kept]), [5, 10])  # class 0 keeps all it has
    kept = P.long_tail(labels, 0.5, n_max=4)
    np.testing.assert_array_equal(np.bincount(labels[kept]), [4, 2])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({}, "imb_factor"),
        ({"imb_factor": 0.1, "imbalance_ratio": 10}, "imbalance_ratio"),
        ({"imb_factor": 0.0}, "imb_factor"),
        ({"imb_factor": 1.5}, "imb_factor"),
        ({"imbalance_ratio": 0.5}, "imbalance_ratio"),
        ({"imb_factor": 0.1, "profile": "linear"}, "profile"),
        ({"imb_factor": 0.1, "n_classes": 2}, "n_classes"),
        ({"imb_factor": 0.1, "n_max": -3}, "n_max"),
    ],
)
def test_long_tail_validates(kwargs, name):
    with pytest.raises(ConfigError, match=name):
        P.long_tail(np.tile(np.arange(4), 5), **kwargs)


# ------------------------------------------------------------------------------------------------ domains


def test_domains_one_client_per_domain():
    ids = np.array(["mnist", "svhn", "mnist", "usps", "svhn", "mnist"])
    parts = P.domains(ids)
    assert_cover(parts, len(ids))
    assert [p.tolist() for p in parts] == [[0, 2, 5], [1, 4], [3]]  # sorted domain order
    ordered = P.domains(ids, order=["usps", "mnist", "svhn"])
    assert [p.tolist() for p in ordered] == [[3], [0, 2, 5], [1, 4]]
    assert [p.tolist() for p in P.domains([2, 0, 2])] == [[1], [0, 2]]


def test_domains_errors():
    with pytest.raises(ConfigError, match="order"):
        P.domains(["a", "b"], order=["a"])
    with pytest.raises(ConfigError, match="order"):
        P.domains(["a", "b"], order=["a", "b", "c"])
    with pytest.raises(ConfigError, match="order"):
        P.domains(["a", "b"], order=["a", "a", "b"])
    with pytest.raises(ConfigError, match="domain_ids"):
        P.domains([])
    with pytest.raises(ConfigError, match="domain_ids"):
        P.domains(np.zeros((2, 2)))


# ------------------------------------------------------------------------------------------- local split


def test_local_train_test_per_client():
    parts = P.iid(200, 4, seed=0) + [np.array([7, 3])]
    train, test = P.local_train_test(parts, frac_test=0.25, seed=1)
    assert len(train) == len(test) == 5
    for p, tr, te in zip(parts, train, test, strict=True):
        assert not set(tr) & set(te)
        np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.sort(p))
        n = len(p)
        assert len(te) == (n - int(np.floor(0.75 * n)) if n > 2 else 1)
    again = P.local_train_test(parts, 0.25, seed=1)
    assert same(train, again[0]) and same(test, again[1])


def test_local_train_test_single_array_and_errors():
    tr, te = P.local_train_test(np.arange(10), frac_test=0.3, seed=0)
    assert len(tr) == 7 and len(te) == 3
    with pytest.raises(ConfigError, match=r"client 1 \(indices\[1\]\) has 1 sample"):
        P.local_train_test([np.arange(4), np.array([9])])
    with pytest.raises(ConfigError, match="frac_test"):
        P.local_train_test([np.arange(4)], frac_test=1.0)
    with pytest.raises(ConfigError, match="indices"):
        P.local_train_test("abc")


# ------------------------------------------------------------------------------------------------ summary


def test_partition_summary_counts():
    labels = np.array([0, 1, 1, 2, 2, 2])
    table = P.partition_summary([np.array([0, 1]), np.array([2, 3, 4, 5])], labels, n_classes=4)
    np.testing.assert_array_equal(table, [[1, 1, 0, 0], [0, 1, 3, 0]])
    assert table.dtype == np.int64
    with pytest.raises(ConfigError, match="parts\\[0\\]"):
        P.partition_summary([np.array([6])], labels)
    with pytest.raises(ConfigError, match="n_classes"):
        P.partition_summary([np.array([0])], labels, n_classes=2)

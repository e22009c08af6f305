"""Split presets and filters (spec 1.2)."""

from __future__ import annotations

import numpy as np
import pytest

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys.data import RawInteractions
from polymodal.recsys.splits import (
    apply_filters,
    mmrec_split_counts,
    recbole_split_counts,
    split_mmrec,
    split_recbole,
)


def raw_with_degrees(degrees: list[int], n_items: int = 50, seed: int = 0) -> RawInteractions:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u, d in enumerate(degrees):
        users += [u] * d
        items += rng.choice(n_items, size=d, replace=False).tolist()
    return RawInteractions(
        users=np.asarray(users),
        items=np.asarray(items),
        n_users=len(degrees),
        n_items=n_items,
        source="mem.inter",
    )


def pair_set(a: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in a}


# hand-computed from RecBole 1.2.1 Dataset._calcu_split_ids with ratios 0.8/0.1/0.1:
# valid = test = int(0.1 n), train = rest; then test, then valid, +1 if 0 < 0.1 n < 1 while train > 1.
RECBOLE_CASES = {
    1: (1, 0, 0),
    2: (1, 0, 1),
    3: (1, 1, 1),
    5: (3, 1, 1),
    9: (7, 1, 1),
    10: (8, 1, 1),
    11: (9, 1, 1),
    19: (17, 1, 1),
    20: (16, 2, 2),
    29: (25, 2, 2),
    30: (24, 3, 3),
}


@pytest.mark.parametrize(("n", "expected"), sorted(RECBOLE_CASES.items()))
def test_recbole_counts_rule(n: int, expected: tuple[int, int, int]) -> None:
    assert tuple(recbole_split_counts(n)) == expected


def test_recbole_counts_other_ratios() -> None:
    # ratios are normalised by their sum: (8, 1, 1) == (0.8, 0.1, 0.1)
    np.testing.assert_array_equal(
        recbole_split_counts(np.arange(1, 60), (8, 1, 1)), recbole_split_counts(np.arange(1, 60))
    )
    # 0.7/0.2/0.1, n=4: valid int(0.8)=0, test int(0.4)=0 -> test +1 (train 3), valid +1 (train 2)
    assert tuple(recbole_split_counts(4, (0.7, 0.2, 0.1))) == (2, 1, 1)
    # n=5: valid int(1.0)=1, test int(0.5)=0 -> test +1 -> 3/1/1
    assert tuple(recbole_split_counts(5, (0.7, 0.2, 0.1))) == (3, 1, 1)
    # a zero ratio never receives a row
    assert tuple(recbole_split_counts(5, (0.9, 0.0, 0.1))) == (4, 0, 1)
    with pytest.raises(ConfigError):
        recbole_split_counts(5, (0.8, 0.2))


def test_split_recbole_per_user_counts_and_union() -> None:
    degrees = sorted(RECBOLE_CASES)
    raw = raw_with_degrees(degrees)
    data = split_recbole(raw, seed=2020)
    for u, n in enumerate(degrees):
        got = tuple(int((arr[:, 0] == u).sum()) for arr in (data.train, data.valid, data.test))
        assert got == RECBOLE_CASES[n], (n, got)
    data.validate()  # no overlap, ids in range
    union = np.concatenate([data.train, data.valid, data.test])
    assert len(union) == len(raw)
    assert pair_set(union) == pair_set(np.stack([raw.users, raw.items], 1))
    assert data.name == "mem"


def test_split_recbole_deterministic_by_seed() -> None:
    raw = raw_with_degrees([30] * 20)
    a, b, c = split_recbole(raw, seed=7), split_recbole(raw, seed=7), split_recbole(raw, seed=8)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    assert pair_set(a.test) != pair_set(c.test)
    assert len(a.test) == len(c.test) == 20 * 3


def test_split_recbole_drops_duplicates_keeps_first() -> None:
    raw = RawInteractions(
        users=np.array([0, 0, 0, 0, 0]), items=np.array([1, 2, 1, 3, 4]), n_users=1, n_items=5, source="d"
    )
    data = split_recbole(raw)
    assert len(data.train) + len(data.valid) + len(data.test) == 4  # n=4 -> 2/1/1
    assert (len(data.train), len(data.valid), len(data.test)) == (2, 1, 1)
    data.validate()


def test_split_recbole_shuffles_within_user() -> None:
    # 200 items for one user in order: test rows must not all be the last ones of the input
    raw = RawInteractions(users=np.zeros(200, int), items=np.arange(200), n_users=1, n_items=200)
    data = split_recbole(raw, seed=0)
    assert len(data.test) == 20
    assert data.test[:, 1].min() < 180


def test_split_mmrec_counts_and_cold_drop() -> None:
    np.testing.assert_array_equal(
        mmrec_split_counts(np.array([1, 2, 3, 5, 9, 10, 19, 20, 35])),
        [
            [1, 0, 0],
            [1, 0, 1],
            [1, 1, 1],
            [3, 1, 1],
            [7, 1, 1],
            [8, 1, 1],
            [17, 1, 1],
            [16, 2, 2],
            [29, 3, 3],
        ],
    )
    degrees = [3, 5, 9, 10, 20, 35]
    raw = raw_with_degrees(degrees, n_items=40)
    data = split_mmrec(raw, seed=999, drop_cold=False)
    for u, n in enumerate(degrees):
        exp = tuple(mmrec_split_counts(n))
        got = tuple(int((arr[:, 0] == u).sum()) for arr in (data.train, data.valid, data.test))
        assert got == exp
    again = split_mmrec(raw, seed=999, drop_cold=False)
    np.testing.assert_array_equal(again.test, data.test)
    warm = split_mmrec(raw, seed=999)
    train_items = set(warm.train[:, 1].tolist())
    assert set(warm.valid[:, 1].tolist()) <= train_items and set(warm.test[:, 1].tolist()) <= train_items
    warm.validate()


def test_split_mmrec_uses_x_label() -> None:
    raw = RawInteractions(
        users=np.array([0, 0, 0, 1, 1, 1]),
        items=np.array([0, 1, 2, 0, 1, 3]),
        n_users=2,
        n_items=4,
        x_label=np.array([0, 1, 2, 0, 0, 2]),
    )
    data = split_mmrec(raw, seed=1)
    assert pair_set(data.train) == {(0, 0), (1, 0), (1, 1)}
    assert pair_set(data.valid) == {(0, 1)}
    # item 2 and 3 are never in train: both test rows are cold and dropped
    assert len(data.test) == 0
    kept = split_mmrec(raw, drop_cold=False)
    assert pair_set(kept.test) == {(0, 2), (1, 3)}
    bad = RawInteractions(
        users=np.array([0]), items=np.array([0]), n_users=1, n_items=1, x_label=np.array([5])
    )
    with pytest.raises(DataFormatError, match="x_label"):
        split_mmrec(bad)


def test_apply_filters_reindexes_everything() -> None:
    raw = RawInteractions(
        users=np.array([0, 0, 1, 2, 2, 2]),
        items=np.array([0, 1, 1, 0, 1, 2]),
        n_users=3,
        n_items=3,
        user_tokens=["a", "b", "c"],
        item_tokens=["x", "y", "z"],
        ratings=np.array([5.0, 4.0, 1.0, 5.0, 2.0, 5.0]),
        timestamps=np.arange(6.0),
        item_features={"t": np.arange(9, dtype=np.float32).reshape(3, 3)},
        source="f",
    )
    out = apply_filters(raw, min_rating=4)
    assert out.user_tokens == ["a", "c"] and out.item_tokens == ["x", "y", "z"]
    np.testing.assert_array_equal(out.users, [0, 0, 1, 1])
    np.testing.assert_array_equal(out.timestamps, [0, 1, 3, 5])
    # items with >= 3 rows: only y (a, b, c); x (2 rows) and z (1) go; then a, b, c have 1 row each -> nothing left
    with pytest.raises(DataFormatError, match="no interactions left"):
        apply_filters(raw, user_core=2, item_core=3)
    out3 = apply_filters(raw, item_core=2)
    assert out3.item_tokens == ["x", "y"]
    np.testing.assert_array_equal(out3.item_features["t"], [[0, 1, 2], [3, 4, 5]])
    assert apply_filters(raw) is raw
    with pytest.raises(ConfigError):
        apply_filters(raw, user_core=-1)

"""Interaction data model shared by every recommender (spec section 1.1).

``RawInteractions`` is what a loader reads (one row per interaction, contiguous ids);
``InteractionData`` is the split, validated data a model trains on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from polymodal.core.errors import DataFormatError


@dataclass
class RawInteractions:
    """Un-split interactions with contiguous integer ids.

    ``user_tokens[k]`` / ``item_tokens[k]`` give the raw token of contiguous id ``k``.
    ``x_label`` (0 train, 1 valid, 2 test) is kept when a file carries a fixed split (MMRec).
    ``item_texts[k]`` is the raw text behind item ``k``'s text features, when a builder keeps it.
    """

    users: np.ndarray
    items: np.ndarray
    n_users: int
    n_items: int
    user_tokens: list[str] | None = None
    item_tokens: list[str] | None = None
    ratings: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    x_label: np.ndarray | None = None
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    item_texts: list[str] | None = None

    def __len__(self) -> int:
        return int(self.users.shape[0])


@dataclass
class InteractionData:
    """Split implicit-feedback data: ``train``/``valid``/``test`` are int64 arrays of (user, item) rows.

    ``item_texts`` (optional) holds the raw text of each item, aligned with the item ids.
    """

    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    user_tokens: list[str] | None = None
    item_tokens: list[str] | None = None
    item_features: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "data"
    item_texts: list[str] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "valid", "test"):
            arr = np.asarray(getattr(self, split), dtype=np.int64).reshape(-1, 2)
            setattr(self, split, arr)

    @cached_property
    def train_csr(self) -> sp.csr_matrix:
        """User x item CSR matrix of training interactions (binary)."""
        return pairs_to_csr(self.train, self.n_users, self.n_items)

    @cached_property
    def valid_csr(self) -> sp.csr_matrix:
        return pairs_to_csr(self.valid, self.n_users, self.n_items)

    @cached_property
    def test_csr(self) -> sp.csr_matrix:
        return pairs_to_csr(self.test, self.n_users, self.n_items)

    def validate(self) -> InteractionData:
        """Check id ranges, duplicates and split overlap (spec 1.5: validate before training).

        Raises ``DataFormatError`` naming the split and the offending row.
        """
        if self.n_users <= 0 or self.n_items <= 0:
            raise DataFormatError(self.name, f"empty data: {self.n_users} users, {self.n_items} items")
        if len(self.train) == 0:
            raise DataFormatError(self.name, "the training split is empty")
        for split in ("train", "valid", "test"):
            arr = getattr(self, split)
            if len(arr) == 0:
                continue
            for col, limit, what in ((0, self.n_users, "user"), (1, self.n_items, "item")):
                bad = np.flatnonzero((arr[:, col] < 0) | (arr[:, col] >= limit))
                if bad.size:
                    r = int(bad[0])
                    raise DataFormatError(
                        self.name,
                        f"{split} row {r} has {what} id {int(arr[r, col])} out of range",
                        expected=f"0 <= id < {limit}",
                    )
        keys = {s: getattr(self, s)[:, 0] * self.n_items + getattr(self, s)[:, 1] for s in ("train", "valid", "test")}
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            common = np.intersect1d(keys[a], keys[b])
            if common.size:
                u, i = divmod(int(common[0]), self.n_items)
                raise DataFormatError(
                    self.name, f"{common.size} (user, item) pairs appear in both {a} and {b}, e.g. ({u}, {i})"
                )
        return self

    def summary(self) -> dict[str, float | int | str]:
        n = len(self.train) + len(self.valid) + len(self.test)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "sparsity": 1.0 - n / float(self.n_users * self.n_items),
        }


def pairs_to_csr(pairs: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary user x item CSR matrix from (user, item) rows; duplicates collapse to 1."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = sp.csr_matrix(
        (np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], pairs[:, 1])), shape=(n_users, n_items)
    )
    m.sum_duplicates()
    m.data[:] = 1.0
    return m

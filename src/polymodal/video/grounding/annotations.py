"""QVHighlights annotation rows and the grounding dataset containers (OVG-HQ data, spec ``video.md`` 3.2, 3.7, 3.8).

* :func:`load_qvhighlights` reads and validates Moment-DETR / QVHighlights JSONL rows, including the OVG-HQ
  (QVHighlights-Unify) extensions: ``segment_query`` [s, e] (the 6-s sub-span the Segment-G query was generated from),
  the complementary-text fields (``modified_query``, ``refinement_type``, ``removed_details``, ``modified_details``,
  ``complementary_text``) and the image-query variants (``qid`` = ``"<qid>_<style>"``, ``old_query``,
  ``refinement_text``). Every problem is a :class:`DataFormatError` naming the file, the line and the field.
* :func:`synthetic_skeleton` makes QVHighlights-shaped rows from scratch when no annotation file is around.
* :class:`GroundingSample` / :class:`GroundingDataset`: one query with its 2-s clip features, GT windows and the
  text / image / segment query features; :func:`split_dataset` splits by video (no video in both halves).

The real annotation files are CC BY-NC-SA 4.0: they are read from where the user keeps them
(``$POLYMODAL_QVHIGHLIGHTS`` or ``../shared/data/qvhighlights``), never copied into the package.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError, read_input_bytes

CLIP_SECONDS = 2.0
MODALITIES = ("text", "image", "segment", "hybrid")  # hybrid = segment + text, built by the model
SEGMENT_CLIPS = 3  # a Segment-G query is a 6-s clip = 3 feature clips (spec 3.7)
ANNOTATION_ENV = "POLYMODAL_QVHIGHLIGHTS"
IMAGE_STYLES = ("cartoon", "cinematic", "realistic", "scribble")

_STR_FIELDS = ("modified_query", "complementary_text", "refinement_text", "old_query")
_STR_LIST_FIELDS = ("removed_details", "modified_details")


def n_clips_for(duration: float, clip_seconds: float = CLIP_SECONDS) -> int:
    """Number of feature clips covering ``duration`` seconds: ``ceil(duration / clip_seconds)`` (75 for 150 s)."""
    return max(1, math.ceil(float(duration) / clip_seconds - 1e-9))


def window_clip_ids(window: Sequence[float], n_clips: int, clip_seconds: float = CLIP_SECONDS) -> np.ndarray:
    """Indices of the clips whose centre lies in ``[s, e)``; a window narrower than a clip gets the clip holding its
    midpoint, so every window covers at least one clip."""
    s, e = float(window[0]), float(window[1])
    centres = (np.arange(n_clips) + 0.5) * clip_seconds
    ids = np.flatnonzero((centres >= s) & (centres < e))
    if ids.size == 0:
        ids = np.array([min(n_clips - 1, int((s + e) / 2 // clip_seconds))])
    return ids


# ----------------------------------------------------------------------------------------------- JSONL rows


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_window(w: Any, duration: float, where: str, fail) -> list[float]:
    if not (isinstance(w, list | tuple) and len(w) == 2 and all(_number(x) for x in w)):
        fail(where, f"{w!r} is not a [start, end] pair of numbers", "[s, e] in seconds")
    s, e = float(w[0]), float(w[1])
    if s < 0:
        fail(where, f"start {s:g} is negative", "0 <= s < e <= duration")
    if s >= e:
        fail(where, f"start {s:g} >= end {e:g}", "s < e")
    if e > duration + 1e-6:
        fail(where, f"end {e:g} is beyond the video duration {duration:g} s", "e <= duration")
    return [w[0], w[1]]


def validate_row(row: Any, path: object = "<rows>", line: int | None = None) -> dict:
    """Check one QVHighlights row (plus OVG-HQ extensions) and return a normalised copy.

    Normalisation: an image-variant ``qid`` such as ``"1901_cinematic"`` becomes ``qid=1901`` with
    ``image_style="cinematic"``; a row without ``query`` but with ``old_query`` (image-variant files) uses it as the
    query. Raises :class:`DataFormatError` naming ``path``, ``line`` and the field otherwise.
    """

    def fail(fld: str, message: str, expected: str | None = None):
        raise DataFormatError(path, f"field '{fld}': {message}", line=line, expected=expected)

    if not isinstance(row, dict):
        raise DataFormatError(path, f"a row must be a JSON object, got {type(row).__name__}", line=line)
    out = dict(row)
    if "qid" not in row:
        fail("qid", "missing", "an integer query id")
    qid = row["qid"]
    if isinstance(qid, str):  # image-query variants: "<qid>_<style>"
        head, _, style = qid.partition("_")
        if not head.isdigit():
            fail("qid", f"{qid!r} is not an integer nor '<int>_<style>'", "an integer query id")
        out["qid"], out["image_style"] = int(head), style or None
    elif isinstance(qid, bool) or not isinstance(qid, int):
        fail("qid", f"{qid!r} is not an integer", "an integer query id")
    if "query" not in row and isinstance(row.get("old_query"), str):
        out["query"] = row["old_query"]
    if not isinstance(out.get("query"), str) or not out["query"].strip():
        fail("query", "missing or empty" if "query" not in out else f"{out['query']!r} is not a non-empty string",
             "the query sentence")
    if not isinstance(row.get("vid"), str) or not row["vid"]:
        fail("vid", "missing" if "vid" not in row else f"{row['vid']!r} is not a non-empty string",
             "a video id such as 'ytid_start_end'")
    duration = row.get("duration")
    if not _number(duration) or duration <= 0:
        fail("duration", "missing" if "duration" not in row else f"{duration!r} is not a positive number",
             "the video length in seconds")
    windows = row.get("relevant_windows")
    if not isinstance(windows, list) or not windows:
        fail("relevant_windows", "missing" if windows is None else f"{windows!r} is not a non-empty list",
             "[[s, e], ...] in seconds")
    out["relevant_windows"] = [_check_window(w, duration, f"relevant_windows[{i}]", fail) for i, w in enumerate(windows)]
    n_clips = n_clips_for(duration)
    if "relevant_clip_ids" in row:
        ids = row["relevant_clip_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            fail("relevant_clip_ids", f"{str(ids)[:60]} is not a list of integers", "2-s clip indices")
        bad = [i for i in ids if not 0 <= i < n_clips]
        if bad:
            fail("relevant_clip_ids", f"clip id {bad[0]} outside [0, {n_clips})", f"ids < ceil(duration / 2) = {n_clips}")
    if "saliency_scores" in row:
        sc = row["saliency_scores"]
        ok = isinstance(sc, list) and all(isinstance(r, list) and all(_number(x) for x in r) for r in sc)
        if not ok:
            fail("saliency_scores", "not a list of lists of numbers", "one [a1, a2, a3] per relevant clip")
        if "relevant_clip_ids" in row and len(sc) != len(row["relevant_clip_ids"]):
            fail("saliency_scores", f"{len(sc)} entries for {len(row['relevant_clip_ids'])} relevant_clip_ids",
                 "one entry per relevant clip")
    if "segment_query" in row:  # OVG-HQ Segment-G: the sub-span the generated clip depicts
        out["segment_query"] = _check_window(row["segment_query"], duration, "segment_query", fail)
    for fld in _STR_FIELDS:
        if fld in row and not isinstance(row[fld], str):
            fail(fld, f"{row[fld]!r} is not a string", "text")
    for fld in _STR_LIST_FIELDS:
        if fld in row and not (isinstance(row[fld], list) and all(isinstance(x, str) for x in row[fld])):
            fail(fld, f"{row[fld]!r} is not a list of strings", "a list of strings")
    if "refinement_type" in row:
        rt = row["refinement_type"]
        if not (isinstance(rt, str) or (isinstance(rt, list) and all(isinstance(x, str) for x in rt))):
            fail("refinement_type", f"{rt!r} is not a string or a list of strings", "e.g. 'action'")
    return out


def _iter_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    text = read_input_bytes(path).decode("utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), start=1):  # splitlines: a last line without "\n" is kept
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(path, f"invalid JSON: {exc.msg} at column {exc.colno}", line=lineno,
                                  expected="one JSON object per line") from None


def load_qvhighlights(path: str | Path, *, limit: int | None = None) -> list[dict]:
    """Validated rows of a QVHighlights / QVHighlights-Unify JSONL file (spec 3.7, 3.8).

    ``limit`` keeps the first N rows. Query ids must be unique per (qid, image_style).
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise ConfigError(f"field 'limit': must be >= 1 or None, got {limit}")
    rows: list[dict] = []
    seen: dict[tuple, int] = {}
    for lineno, obj in _iter_jsonl(path):
        row = validate_row(obj, path, lineno)
        key = (row["qid"], row.get("image_style"))
        if key in seen:
            raise DataFormatError(path, f"field 'qid': {row['qid']} repeats line {seen[key]}", line=lineno,
                                  expected="unique query ids")
        seen[key] = lineno
        rows.append(row)
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataFormatError(path, "no rows", expected="QVHighlights JSONL, one query per line")
    return rows


def load_complementary_text(path: str | Path) -> dict[int, dict]:
    """OVG-HQ complementary-text rows (``unify_c1/out_{train,val}.jsonl``: qid, modified_query, refinement_type,
    removed_details, modified_details, complementary_text) keyed by qid; merge with :func:`merge_extensions`."""
    path = Path(path)
    out: dict[int, dict] = {}
    for lineno, obj in _iter_jsonl(path):
        if not isinstance(obj, dict) or "qid" not in obj:
            raise DataFormatError(path, "field 'qid': missing", line=lineno, expected="an integer query id")
        # validate the extension fields through validate_row with placeholder core fields
        probe = {"query": "-", "vid": "-", "duration": 1, "relevant_windows": [[0, 1]], **obj}
        qid = validate_row(probe, path, lineno)["qid"]
        out[qid] = {k: v for k, v in obj.items() if k != "qid"}
    return out


def merge_extensions(rows: list[dict], extra: dict[int, dict]) -> list[dict]:
    """Copies of ``rows`` with the fields of ``extra[qid]`` added (existing fields win)."""
    return [{**extra.get(r["qid"], {}), **r} for r in rows]


def default_annotation_dir() -> Path | None:
    """Folder holding ``highlight_{train,val}_release.jsonl``: ``$POLYMODAL_QVHIGHLIGHTS``, else
    ``../shared/data/qvhighlights`` next to the repository root when it exists, else None."""
    env = os.environ.get(ANNOTATION_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise ConfigError(f"${ANNOTATION_ENV}={env!r}: not a directory")
        return p
    repo_root = Path(__file__).resolve().parents[4]
    p = repo_root.parent / "shared" / "data" / "qvhighlights"
    return p if (p / "highlight_val_release.jsonl").is_file() else None


# ----------------------------------------------------------------------------------------- synthetic skeleton

_SUBJECTS = ("A man", "A woman", "A young girl", "An old man", "A chef", "Two friends", "A family", "A boy",
             "A vlogger", "A dog", "A group of kids", "A couple", "A tourist", "A teenager", "A mechanic")
_ACTIONS = ("is cooking pasta", "rides a bicycle", "talks to the camera", "walks along", "plays the guitar",
            "paints a wall", "eats noodles", "is dancing", "opens a box", "washes a car", "reads a book",
            "swims", "is shopping for clothes", "climbs a rock", "feeds the birds", "fixes an engine",
            "plays basketball", "drinks coffee", "is typing on a laptop", "takes photos")
_PLACES = ("in the kitchen", "on the beach", "in a park", "on a busy street", "in a hotel room", "at the market",
           "in the garden", "inside a car", "at a restaurant", "on a mountain trail", "in the living room",
           "by the river", "in a gym", "at the airport", "in a classroom")
_DETAILS = ("", "", " while smiling", " wearing a red jacket", " at night", " with a friend", " in the rain",
            " wearing sunglasses", " slowly", " next to a blue door")


def synthetic_skeleton(n_queries: int, *, seed: int) -> list[dict]:
    """QVHighlights-shaped rows made up from scratch (spec 3.8), for when no annotation file exists.

    Durations 150 s (97 %) or 120-148 s; 1 window (66 %), 2 (18 %) or 3 (16 %); window lengths log-normal in
    2-s steps (median ~16 s, mean ~24 s, as in QVHighlights val), non-overlapping; templated English queries;
    consistent ``relevant_clip_ids`` and random 0-4 ``saliency_scores`` from 3 raters.
    """
    if n_queries < 1:
        raise ConfigError(f"field 'n_queries': must be >= 1, got {n_queries}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5E1E]))
    rows = []
    for i in range(n_queries):
        duration = 150 if rng.random() < 0.97 else int(rng.integers(60, 75)) * 2
        n_clips = duration // 2
        n_win = int(rng.choice([1, 2, 3], p=[0.66, 0.18, 0.16]))
        windows: list[list[int]] = []
        occupied = np.zeros(n_clips + 1, dtype=bool)
        for _ in range(n_win):
            for _try in range(20):
                length = int(np.clip(round(math.exp(rng.normal(math.log(8), 0.9))), 1, n_clips))
                start = int(rng.integers(0, n_clips - length + 1))
                if not occupied[max(0, start - 1): start + length + 1].any():
                    occupied[start: start + length] = True
                    windows.append([2 * start, 2 * (start + length)])
                    break
        windows.sort()
        clip_ids = [c for s, e in windows for c in range(s // 2, e // 2)]
        query = (f"{_SUBJECTS[rng.integers(len(_SUBJECTS))]} {_ACTIONS[rng.integers(len(_ACTIONS))]} "
                 f"{_PLACES[rng.integers(len(_PLACES))]}{_DETAILS[rng.integers(len(_DETAILS))]}.")
        ytid = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"), 11))
        start_s = float(rng.integers(0, 20) * 150)
        rows.append({
            "qid": i, "query": query, "duration": duration, "vid": f"{ytid}_{start_s:.1f}_{start_s + 150:.1f}",
            "relevant_windows": windows, "relevant_clip_ids": clip_ids,
            "saliency_scores": rng.integers(0, 5, size=(len(clip_ids), 3)).tolist(),
        })
    return rows


# ------------------------------------------------------------------------------------------------ containers


@dataclass
class GroundingSample:
    """One grounding query with its video (spec 3.2): features per 2-s clip and the query in each modality.

    ``video`` (n_clips, D), n_clips = ceil(duration / 2); ``windows`` (W, 2) GT seconds; ``queries``: ``"text"``
    (L_t, D) token features, ``"image"`` (1, D), ``"segment"`` (3, D) = the clips of ``segment_window`` (a 6-s
    sub-span inside a GT window). There is no ``"hybrid"`` key: the model builds it from segment + text.
    ``row`` keeps the annotation row (extension fields such as ``complementary_text`` included).
    """

    qid: int
    vid: str
    duration: float
    query_text: str
    video: np.ndarray
    windows: np.ndarray
    queries: dict[str, np.ndarray]
    segment_window: tuple[float, float]
    row: dict = field(default_factory=dict, repr=False)

    @property
    def n_clips(self) -> int:
        return int(self.video.shape[0])


class GroundingDataset(Sequence[GroundingSample]):
    """A list of :class:`GroundingSample` sharing a feature width ``dim`` and clip length ``clip_seconds``.

    ``query_dims`` gives each query modality's width (equal to ``dim`` for synthetic features; real CLIP text
    features may differ from a CLIP+SlowFast video width). ``info`` records how the features were made.
    """

    def __init__(self, samples: Sequence[GroundingSample], *, dim: int, clip_seconds: float = CLIP_SECONDS,
                 query_dims: dict[str, int] | None = None, info: dict | None = None):
        self.samples = list(samples)
        self.dim = int(dim)
        self.clip_seconds = float(clip_seconds)
        self.query_dims = dict(query_dims) if query_dims else {m: self.dim for m in ("text", "image", "segment")}
        self.info = dict(info or {})

    def __len__(self) -> int:
        return len(self.samples)

    @overload
    def __getitem__(self, i: int) -> GroundingSample: ...
    @overload
    def __getitem__(self, i: slice) -> GroundingDataset: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._like(self.samples[i])
        return self.samples[i]

    def _like(self, samples: Sequence[GroundingSample]) -> GroundingDataset:
        return GroundingDataset(samples, dim=self.dim, clip_seconds=self.clip_seconds, query_dims=self.query_dims,
                                info=self.info)

    def subset(self, idx: Iterable[int]) -> GroundingDataset:
        """The samples at positions ``idx`` (in that order)."""
        return self._like([self.samples[int(i)] for i in idx])

    def gts(self) -> list[dict]:
        """QVHighlights GT rows for the metrics: qid, vid, duration, relevant_windows (+ relevant_clip_ids and
        saliency_scores when the annotation had them)."""
        out = []
        for s in self.samples:
            gt = {"qid": s.qid, "vid": s.vid, "duration": s.duration,
                  "relevant_windows": [[float(a), float(b)] for a, b in s.windows]}
            for k in ("relevant_clip_ids", "saliency_scores"):
                if k in s.row:
                    gt[k] = s.row[k]
            out.append(gt)
        return out

    def __repr__(self) -> str:
        return f"GroundingDataset({len(self)} samples, dim={self.dim}, clip_seconds={self.clip_seconds:g})"


def split_dataset(ds: GroundingDataset, valid_fraction: float, seed: int) -> tuple[GroundingDataset, GroundingDataset]:
    """Seeded train/valid split by video: all queries of a video land on the same side (no leakage)."""
    if not 0 < valid_fraction < 1:
        raise ConfigError(f"field 'valid_fraction': must be in (0, 1), got {valid_fraction}")
    if len(ds) < 2:
        raise ConfigError(f"split_dataset: need at least 2 samples, got {len(ds)}")
    vids = sorted({s.vid for s in ds.samples})
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B11]))
    order = rng.permutation(len(vids))
    n_valid_target = max(1, round(valid_fraction * len(ds)))
    valid_vids: set[str] = set()
    per_vid = {v: 0 for v in vids}
    for s in ds.samples:
        per_vid[s.vid] += 1
    count = 0
    for j in order:
        if count >= n_valid_target or len(valid_vids) == len(vids) - 1:
            break
        valid_vids.add(vids[j])
        count += per_vid[vids[j]]
    train = [i for i, s in enumerate(ds.samples) if s.vid not in valid_vids]
    valid = [i for i, s in enumerate(ds.samples) if s.vid in valid_vids]
    return ds.subset(train), ds.subset(valid)

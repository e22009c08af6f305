"""Read and check QVHighlights ground truth and Moment-DETR / OVG-HQ prediction files (JSONL); write results atomically.

Every problem is a :class:`~polymodal.core.errors.DataFormatError` naming the file, the 1-based line and the field,
e.g. ``preds.jsonl, line 12: pred_relevant_windows[3]: start 40.0 > end 12.0 (expected [start <= end, ...])``.
Formats (spec ``video.md`` sections 3.6, 3.8): a GT row has ``qid``, ``relevant_windows`` [[s, e], ...] and, for the
highlight metrics, ``duration``, ``relevant_clip_ids`` and ``saliency_scores`` (3 annotators per clip); a prediction
row has ``qid``, ``pred_relevant_windows`` [[s, e, score], ...] (online: [s, e, score, gentime]) and optionally
``pred_saliency_scores`` (one score per 2-s clip).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from polymodal.core.errors import DataFormatError, read_input_bytes
from polymodal.core.runs import atomic_write_text


def read_jsonl(path: str | Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line; a line that is not a JSON object is an error naming it."""
    raw = read_input_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({e.reason} at byte {e.start})", expected="JSON Lines") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"not valid JSON ({e.msg}, column {e.colno})", line=number,
                                  expected="one JSON object per line") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, f"a JSON {type(obj).__name__}, not an object", line=number,
                                  expected="one JSON object per line")
        rows.append((number, obj))
    if not rows:
        raise DataFormatError(path, "the file holds no rows", expected="one JSON object per line")
    return rows


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_qid(path: Path | str, line: int, row: dict, seen: dict[Any, int]) -> Any:
    if "qid" not in row:
        raise DataFormatError(path, "missing field 'qid'", line=line, expected="a query id (int or str)")
    qid = row["qid"]
    if not isinstance(qid, int | str) or isinstance(qid, bool):
        raise DataFormatError(path, f"qid: {qid!r} is a {type(qid).__name__}", line=line, expected="an int or str")
    if qid in seen:
        raise DataFormatError(path, f"qid {qid!r} appears again (first on line {seen[qid]})", line=line,
                              expected="one row per query id")
    seen[qid] = line
    return qid


def _check_windows(path: Path | str, line: int, row: dict, field: str, width: int, names: str,
                   allow_reversed: bool = False) -> int:
    """Check a list of windows; returns how many have start > end (an error unless ``allow_reversed``)."""
    if field not in row:
        raise DataFormatError(path, f"missing field {field!r}", line=line, expected=f"a list of {names}")
    windows = row[field]
    reversed_ = 0
    if not isinstance(windows, list):
        raise DataFormatError(path, f"{field}: a {type(windows).__name__}", line=line, expected=f"a list of {names}")
    for i, w in enumerate(windows):
        if not isinstance(w, list) or len(w) < width or not all(_number(x) for x in w[:width]):
            raise DataFormatError(path, f"{field}[{i}] = {w!r}", line=line, expected=names)
        if w[0] > w[1]:
            if not allow_reversed:
                raise DataFormatError(path, f"{field}[{i}]: start {w[0]} > end {w[1]}", line=line,
                                      expected="start <= end")
            reversed_ += 1
    return reversed_


def validate_ground_truth(rows: list[tuple[int, dict]], path: str | Path, highlights: bool = False) -> list[dict]:
    """Check GT rows (qid unique, windows [s <= e], >= 1 window; with ``highlights`` the saliency fields)."""
    seen: dict[Any, int] = {}
    out = []
    for line, row in rows:
        _check_qid(path, line, row, seen)
        _check_windows(path, line, row, "relevant_windows", 2, "[start, end] windows in seconds")
        if not row["relevant_windows"]:
            raise DataFormatError(path, "relevant_windows is empty", line=line, expected="at least one [start, end]")
        if highlights:
            _check_saliency_gt(path, line, row)
        out.append(row)
    return out


def _check_saliency_gt(path: Path | str, line: int, row: dict) -> None:
    duration = row.get("duration")
    if not _number(duration) or duration <= 0:
        raise DataFormatError(path, f"duration: {duration!r}", line=line, expected="the video length in seconds > 0")
    ids, scores = row.get("relevant_clip_ids"), row.get("saliency_scores")
    if not isinstance(ids, list) or not isinstance(scores, list):
        missing = "relevant_clip_ids" if not isinstance(ids, list) else "saliency_scores"
        raise DataFormatError(path, f"missing or not a list: {missing!r}", line=line,
                              expected="relevant_clip_ids and saliency_scores for the highlight metrics")
    if len(ids) != len(scores):
        raise DataFormatError(path, f"{len(ids)} relevant_clip_ids but {len(scores)} saliency_scores", line=line,
                              expected="one [a, b, c] score triple per clip id")
    n_clips = int(duration / 2)
    for i, (c, s) in enumerate(zip(ids, scores, strict=True)):
        if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < n_clips:
            raise DataFormatError(path, f"relevant_clip_ids[{i}] = {c!r}", line=line,
                                  expected=f"a clip index in [0, {n_clips}) for duration {duration}")
        if not isinstance(s, list) or len(s) != 3 or not all(_number(x) for x in s):
            raise DataFormatError(path, f"saliency_scores[{i}] = {s!r}", line=line,
                                  expected="3 annotator scores (0-4)")


def validate_predictions(rows: list[tuple[int, dict]], path: str | Path, gt_qids: set | None = None,
                         online: bool = False, require_all: bool = True, strict: bool = False) -> list[dict]:
    """Check prediction rows: unique qids known to the GT, windows [s, e, score (, gentime)], saliency numbers.

    ``require_all``: every GT qid must have a prediction (the official ``match_number`` rule).
    The first row decides which parts are evaluated (as officially); every row must then carry them.
    A predicted window with start > end is an error with ``strict``; otherwise it is kept and counts as a miss (IoU
    0), as in the official evaluation — the OVG-HQ reference predictions hold 10 such windows (a start past the
    video end, the end clipped to the duration) and the reference numbers include them. A note goes to stderr.
    """
    seen: dict[Any, int] = {}
    width, names = (4, "[start, end, score, gentime] windows") if online else (3, "[start, end, score] windows")
    first = rows[0][1]
    has_windows = "pred_relevant_windows" in first or online
    has_saliency = "pred_saliency_scores" in first
    if not has_windows and not has_saliency:
        raise DataFormatError(path, "neither 'pred_relevant_windows' nor 'pred_saliency_scores'", line=rows[0][0],
                              expected="moment predictions and/or saliency scores")
    out = []
    n_reversed, first_reversed = 0, 0
    for line, row in rows:
        qid = _check_qid(path, line, row, seen)
        if gt_qids is not None and qid not in gt_qids:
            raise DataFormatError(path, f"qid {qid!r} is not in the ground truth", line=line,
                                  expected="predictions only for ground-truth queries")
        if has_windows:
            n = _check_windows(path, line, row, "pred_relevant_windows", width, names, allow_reversed=not strict)
            if n and not n_reversed:
                first_reversed = line
            n_reversed += n
        if has_saliency:
            sal = row.get("pred_saliency_scores")
            if not isinstance(sal, list) or not sal or not all(_number(x) for x in sal):
                raise DataFormatError(path, "pred_saliency_scores: missing, empty or not all numbers", line=line,
                                      expected="one score per 2-s clip")
        out.append(row)
    if n_reversed:
        print(f"note: {path}: {n_reversed} predicted window(s) with start > end (first on line {first_reversed}); "
              "they count as misses, as in the official evaluation", file=sys.stderr)
    if has_windows and not online and not any(r["pred_relevant_windows"] for r in out):
        raise DataFormatError(path, "every pred_relevant_windows list is empty", expected="ranked windows")
    if require_all and gt_qids is not None:
        missing = [q for q in gt_qids if q not in seen]
        if missing:
            raise DataFormatError(path, f"{len(missing)} ground-truth queries have no prediction "
                                  f"(e.g. qid {sorted(missing, key=str)[:5]})",
                                  expected="one row per ground-truth qid")
    return out


def load_ground_truth(path: str | Path, highlights: bool = False) -> list[dict]:
    """QVHighlights GT rows from a JSONL file, checked (see :func:`validate_ground_truth`)."""
    return validate_ground_truth(read_jsonl(path), path, highlights=highlights)


def load_predictions(path: str | Path, gts: list[dict] | None = None, online: bool = False,
                     require_all: bool = True, strict: bool = False) -> list[dict]:
    """Prediction rows from a JSONL file, checked against the GT's qids when ``gts`` is given."""
    gt_qids = None if gts is None else {d["qid"] for d in gts}
    return validate_predictions(read_jsonl(path), path, gt_qids, online=online, require_all=require_all,
                                strict=strict)


def load_submission(pred_path: str | Path, gt_path: str | Path, online: bool = False) -> tuple[list[dict], list[dict]]:
    """(predictions, ground truth), both checked; the GT's highlight fields are checked when the predictions
    carry saliency scores."""
    gt_rows = read_jsonl(gt_path)
    gts = validate_ground_truth(gt_rows, gt_path)
    preds = load_predictions(pred_path, gts, online=online)
    if "pred_saliency_scores" in preds[0]:
        validate_ground_truth(gt_rows, gt_path, highlights=True)
    return preds, gts


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), indent 4 like the reference files."""
    atomic_write_text(Path(path), json.dumps(obj, indent=4) + "\n")


__all__ = ["read_jsonl", "validate_ground_truth", "validate_predictions", "load_ground_truth", "load_predictions",
           "load_submission", "write_json"]

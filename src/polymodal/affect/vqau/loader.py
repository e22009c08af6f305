"""Read and write VQAU-Bench records and segment timelines (spec affect.md 1.7).

Records: JSON (a list, or ``{"records": [...]}``) or JSONL, one object per query, with a configurable key map
(defaults ``id``, ``video_id``, ``start``, ``end``, ``query``, ``emotion``, ``summary``) so the licensed benchmark's
own field names can be mapped without editing it. Timelines: JSONL (one video per line) or JSON (a list, or
``{"videos": [...]}``) of ``{"video_id", "segments": [{"start", "end", "caption", "transcript", "audio_tags",
"affect_cues"}]}`` — our own schema, since no offline video model can caption real videos.
Every malformed input is a :class:`DataFormatError` naming the file, the line (or record index) and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from polymodal.affect.vqau.schema import VideoTimeline, VQAUBenchmark, VQAURecord
from polymodal.core.errors import DataFormatError, read_input_bytes
from polymodal.core.runs import atomic_write_text

DEFAULT_KEYS = {"id": "id", "video_id": "video_id", "start": "start", "end": "end", "query": "query",
                "emotion": "emotion", "summary": "summary"}
RECORDS_FILE = "records.jsonl"
TIMELINES_FILE = "timelines.jsonl"


def _objects(path: Path, container_key: str) -> Iterator[tuple[int | None, str, Any]]:
    """(line number or None, where-label, object) for every item of a JSON / JSONL file."""
    raw = read_input_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield n, f"line {n}", json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"invalid JSON: {e.msg} at column {e.colno}", line=n,
                                      expected="one JSON object per line") from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"invalid JSON: {e.msg}", line=e.lineno,
                              expected=f"a JSON list or {{{container_key!r}: [...]}}") from None
    if isinstance(data, Mapping) and container_key in data:
        data = data[container_key]
    if not isinstance(data, list):
        raise DataFormatError(path, f"top level is a {type(data).__name__}",
                              expected=f"a JSON list of objects or {{{container_key!r}: [...]}}")
    for i, obj in enumerate(data):
        yield None, f"{container_key}[{i}]", obj


def _validate(path: Path, line: int | None, where: str, model: type[BaseModel], obj: Any,
              rename: Mapping[str, str] | None = None) -> Any:
    if not isinstance(obj, Mapping):
        raise DataFormatError(path, f"{where}: got a {type(obj).__name__}", line=line, expected="a JSON object")
    if rename:
        missing = [src for dst, src in rename.items() if src not in obj and dst != "summary"]
        if missing:
            raise DataFormatError(path, f"{where}: field {missing[0]!r} is missing", line=line,
                                  expected=f"keys {sorted(rename.values())}")
        obj = {dst: obj[src] for dst, src in rename.items() if src in obj}
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(record)"
        if rename and err.get("loc") and err["loc"][0] in rename:
            loc = rename[err["loc"][0]] + loc[len(str(err["loc"][0])):]
        got = "" if err.get("type") == "missing" else f" (got {json.dumps(err.get('input'), default=str)[:60]})"
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        raise DataFormatError(path, f"{where}: field {loc!r}: {msg}{got}", line=line) from None


def load_records(path: str | Path, key_map: Mapping[str, str] | None = None) -> list[VQAURecord]:
    """VQAU records from JSON / JSONL; ``key_map`` maps our field names to the file's (e.g. ``{"query": "q"}``)."""
    p = Path(path)
    rename = {**DEFAULT_KEYS, **dict(key_map or {})}
    unknown = set(rename) - set(DEFAULT_KEYS)
    if unknown:
        raise DataFormatError(p, f"key_map names unknown fields {sorted(unknown)}", expected=f"{sorted(DEFAULT_KEYS)}")
    out, seen = [], {}
    for line, where, obj in _objects(p, "records"):
        rec = _validate(p, line, where, VQAURecord, obj, rename)
        if rec.id in seen:
            raise DataFormatError(p, f"{where}: field {rename['id']!r}: duplicate id {rec.id!r} (first at "
                                  f"{seen[rec.id]})", line=line)
        seen[rec.id] = where
        out.append(rec)
    if not out:
        raise DataFormatError(p, "no records", expected="at least one query record")
    return out


def load_timelines(path: str | Path) -> dict[str, VideoTimeline]:
    """Segment timelines by video id from JSON / JSONL (schema in the module docstring)."""
    p = Path(path)
    out: dict[str, VideoTimeline] = {}
    for line, where, obj in _objects(p, "videos"):
        video = _validate(p, line, where, VideoTimeline, obj)
        if video.video_id in out:
            raise DataFormatError(p, f"{where}: field 'video_id': duplicate {video.video_id!r}", line=line)
        out[video.video_id] = video
    if not out:
        raise DataFormatError(p, "no videos", expected="at least one timeline")
    return out


def check_windows(records: list[VQAURecord], videos: Mapping[str, VideoTimeline], path: str | Path) -> None:
    """Every record names a known video and its window lies inside that video."""
    for i, r in enumerate(records):
        if r.video_id not in videos:
            raise DataFormatError(path, f"record {r.id!r} (#{i}): field 'video_id': no timeline for {r.video_id!r}")
        dur = videos[r.video_id].duration
        if r.start >= dur:
            raise DataFormatError(path, f"record {r.id!r} (#{i}): field 'start': {r.start} s is past the end of "
                                  f"video {r.video_id!r} ({dur} s)")


def load_benchmark(path: str | Path, timelines: str | Path | None = None,
                   key_map: Mapping[str, str] | None = None) -> VQAUBenchmark:
    """A folder holding ``records.jsonl`` + ``timelines.jsonl`` (as :func:`save_benchmark` writes), or a records
    file and its timelines file."""
    p = Path(path)
    if p.is_dir():
        rec_path, tl_path = p / RECORDS_FILE, Path(timelines) if timelines else p / TIMELINES_FILE
    else:
        if timelines is None:
            raise DataFormatError(p, "a records file needs its timelines file too",
                                  expected=f"a folder with {RECORDS_FILE} and {TIMELINES_FILE}, or both paths")
        rec_path, tl_path = p, Path(timelines)
    records = load_records(rec_path, key_map)
    videos = load_timelines(tl_path)
    check_windows(records, videos, rec_path)
    return VQAUBenchmark(videos, records)


def save_benchmark(bench: VQAUBenchmark, folder: str | Path) -> Path:
    """Write ``records.jsonl`` and ``timelines.jsonl`` into ``folder`` (atomically); returns the folder."""
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_text(d / RECORDS_FILE, "".join(r.model_dump_json() + "\n" for r in bench.records))
    atomic_write_text(d / TIMELINES_FILE, "".join(v.model_dump_json() + "\n" for v in bench.videos.values()))
    return d

"""VQAU records, timelines, loader errors and the synthetic generator (spec affect.md 1.3, 1.7)."""

import json
import re

import pytest

from polymodal.affect.vqau import (
    EMOTIONS,
    load_benchmark,
    load_records,
    load_timelines,
    make_benchmark,
    save_benchmark,
)
from polymodal.core.errors import DataFormatError

GOOD = {"id": "1024_1024_00001698_Q1", "video_id": "1024_1024", "start": 67.92, "end": 82.2,
        "query": "I kinda remember a firm handshake", "emotion": "Joy", "summary": "..."}


def _write_jsonl(path, objs):
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


def test_synthetic_benchmark_shape_and_determinism():
    a = make_benchmark(n_videos=3, seed=5, min_seconds=120, max_seconds=180)
    b = make_benchmark(n_videos=3, seed=5, min_seconds=120, max_seconds=180)
    assert [r.model_dump() for r in a.records] == [r.model_dump() for r in b.records]
    assert len(a.videos) == 3 and len(a.records) % 3 == 0
    for r in a.records:
        assert re.fullmatch(r"\d+_\d+_\d{8}_Q[123]", r.id) and r.emotion in EMOTIONS
        v = a.videos[r.video_id]
        assert 0 <= r.start < r.end <= v.duration and 8 * 0.6 <= r.end - r.start <= 30
    clips = {(r.video_id, r.start) for r in a.records}
    assert all(sum(1 for r in a.records if (r.video_id, r.start) == c) == 3 for c in clips)  # 3 queries per clip
    assert all(120 - 5 <= v.duration <= 180 + 5 for v in a.videos.values())


def test_save_and_load_roundtrip(tmp_path):
    bench = make_benchmark(n_videos=2, seed=1, min_seconds=60, max_seconds=90)
    back = load_benchmark(save_benchmark(bench, tmp_path / "b"))
    assert back.records == bench.records and back.videos == bench.videos


def test_key_map_and_case_insensitive_emotion(tmp_path):
    p = _write_jsonl(tmp_path / "r.jsonl", [{**{k: v for k, v in GOOD.items() if k != "query"}, "q": "hm",
                                             "emotion": "joy"}])
    [rec] = load_records(p, key_map={"query": "q"})
    assert rec.query == "hm" and rec.emotion == "Joy"


@pytest.mark.parametrize(("change", "words"), [
    ({"emotion": "Happiness"}, ["line 2", "'emotion'", "13 VQAU emotions"]),
    ({"end": 10.0}, ["line 2", "end (10.0) must be greater than start"]),
    ({"start": "soon"}, ["line 2", "'start'"]),
    ({"query": ""}, ["line 2", "'query'"]),
])
def test_malformed_records_name_file_line_and_field(tmp_path, change, words):
    p = _write_jsonl(tmp_path / "records.jsonl", [GOOD, {**GOOD, "id": "x_Q2", **change}])
    with pytest.raises(DataFormatError) as e:
        load_records(p)
    msg = str(e.value)
    assert "records.jsonl" in msg and all(w in msg for w in words), msg


def test_missing_field_duplicate_id_bad_json(tmp_path):
    p = _write_jsonl(tmp_path / "a.jsonl", [{k: v for k, v in GOOD.items() if k != "video_id"}])
    with pytest.raises(DataFormatError, match=r"line 1.*'video_id' is missing"):
        load_records(p)
    p = _write_jsonl(tmp_path / "b.jsonl", [GOOD, GOOD])
    with pytest.raises(DataFormatError, match=r"line 2.*duplicate id"):
        load_records(p)
    (tmp_path / "c.jsonl").write_text(json.dumps(GOOD) + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"c.jsonl, line 2: invalid JSON"):
        load_records(tmp_path / "c.jsonl")
    (tmp_path / "d.json").write_text(json.dumps({"records": [GOOD, 7]}))
    with pytest.raises(DataFormatError, match=r"records\[1\]: got a int"):
        load_records(tmp_path / "d.json")
    with pytest.raises(DataFormatError, match="file not found"):
        load_records(tmp_path / "missing.jsonl")


def test_malformed_timeline_and_window_outside_video(tmp_path):
    seg = {"start": 0, "end": 5, "caption": "a park"}
    p = _write_jsonl(tmp_path / "t.jsonl", [{"video_id": "v", "segments": [seg, {**seg, "start": 5, "end": 4}]}])
    with pytest.raises(DataFormatError, match=r"t.jsonl, line 1: .*'segments.1'.*end \(4.0\) must be greater"):
        load_timelines(p)
    d = tmp_path / "bench"
    d.mkdir()
    _write_jsonl(d / "timelines.jsonl", [{"video_id": "1024_1024", "segments": [seg]}])
    _write_jsonl(d / "records.jsonl", [GOOD])
    with pytest.raises(DataFormatError, match=r"'start': 67.92 s is past the end"):
        load_benchmark(d)

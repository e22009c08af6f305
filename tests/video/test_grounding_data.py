"""OVG-HQ data: QVHighlights loader + extensions, synthetic features, Moment-DETR npz loader (spec video.md 3.2-3.8)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.video.grounding import data as gd
from polymodal.video.grounding.data import (
    CLIP_SECONDS,
    MODALITIES,
    GroundingDataset,
    default_dataset,
    load_complementary_text,
    load_feature_dir,
    load_qvhighlights,
    merge_extensions,
    nearest_clip_baseline,
    split_dataset,
    synthesize_features,
    synthetic_skeleton,
)
from polymodal.video.grounding.synthetic_features import minilm_events

FIXTURE = Path(__file__).parent / "fixtures" / "qvhighlights" / "highlight_val_release.jsonl"
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "qvhighlights" / "highlight_val_release.jsonl"
ROW = {"qid": 7, "query": "A man rides a bike.", "duration": 150, "vid": "abc_0.0_150.0",
       "relevant_windows": [[10, 30]], "relevant_clip_ids": list(range(5, 15)), "saliency_scores": [[1, 2, 3]] * 10}


def _val_file() -> Path:
    for p in (FIXTURE, SHARED):
        if p.is_file():
            return p
    pytest.skip(f"QVHighlights val annotations absent (neither {FIXTURE} nor {SHARED}); they are CC BY-NC-SA and "
                "not shipped in the package")


def _write(path: Path, rows, trailing_newline: bool = True) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""))
    return path


# ---------------------------------------------------------------------------------------------- annotations


@pytest.mark.parametrize("bad, field", [
    ({k: v for k, v in ROW.items() if k != "qid"}, "qid"),
    ({**ROW, "qid": 1.5}, "qid"),
    ({**ROW, "relevant_windows": [[30, 10]]}, "relevant_windows[0]"),
    ({**ROW, "relevant_windows": [[10, 10]]}, "relevant_windows[0]"),
    ({**ROW, "relevant_windows": [[10, 30], [140, 152]]}, "relevant_windows[1]"),
    ({**ROW, "relevant_windows": []}, "relevant_windows"),
    ({**ROW, "duration": -1}, "duration"),
    ({k: v for k, v in ROW.items() if k != "query"}, "query"),
    ({k: v for k, v in ROW.items() if k != "vid"}, "vid"),
    ({**ROW, "relevant_clip_ids": [75]}, "relevant_clip_ids"),
    ({**ROW, "saliency_scores": [[1, 2, 3]]}, "saliency_scores"),
    ({**ROW, "segment_query": [148, 154]}, "segment_query"),
    ({**ROW, "complementary_text": 3}, "complementary_text"),
    ({**ROW, "removed_details": "bike"}, "removed_details"),
])
def test_validation_errors_name_file_line_field(tmp_path, bad, field):
    path = _write(tmp_path / "ann.jsonl", [{**ROW, "qid": 1}, bad])
    with pytest.raises(DataFormatError) as err:
        load_qvhighlights(path)
    msg = str(err.value)
    assert str(path) in msg and "line 2" in msg and f"field '{field}'" in msg, msg
    assert err.value.line == 2


def test_bad_json_duplicate_qid_and_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match=r"line 2: invalid JSON"):
        load_qvhighlights(_write(tmp_path / "a.jsonl", [ROW, '{"qid": 3, "query": ']))
    with pytest.raises(DataFormatError, match=r"line 2: field 'qid': 7 repeats line 1"):
        load_qvhighlights(_write(tmp_path / "b.jsonl", [ROW, ROW]))
    with pytest.raises(DataFormatError, match="no rows"):
        load_qvhighlights(_write(tmp_path / "c.jsonl", [], trailing_newline=False))
    with pytest.raises(DataFormatError, match="file not found"):
        load_qvhighlights(tmp_path / "missing.jsonl")


def test_last_line_without_newline_and_limit(tmp_path):
    path = _write(tmp_path / "a.jsonl", [ROW, {**ROW, "qid": 8}, "", {**ROW, "qid": 9}], trailing_newline=False)
    assert path.read_bytes()[-1:] == b"}"
    rows = load_qvhighlights(path)
    assert [r["qid"] for r in rows] == [7, 8, 9]
    assert [r["qid"] for r in load_qvhighlights(path, limit=2)] == [7, 8]


def test_real_val_file_loads():
    path = _val_file()
    assert path.read_bytes()[-1:] != b"\n"  # the real file ends without a newline (spec 3.8)
    rows = load_qvhighlights(path)
    assert len(rows) == 1550 and rows[-1]["relevant_windows"]
    assert all(120 <= r["duration"] <= 150 for r in rows)


def test_ovghq_extensions(tmp_path):
    seg = {**ROW, "segment_query": [14, 20]}
    icq = {k: v for k, v in ROW.items() if k != "query"} | {
        "qid": "7_cartoon", "old_query": "A man rides a bike.", "refinement_type": ["object"],
        "removed_details": ["bike"], "modified_details": ["horse"], "refinement_text": "A bike, not a horse."}
    rows = load_qvhighlights(_write(tmp_path / "seg.jsonl", [seg, icq]))
    assert rows[0]["segment_query"] == [14, 20]
    assert rows[1]["qid"] == 7 and rows[1]["image_style"] == "cartoon" and rows[1]["query"] == "A man rides a bike."
    comp = _write(tmp_path / "c.jsonl", [{"qid": 7, "modified_query": "A man rides a horse.", "refinement_type": "object",
                                           "removed_details": ["bike"], "modified_details": ["horse"],
                                           "complementary_text": "The object is bike, not horse."}])
    extra = load_complementary_text(comp)
    merged = merge_extensions(rows[:1], extra)
    assert merged[0]["complementary_text"] == "The object is bike, not horse." and merged[0]["query"] == ROW["query"]
    with pytest.raises(DataFormatError, match=r"line 1: field 'modified_details'"):
        load_complementary_text(_write(tmp_path / "d.jsonl", [{"qid": 1, "modified_details": "x"}]))
    ds = synthesize_features(load_qvhighlights(tmp_path / "seg.jsonl", limit=1), dim=32, text="hash")
    assert ds[0].segment_window == (14.0, 20.0)
    assert ds.gts()[0]["relevant_windows"] == [[10.0, 30.0]]


def test_default_annotation_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(gd.ANNOTATION_ENV, str(tmp_path))
    assert gd.default_annotation_dir() == tmp_path
    monkeypatch.setenv(gd.ANNOTATION_ENV, str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="not a directory"):
        gd.default_annotation_dir()
    monkeypatch.delenv(gd.ANNOTATION_ENV)
    found = gd.default_annotation_dir()
    assert found is None or (found / "highlight_val_release.jsonl").is_file()


# ------------------------------------------------------------------------------------------------- skeleton


def test_synthetic_skeleton_is_qvhighlights_shaped(tmp_path):
    rows = synthetic_skeleton(400, seed=3)
    assert rows == synthetic_skeleton(400, seed=3) and rows != synthetic_skeleton(400, seed=4)
    back = load_qvhighlights(_write(tmp_path / "s.jsonl", rows))  # passes the real validator
    assert len(back) == 400 and len({r["qid"] for r in rows}) == 400
    assert all(120 <= r["duration"] <= 150 for r in rows)
    assert {len(r["relevant_windows"]) for r in rows} == {1, 2, 3}
    lengths = np.array([e - s for r in rows for s, e in r["relevant_windows"]])
    assert 8 <= np.median(lengths) <= 24 and 15 <= lengths.mean() <= 35  # real val: median 16, mean 23
    for r in rows:
        w = sorted(r["relevant_windows"])
        assert all(a[1] < b[0] for a, b in zip(w, w[1:], strict=False))  # non-overlapping


# ------------------------------------------------------------------------------------------- synthetic features


@pytest.fixture(scope="module")
def small_rows():
    rows = synthetic_skeleton(60, seed=1)
    rows[0] = {**rows[0], "duration": 127, "relevant_windows": [[120, 127]]}  # odd duration, window at the end
    rows[1] = {**rows[1], "vid": rows[2]["vid"], "duration": rows[2]["duration"]}  # two queries share a video
    return rows


def test_shapes_and_modalities(small_rows):
    ds = synthesize_features(small_rows, dim=64, seed=0, text="hash")
    assert isinstance(ds, GroundingDataset) and len(ds) == 60 and ds.dim == 64 and ds.clip_seconds == CLIP_SECONDS
    assert MODALITIES == ("text", "image", "segment", "hybrid")
    for s, r in zip(ds, small_rows, strict=True):
        assert s.video.shape == (math.ceil(r["duration"] / 2), 64) and s.video.dtype == np.float32
        assert set(s.queries) == {"text", "image", "segment"}
        assert 8 <= s.queries["text"].shape[0] <= 20 and s.queries["text"].shape[1] == 64
        assert s.queries["image"].shape == (1, 64) and s.queries["segment"].shape == (3, 64)
        assert s.windows.shape == (len(r["relevant_windows"]), 2)
        np.testing.assert_allclose(np.linalg.norm(s.video, axis=1), 1, atol=1e-5)
    assert ds[0].video.shape[0] == 64  # ceil(127 / 2)
    assert np.array_equal(ds[1].video, ds[2].video)  # one video per vid
    assert ds[:5].dim == 64 and len(ds.subset([3, 1])) == 2 and ds.subset([3, 1])[0].qid == ds[3].qid
    gts = ds.gts()
    assert set(gts[0]) >= {"qid", "vid", "duration", "relevant_windows"} and gts[0]["duration"] == 127.0


def test_seeding_is_deterministic(small_rows):
    a = synthesize_features(small_rows, dim=32, seed=5, text="hash")
    b = synthesize_features(small_rows, dim=32, seed=5, text="hash")
    c = synthesize_features(small_rows, dim=32, seed=6, text="hash")
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.video, y.video) and x.segment_window == y.segment_window
        assert all(np.array_equal(x.queries[m], y.queries[m]) for m in x.queries)
    assert not np.allclose(a[0].video, c[0].video)


def test_segment_query_comes_from_inside_a_gt_window(small_rows):
    ds = synthesize_features(small_rows, dim=64, seed=0, text="hash", segment_noise=0.3, image_noise=0.3)
    for s in ds:
        s0, e0 = s.segment_window
        assert any(a - 1e-9 <= s0 < e0 <= b + 1e-9 for a, b in s.windows), (s.segment_window, s.windows)
        if any(b - a >= 6 for a, b in s.windows):
            assert e0 - s0 == pytest.approx(6.0) and s0 % 2 == 0
        # the segment's clips are views of the segment window's clips: they match them better than other clips
        ids = gd.window_clip_ids(s.segment_window, s.n_clips)
        sims = s.video @ s.queries["segment"].mean(0)
        assert sims[ids].mean() > np.delete(sims, ids).mean()


def test_nearest_clip_baseline_above_chance_not_trivial():
    rows = synthetic_skeleton(300, seed=2)
    ds = synthesize_features(rows, seed=0, text="hash")
    res = {m: nearest_clip_baseline(ds, m) for m in MODALITIES}
    for m, b in res.items():
        assert b["clip_hit1"] > b["chance_clip_hit1"] + 15, (m, b)  # learnable
        assert b["r1"] > 1.5 * b["chance_r1"], (m, b)
        assert b["r1"] < 70, (m, b)  # far from solved by cosine matching
    assert res["text"]["clip_hit1"] < 97
    # negative control: with no event in the clips, the same localiser is at chance
    null = nearest_clip_baseline(synthesize_features(rows, seed=0, text="hash", event_strength=0.0), "text")
    assert abs(null["clip_hit1"] - null["chance_clip_hit1"]) < 10 and null["r1"] < 2 * null["chance_r1"] + 3


def test_synthesis_speed_1000_samples_hash():
    rows = synthetic_skeleton(1000, seed=0)
    t0 = time.perf_counter()
    ds = synthesize_features(rows, seed=0, text="hash")
    seconds = time.perf_counter() - t0
    assert len(ds) == 1000
    assert seconds < 20, f"1,000 samples took {seconds:.1f} s"  # ~2-4 s on 2 shared cores


def test_minilm_events_follow_sentence_similarity(minilm):
    texts = ["A man rides a bicycle down the street.", "A man is riding a bike on the road.",
             "A chef slices onions in the kitchen."]
    ev = minilm_events(texts, 32, minilm)
    assert ev[0] @ ev[1] > ev[0] @ ev[2] + 0.2
    rows = [{**ROW, "qid": i, "query": t, "vid": f"v{i}_0.0_150.0"} for i, t in enumerate(texts)]
    ds = synthesize_features(rows, dim=64, seed=0, text="minilm", encoder=minilm)
    assert ds.info["text"] == "minilm" and ds[0].queries["text"].shape[1] == 64


def test_bad_generator_settings(small_rows):
    with pytest.raises(ConfigError, match="'text'"):
        synthesize_features(small_rows, text="glove")
    with pytest.raises(ConfigError, match="'clip_noise'"):
        synthesize_features(small_rows, text="hash", clip_noise=-1)
    with pytest.raises(ConfigError, match="'latent_dim'"):
        synthesize_features(small_rows, dim=16, latent_dim=40, text="hash")


# ------------------------------------------------------------------------------------------ splits / default


def test_split_dataset_by_video(small_rows):
    ds = synthesize_features(small_rows, dim=16, latent_dim=8, ambient_rank=8, seed=0, text="hash")
    train, valid = split_dataset(ds, 0.25, seed=0)
    assert len(train) + len(valid) == len(ds) and 10 <= len(valid) <= 20
    assert not {s.vid for s in train} & {s.vid for s in valid}
    again = split_dataset(ds, 0.25, seed=0)[1]
    assert [s.qid for s in again] == [s.qid for s in valid]
    with pytest.raises(ConfigError, match="valid_fraction"):
        split_dataset(ds, 1.0, seed=0)


def test_default_dataset_real_and_synthetic_skeleton(monkeypatch, tmp_path):
    real = load_qvhighlights(_val_file(), limit=40)
    _write(tmp_path / "highlight_train_release.jsonl", real[:30])
    _write(tmp_path / "highlight_val_release.jsonl", real[30:])
    monkeypatch.setenv(gd.ANNOTATION_ENV, str(tmp_path))
    train, valid = default_dataset(20, 5, dim=32, seed=0, text="hash")
    assert len(train) == 20 and len(valid) == 5 and train.info["skeleton"].startswith("qvhighlights")
    assert {s.qid for s in train} <= {r["qid"] for r in real[:30]} and {s.qid for s in valid} <= {r["qid"] for r in real[30:]}
    monkeypatch.setattr(gd, "default_annotation_dir", lambda: None)
    train, valid = default_dataset(20, 5, dim=32, seed=0, text="hash")
    assert train.info["skeleton"] == "synthetic" and len(train) == 20 and len(valid) == 5
    assert not {s.vid for s in train} & {s.vid for s in valid}


# ----------------------------------------------------------------------------------------------- npz loader


def _feature_fixture(tmp_path: Path):
    rows = [{**ROW, "qid": 1, "vid": "vidA_0.0_150.0"}, {**ROW, "qid": 2, "vid": "vidB_0.0_126.0", "duration": 126,
                                                           "relevant_windows": [[0, 16]], "segment_query": [8, 14]}]
    rows[1].pop("relevant_clip_ids"), rows[1].pop("saliency_scores")
    rng = np.random.default_rng(0)
    clip, slow, text = tmp_path / "clip_features", tmp_path / "slowfast_features", tmp_path / "clip_text_features"
    for d in (clip, slow, text):
        d.mkdir()
    for r, n in ((rows[0], 75), (rows[1], 63)):
        np.savez(clip / f"{r['vid']}.npz", features=rng.standard_normal((n, 4)).astype(np.float32))
        np.savez(slow / f"{r['vid']}.npz", features=rng.standard_normal((n - 1, 6)).astype(np.float32))
        np.savez(text / f"qid{r['qid']}.npz", last_hidden_state=rng.standard_normal((9, 5)).astype(np.float32),
                 pooler_output=rng.standard_normal(5).astype(np.float32))
    return rows, clip, slow, text


def test_load_feature_dir_moment_detr_layout(tmp_path):
    rows, clip, slow, text = _feature_fixture(tmp_path)
    ds = load_feature_dir([clip, slow], text, rows)
    assert ds.dim == 10 and ds.query_dims == {"image": 10, "segment": 10, "text": 5}
    a, b = ds
    assert a.video.shape == (75, 10) and b.video.shape == (63, 10)  # slowfast had 74/62: truncated, last clip padded
    raw = np.load(clip / f"{a.vid}.npz")["features"]
    np.testing.assert_allclose(a.video[:74, :4], raw[:74] / np.linalg.norm(raw[:74], axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(a.video[74], a.video[73])
    assert a.queries["text"].shape == (9, 5) and b.segment_window == (8.0, 14.0)
    np.testing.assert_array_equal(b.queries["segment"], b.video[[4, 5, 6]])
    pooled = load_feature_dir(clip, text, rows, text_key="pooler_output", l2_normalize=False)
    assert pooled[0].queries["text"].shape == (1, 5) and pooled.dim == 4
    assert "text" not in load_feature_dir(clip, None, rows)[0].queries
    jsonl = _write(tmp_path / "rows.jsonl", rows)
    assert len(load_feature_dir(clip, None, jsonl)) == 2


def test_load_feature_dir_errors(tmp_path):
    rows, clip, slow, text = _feature_fixture(tmp_path)
    with pytest.raises(ConfigError, match="'rows' is required"):
        load_feature_dir(clip, text)
    (text / "qid2.npz").unlink()
    with pytest.raises(DataFormatError, match=r"qid2\.npz: missing text feature file"):
        load_feature_dir(clip, text, rows)
    with pytest.raises(DataFormatError, match=r"vidA_0\.0_150\.0\.npz: no key 'clip_features' \(keys: features\)"):
        load_feature_dir(clip, None, rows, video_key="clip_features")
    np.savez(slow / "vidA_0.0_150.0.npz", features=np.zeros((70, 6), np.float32))
    with pytest.raises(DataFormatError, match="mismatched clip counts"):
        load_feature_dir([clip, slow], None, rows)
    np.savez(clip / "vidA_0.0_150.0.npz", features=np.zeros((60, 4), np.float32))
    with pytest.raises(DataFormatError, match=r"60 clips for a 150-s video \(expected ceil"):
        load_feature_dir(clip, None, rows)
    np.savez(clip / "vidA_0.0_150.0.npz", features=np.zeros((75, 3), np.float32))
    with pytest.raises(DataFormatError, match="feature width 4 differs from 3"):
        load_feature_dir(clip, None, rows)
    (clip / "vidA_0.0_150.0.npz").write_text("not a zip")
    with pytest.raises(DataFormatError, match="cannot read the npz"):
        load_feature_dir(clip, None, rows)

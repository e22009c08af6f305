"""Offline Moment-DETR metrics (spec video.md 3.6): the golden fixture to every printed number, and hand cases."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import DataFormatError
from polymodal.video.grounding.metrics.moment_detr import (
    IOU_THRESHOLDS,
    average_precision_detection,
    binary_ap,
    compute_mr_ap,
    compute_mr_r1,
    eval_submission,
    filter_by_length,
    greedy_match,
    interpolated_ap,
    interpolated_ap_rows,
    temporal_iou,
    temporal_iou_paired,
)

FIXTURES = Path(__file__).parent / "fixtures" / "qvhighlights"


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def golden():
    gts, preds = _jsonl("highlight_val_release.jsonl"), _jsonl("sample_val_preds.jsonl")
    t0 = time.perf_counter()
    result = eval_submission(preds, gts)
    seconds = time.perf_counter() - t0
    reference = json.loads((FIXTURES / "sample_val_preds_metrics_raw.json").read_text())
    return result, reference, seconds


def test_golden_fixture_every_number_and_key_order(golden):
    result, reference, seconds = golden
    # the whole structure, key order included, equals the official output
    assert json.dumps(result) == json.dumps(reference)
    assert seconds < 30, f"the val evaluation took {seconds:.1f} s"


def test_golden_headline_values(golden):
    brief = golden[0]["brief"]
    assert brief["MR-full-R1@0.5"] == 53.94 and brief["MR-full-R1@0.7"] == 34.84
    assert brief["MR-full-mAP"] == 32.2 and brief["MR-full-mAP@0.5"] == 54.96 and brief["MR-full-mAP@0.75"] == 31.01
    assert (brief["MR-long-mAP"], brief["MR-middle-mAP"], brief["MR-short-mAP"]) == (41.11, 32.3, 3.28)
    assert (brief["HL-min-Fair-mAP"], brief["HL-min-Fair-Hit1"]) == (67.77, 66.45)
    assert (brief["HL-min-Good-mAP"], brief["HL-min-Good-Hit1"]) == (58.09, 64.45)
    assert (brief["HL-min-VeryGood-mAP"], brief["HL-min-VeryGood-Hit1"]) == (35.65, 55.55)


def test_thresholds_are_the_rounded_official_ones():
    assert IOU_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_temporal_iou_hand_values():
    iou = temporal_iou(np.array([[0.0, 10.0], [5.0, 15.0]]), np.array([[0.0, 10.0], [10.0, 20.0], [30.0, 40.0]]))
    np.testing.assert_allclose(iou, [[1.0, 0.0, 0.0], [0.5 / 1.5 * 1.0, 5 / 15, 0.0]])
    np.testing.assert_allclose(temporal_iou_paired(np.array([[0.0, 10.0], [0.0, 2.0]]),
                                                   np.array([[5.0, 15.0], [4.0, 6.0]])), [5 / 15, 0.0])


def test_interpolated_ap_hand_example_and_rows_version():
    # TP, FP, TP with 2 GT windows: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> 0.5 * 1 + 0.5 * 2/3
    precision, recall = np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])
    assert interpolated_ap(precision, recall) == pytest.approx(0.5 + 0.5 * 2 / 3)
    rng = np.random.default_rng(0)
    for _ in range(50):
        hits = rng.random((4, 7)) < 0.5
        tp, fp = np.cumsum(hits, 1), np.cumsum(~hits, 1)
        p, r = tp / (tp + fp), tp / 5.0
        rows = interpolated_ap_rows(p, r)
        assert all(rows[i] == interpolated_ap(p[i], r[i]) for i in range(4))  # bit-identical


def test_greedy_matching_takes_each_gt_once():
    # two predictions on the same GT window: the second is a false positive; the second GT is never matched
    iou = temporal_iou(np.array([[0.0, 10.0], [0.0, 9.0]]), np.array([[0.0, 10.0], [50.0, 60.0]]))
    matched = greedy_match(iou, [0.5, 0.95])
    assert matched.tolist() == [[0, -1], [0, -1]]
    ap = average_precision_detection(np.array([[0.0, 10.0], [50.0, 60.0]]), np.array([[0.0, 9.0], [0.0, 10.0]]),
                                     np.array([0.1, 0.9]), [0.5])
    assert ap[0] == pytest.approx(0.5)  # sorted by score: the exact one first, then a duplicate; recall 1/2


def _official_get_ap(y_true, y_score):
    """The documented reference rule with sklearn (the official code's dependency), for the cross-check."""
    from sklearn.metrics import precision_recall_curve

    if len(set(y_true)) == 1:
        return 0.0 if y_true[0] == 0 else 1.0
    precision, recall, _ = precision_recall_curve(y_true, y_score)
    recall = recall.astype(np.float32)
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    return float(np.mean(precision[np.where(np.diff(recall))]))


def test_binary_ap_matches_sklearn_rule_with_ties():
    rng = np.random.default_rng(1)
    for n in (2, 5, 20, 75):
        for _ in range(8):
            y = (rng.random(n) < 0.3).astype(float)
            s = np.round(rng.random(n), 1)  # many ties
            assert binary_ap(y, s) == pytest.approx(_official_get_ap(y, s), abs=1e-12)
    assert binary_ap(np.zeros(4), np.arange(4.0)) == 0.0
    assert binary_ap(np.ones(4), np.arange(4.0)) == 1.0
    assert binary_ap(np.array([0, 1, 0, 1.0]), np.array([0.1, 0.9, 0.2, 0.8])) == 1.0


def test_length_buckets_keep_windows_in_range():
    gts = [{"qid": 1, "relevant_windows": [[0, 8], [20, 60]]}, {"qid": 2, "relevant_windows": [[0, 20]]}]
    preds = [{"qid": 1}, {"qid": 2}]
    p, g = filter_by_length(preds, gts, 0, 10)
    assert [d["qid"] for d in p] == [1] and g[0]["relevant_windows"] == [[0, 8]]
    p, g = filter_by_length(preds, gts, 10, 30)
    assert [d["qid"] for d in p] == [2]
    p, g = filter_by_length(preds, gts, 30, 150)
    assert g[0]["relevant_windows"] == [[20, 60]]
    assert gts[0]["relevant_windows"] == [[0, 8], [20, 60]]  # the input is not modified
    assert filter_by_length(preds, gts, 0, 150) == (preds, gts)


def test_r1_uses_the_first_listed_window_and_map_truncates_to_ten():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}]
    # the first listed window misses although a later one has a higher score: official R1 takes [0]
    preds = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.1], [0, 10, 0.9]]}]
    assert compute_mr_r1(preds, gts)["0.5"] == 0.0
    assert compute_mr_ap(preds, gts)["0.5"] == 100.0
    # an exact hit listed 11th is cut by max_pred_windows=10
    many = [{"qid": 1, "pred_relevant_windows": [[50, 60, 0.9]] * 10 + [[0, 10, 0.95]]}]
    assert compute_mr_ap(many, gts)["0.5"] == 0.0
    assert compute_mr_ap(many, gts, max_pred_windows=None)["0.5"] == 100.0


def test_qid_mismatch_is_a_clear_error_or_filtered():
    gts = [{"qid": 1, "relevant_windows": [[0, 20]]}, {"qid": 2, "relevant_windows": [[0, 20]]}]
    preds = [{"qid": 1, "pred_relevant_windows": [[0, 20, 1.0]]}, {"qid": 3, "pred_relevant_windows": [[0, 1, 1.0]]}]
    with pytest.raises(DataFormatError, match="1 without a prediction .*1 unknown"):
        eval_submission(preds, gts)
    out = eval_submission(preds, gts, match_number=False)
    assert out["brief"]["MR-full-R1@0.5"] == 100.0
    assert out["brief"]["MR-short-mAP"] is None  # an empty length bucket has no value


def test_empty_prediction_list_is_a_miss():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[0, 10]]}]
    preds = [{"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]}, {"qid": 2, "pred_relevant_windows": []}]
    assert compute_mr_r1(preds, gts)["0.5"] == 50.0
    assert compute_mr_ap(preds, gts)["0.5"] == 50.0

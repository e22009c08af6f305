"""OVG-HQ online metrics (spec video.md 3.5, 3.9 Checks): the reference file to every number, timeliness weights by
hand, omAP/oR@1 == offline when nothing is late, and a 2-query weighted-AP example."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import ConfigError
from polymodal.video.grounding.metrics.moment_detr import eval_submission
from polymodal.video.grounding.metrics.online import evaluate, merge_reports, query_scores, timeliness_weight

FIXTURES = Path(__file__).parent / "fixtures" / "qvhighlights"


def _jsonl(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def gts():
    return _jsonl("highlight_val_release.jsonl")


def test_reference_file_every_number_and_key_order(gts):
    preds = _jsonl("sample_online_val_preds.jsonl")
    t0 = time.perf_counter()
    online = evaluate(preds, gts)
    seconds = time.perf_counter() - t0
    report = merge_reports(eval_submission(preds, gts), online)
    reference = json.loads((FIXTURES / "sample_online_val_preds_metrics.json").read_text())
    assert json.dumps(report) == json.dumps(reference)  # 422 numbers, keys in the reference's order
    brief = report["brief"]
    assert brief["On-Avg-R1@0.5_pos"] == 20.94 and brief["On-Avg-mAP@Avg_pos"] == 13.12
    assert brief["OFF-mAP@Avg"] == 45.95 and brief["On3-R1@0.5_pos"] == 20.49
    assert brief["On-Avg-R1@0.5_minus"] == -78.22 and brief["On-Avg-mAP@0.5_pos_gamma"] == 29.51
    assert seconds < 30, f"online evaluation of val took {seconds:.1f} s"


@pytest.mark.parametrize("g, expected", [(8.0, 1.0), (10.0, 1.0), (12.0, 0.5), (14.0, 0.0), (20.0, 0.0)])
def test_pos_weight_hand_values(g, expected):
    # GT [4, 10], L = 4: 1 up to e*, 0.5 at e* + L/2, 0 at e* + L and beyond
    assert timeliness_weight(g, 4.0, 10.0, 4.0, "pos") == pytest.approx(expected)


@pytest.mark.parametrize("g, zero, minus", [(2.0, 1.0, 1.0), (4.0, 1.0, 1.0), (7.0, 0.75, 0.5), (10.0, 0.5, 0.0),
                                            (12.0, 0.25, -0.5), (14.0, 0.0, -1.0), (30.0, 0.0, -1.0)])
def test_zero_and_minus_weight_hand_values(g, zero, minus):
    # GT [4, 10], L = 4: "zero" 1 at s*, 0.5 at e*, 0 at e* + L; "minus" 1 at s*, 0 at e*, -1 at e* + L
    assert timeliness_weight(g, 4.0, 10.0, 4.0, "zero") == pytest.approx(zero)
    assert timeliness_weight(g, 4.0, 10.0, 4.0, "minus") == pytest.approx(minus)


def test_weight_arguments_are_checked():
    with pytest.raises(ConfigError, match="expected one of"):
        timeliness_weight(1.0, 0.0, 2.0, 1.0, "gamma")
    with pytest.raises(ConfigError, match="positive"):
        timeliness_weight(1.0, 0.0, 2.0, 0.0, "pos")
    with pytest.raises(ConfigError, match="omap_variant"):
        evaluate([{"qid": 1, "pred_relevant_windows": []}], [{"qid": 1, "relevant_windows": [[0, 1]]}],
                 omap_variant="other")


def test_online_equals_offline_when_nothing_is_late(gts):
    """Every g <= s* <= e* (emitted at time 0) and <= 10 predictions: omAP == mAP and oR@1 == R1, for any L."""
    preds = _jsonl("sample_val_preds.jsonl")[:400]
    sub_gts = gts[:400]
    assert [d["qid"] for d in preds] == [d["qid"] for d in sub_gts]
    online_preds = [{"qid": d["qid"], "pred_relevant_windows": [w[:3] + [0.0] for w in d["pred_relevant_windows"]]}
                    for d in preds]
    offline = eval_submission(preds, sub_gts)["full"]
    online = evaluate(online_preds, sub_gts)["full"]
    for L in ("1", "3", "5"):
        for variant in ("pos", "zero", "minus"):
            assert online["MR-mAP"][f"edlen_{L}_{variant}_online"] == offline["MR-mAP"]
            for t, value in offline["MR-R1"].items():
                expected = value if variant != "minus" else 2 * value - 100.0  # hit: beta 1, miss: -1
                assert online["MR-R1"][f"{t}_edlen_{L}_{variant}_online"] == pytest.approx(expected, abs=0.011)
        assert online["MR-mAP"][f"edlen_{L}_pos_online_gamma"]["0.5"] == 100.0
    assert online["MR-mAP"]["offline"] == offline["MR-mAP"]


def test_two_query_weighted_ap_by_hand():
    gts = [{"qid": "a", "relevant_windows": [[0, 10]]}, {"qid": "b", "relevant_windows": [[0, 10], [20, 30]]}]
    preds = [
        # a: exact window emitted 2 s late (L = 4 -> beta 0.5), then a false positive
        {"qid": "a", "pred_relevant_windows": [[0, 10, 0.9, 12.0], [40, 50, 0.5, 52.0]]},
        # b: second GT on time (beta 1), then the first GT 3 s late (beta 0.25)
        {"qid": "b", "pred_relevant_windows": [[20, 30, 0.8, 30.0], [0, 10, 0.7, 13.0]]},
    ]
    out = evaluate(preds, gts, tolerances=(4,), brief_tolerances=(4,))
    # a: W = [.5, .5], precision [.5, .25], recall [.5, .5] -> AP 0.25
    # b: W = [1, 1.25], precision [1, .625], recall [.5, .625] -> AP .5 * 1 + .125 * .625 = 0.578125
    online = out["full"]["MR-mAP"]["edlen_4_pos_online"]
    assert online["0.5"] == online["0.95"] == online["average"] == round(100 * (0.25 + 0.578125) / 2, 2)
    assert out["full"]["MR-mAP"]["offline"]["0.5"] == 100.0  # binary: both queries rank their hits first
    assert out["brief"]["On4-mAP@0.5_pos"] == 41.41
    assert out["brief"]["On4-mAP@0.5_pos_gamma"] == 41.41  # online / offline = 0.4140625 / 1
    assert out["brief"]["On-Avg-R1@0.5_pos"] == 75.0  # a: 0.5, b: 1
    assert out["brief"]["On-Avg-R1@0.5_minus"] == -25.0  # a: -0.5, b: 0 (emitted exactly at e*)


def test_paper_variant_reduces_to_uninterpolated_ap_without_delay():
    gts = np.array([[0.0, 10.0], [20.0, 30.0]])
    # hit, miss, hit, all emitted before the window ends
    windows = np.array([[0, 10, 0.9, 5.0], [50, 60, 0.8, 60.0], [20, 30, 0.7, 25.0]])
    ap, _ = query_scores(windows, gts, [("pos", 1.0)], omap_variant="paper")
    assert ap[1, 0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)  # sum of (R_j - R_{j-1}) P_j
    code, _ = query_scores(windows, gts, [("pos", 1.0)])
    assert code[1, 0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_no_prediction_is_a_miss_and_minus_scores_minus_one():
    gts = [{"qid": 1, "relevant_windows": [[0, 10]]}, {"qid": 2, "relevant_windows": [[0, 10]]}]
    preds = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.9, 8.0]]}, {"qid": 2, "pred_relevant_windows": []}]
    brief = evaluate(preds, gts)["brief"]
    assert brief["On-Avg-R1@0.5_pos"] == 50.0 and brief["On-Avg-mAP@0.5_pos"] == 50.0
    assert brief["On-Avg-R1@0.5_minus"] == round(100 * (0.2 - 1) / 2, 2)  # g = 8 in [0, 10]: 1 - 8/10


def test_merge_keeps_the_offline_highlight_keys_only():
    offline = {"brief": {"MR-full-mAP": 1.0, "HL-min-Fair-mAP": 2.0}, "HL-min-Fair": {"HL-mAP": 2.0},
               "full": {"MR-mAP": {}}, "short": {}}
    online = {"brief": {"OFF-R1@0.5": 3.0}, "full": {"MR-mAP": {"offline": {}}}}
    merged = merge_reports(offline, online)
    assert list(merged) == ["brief", "HL-min-Fair", "full"]
    assert list(merged["brief"].items()) == [("OFF-R1@0.5", 3.0), ("HL-min-Fair-mAP", 2.0)]
    assert merged["full"] is online["full"]

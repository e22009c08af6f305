"""``polymodal eval moment-retrieval``: golden output through the CLI, atomic --out, and clear errors on bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from polymodal.cli import main
from polymodal.core.errors import DataFormatError
from polymodal.video.grounding.metrics.cli import run_moment_retrieval_eval
from polymodal.video.grounding.metrics.io import load_predictions, load_submission

FIXTURES = Path(__file__).parent / "fixtures" / "qvhighlights"
GT = FIXTURES / "highlight_val_release.jsonl"


def _write(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows))
    return path


def test_cli_offline_golden_stdout_and_out_file(tmp_path, capsys):
    out = tmp_path / "deep" / "metrics.json"
    rc = main(["eval", "moment-retrieval", "--pred", str(FIXTURES / "sample_val_preds.jsonl"), "--gt", str(GT),
               "--out", str(out)])
    assert rc == 0
    reference = json.loads((FIXTURES / "sample_val_preds_metrics_raw.json").read_text())
    assert json.loads(capsys.readouterr().out) == reference["brief"]
    assert json.dumps(json.loads(out.read_text())) == json.dumps(reference)
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left behind


def test_cli_online_on_a_subset_matches_the_library(tmp_path, capsys):
    from polymodal.video.grounding.metrics import eval_submission, evaluate, merge_reports

    gts = [json.loads(x) for x in GT.read_text().splitlines()[:60]]
    preds = [json.loads(x) for x in (FIXTURES / "sample_online_val_preds.jsonl").read_text().splitlines()[:60]]
    gt_file, pred_file = _write(tmp_path / "gt.jsonl", gts), _write(tmp_path / "pred.jsonl", preds)
    out = tmp_path / "online.json"
    assert run_moment_retrieval_eval(pred_file, gt_file, online=True, out=out) == 0
    expected = json.loads(json.dumps(merge_reports(eval_submission(preds, gts), evaluate(preds, gts))))
    assert json.loads(capsys.readouterr().out) == expected["brief"]
    assert json.loads(out.read_text()) == expected
    assert "On-Avg-R1@0.5_pos" in expected["brief"] and "HL-min-Fair-mAP" in expected["brief"]


GT_ROW = {"qid": 1, "query": "q", "duration": 20, "vid": "v", "relevant_windows": [[2, 8]],
          "relevant_clip_ids": [1, 2, 3], "saliency_scores": [[1, 2, 3], [4, 4, 4], [0, 1, 2]]}
PRED_ROW = {"qid": 1, "pred_relevant_windows": [[2, 8, 0.9, 10.0]], "pred_saliency_scores": [0.1] * 10}


@pytest.mark.parametrize("which, row, message", [
    ("gt", "{not json", r"gt\.jsonl, line 2: not valid JSON"),
    ("gt", {**GT_ROW, "qid": 2, "relevant_windows": [[9, 3]]}, r"line 2: relevant_windows\[0\]: start 9 > end 3"),
    ("gt", {k: v for k, v in GT_ROW.items() if k != "qid"}, r"line 2: missing field 'qid'"),
    ("gt", {**GT_ROW, "qid": 2, "relevant_windows": []}, r"line 2: relevant_windows is empty"),
    ("gt", {**GT_ROW, "qid": 2, "relevant_clip_ids": [1, 99]}, r"line 2: 2 relevant_clip_ids but 3 saliency"),
    ("gt", GT_ROW, r"line 2: qid 1 appears again \(first on line 1\)"),
    ("pred", {**PRED_ROW, "qid": 7}, r"pred\.jsonl, line 2: qid 7 is not in the ground truth"),
    ("pred", {**PRED_ROW, "qid": 2, "pred_relevant_windows": [[1, 2]]}, r"line 2: pred_relevant_windows\[0\] = \[1, 2\]"),
    ("pred", {"qid": 2, "pred_relevant_windows": [[1, "x", 3, 4]]}, r"line 2: pred_relevant_windows\[0\]"),
    ("pred", {"qid": 2, "pred_relevant_windows": [[1, 3, 0.5, 4]]}, r"line 2: pred_saliency_scores: missing"),
])
def test_malformed_files_fail_with_file_line_and_field(tmp_path, capsys, which, row, message):
    gt_rows = [GT_ROW] + ([row] if which == "gt" else [{**GT_ROW, "qid": 2}])
    pred_rows = [PRED_ROW] + ([row] if which == "pred" else [{**PRED_ROW, "qid": 2}])
    gt_file, pred_file = _write(tmp_path / "gt.jsonl", gt_rows), _write(tmp_path / "pred.jsonl", pred_rows)
    rc = main(["eval", "moment-retrieval", "--pred", str(pred_file), "--gt", str(gt_file), "--online"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and re.search(message, err), err


def test_missing_predictions_missing_file_and_online_gentime(tmp_path):
    gt_file = _write(tmp_path / "gt.jsonl", [GT_ROW, {**GT_ROW, "qid": 2}])
    pred_file = _write(tmp_path / "pred.jsonl", [PRED_ROW])
    with pytest.raises(DataFormatError, match=r"1 ground-truth queries have no prediction \(e.g. qid \[2\]\)"):
        load_submission(pred_file, gt_file)
    with pytest.raises(DataFormatError, match="nope.jsonl: file not found"):
        load_submission(tmp_path / "nope.jsonl", gt_file)
    offline_only = _write(tmp_path / "off.jsonl", [{"qid": 1, "pred_relevant_windows": [[2, 8, 0.9]]}])
    assert load_predictions(offline_only)[0]["qid"] == 1
    with pytest.raises(DataFormatError, match=r"line 1: .*expected \[start, end, score, gentime\]"):
        load_predictions(offline_only, online=True)
    with pytest.raises(DataFormatError, match="no rows"):
        load_predictions(_write(tmp_path / "empty.jsonl", ["", "  "]))


def test_reversed_prediction_window_is_kept_as_a_miss_unless_strict(tmp_path, capsys):
    rows = [{"qid": 1, "pred_relevant_windows": [[155.2, 150, 0.9, 154.0], [2, 8, 0.5, 9.0]]}]
    pred_file = _write(tmp_path / "pred.jsonl", rows)
    assert len(load_predictions(pred_file, online=True)) == 1
    assert "1 predicted window(s) with start > end (first on line 1)" in capsys.readouterr().err
    with pytest.raises(DataFormatError, match=r"line 1: pred_relevant_windows\[0\]: start 155.2 > end 150"):
        load_predictions(pred_file, online=True, strict=True)

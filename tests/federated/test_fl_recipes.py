"""The byrd-nafl compare: rows named optimizer/aggregator/attack, curves, rounds-to-target report, resume."""

import json

from polymodal.core.execute import prepare_compare, run_compare
from polymodal.core.registry import get_recipe

SMALL = {"rounds": 6, "eval_every": 2, "n_workers": 8, "n_byzantine": 2, "aggregators": ["coordinate_median", "krum"],
         "attacks": ["sign_flip", "label_flip"], "hidden": 16}


def test_grid_rows_report_and_resume(tmp_path):
    d = prepare_compare(get_recipe("byrd-nafl"), overrides=SMALL, quick=True, out=tmp_path / "cmp")
    result = run_compare(d, isolate=False)
    names = [r["method"] for r in result["rows"]]
    assert names[:4] == ["nafl/coordinate_median/sign_flip", "nafl/coordinate_median/label_flip",
                         "nafl/krum/sign_flip", "nafl/krum/label_flip"]
    assert {"sgd/krum/label_flip", "heavy-ball/coordinate_median/sign_flip", "nafl/mean/sign_flip",
            "fedavg/mean/none"} <= set(names)
    assert len(names) == 4 * 3 + 2 + 1
    row = result["rows"][0]["metrics"]
    assert 0 <= row["accuracy"] <= 1 and row["best_accuracy"] >= row["accuracy"]
    extra = json.loads((d / "byrd-nafl" / "result.json").read_text())["extra"]
    assert [r for r, _ in extra["curves"]["nafl/krum/sign_flip"]] == [2, 4, 6]
    report = (d / "report.md").read_text()
    assert "## Rounds to the target accuracy" in report and (d / "accuracy_curves.png").is_file()
    # a finished cell is never recomputed: a resumed grid reads it back
    cells = json.loads((d / "byrd-sgd" / "cells.json").read_text())
    assert set(cells) == {n for n in names if n.startswith("sgd/")}

"""The sg-urinit suite: rows <backbone> and <backbone>+sg-urinit, cold-item metrics, convergence report."""

import json

import pytest

from polymodal.core.errors import ConfigError
from polymodal.core.execute import make_config, prepare_compare, run_compare, run_in_dir, start_run
from polymodal.core.registry import get_recipe

FAST = {"epochs": 3, "warm_up_epochs": 1, "text_mode": "hash", "urinit_clusters": 8, "synth_users": 120,
        "synth_items": 150}


def test_suite_rows_cold_metrics_and_report(tmp_path):
    recipe = get_recipe("sg-urinit")
    only = ["vbpr", "vbpr+sg-urinit", "freedom", "freedom+sg-urinit"]
    d = prepare_compare(recipe, overrides=FAST, quick=True, only=only, out=tmp_path / "cmp")
    result = run_compare(d, isolate=False)
    assert [r["method"] for r in result["rows"]] == only
    for row in result["rows"]:
        assert {"recall@20", "ndcg@20", "cold/recall@20", "cold/ndcg@20"} <= set(row["metrics"])
    on_disk = json.loads((d / "result.json").read_text())
    assert on_disk["recipe"] == "sg-urinit" and on_disk["primary_metric"] == "ndcg@20"
    extra = json.loads((d / "freedom+sg-urinit" / "result.json").read_text())["extra"]
    assert extra["init"] == "sg-urinit" and extra["init_seconds"] > 0 and extra["cold_items"] == 30
    plain_extra = json.loads((d / "freedom" / "result.json").read_text())["extra"]
    assert "init" not in plain_extra and plain_extra["cold_items"] == 30  # same cold split for both inits
    report = (d / "report.md").read_text()
    assert "freedom+sg-urinit vs freedom" in report and "## SG-URInit on each backbone" in report
    assert (d / "convergence.png").stat().st_size > 1000
    cfg = (d / "vbpr" / "config.yaml").read_text()
    assert "multimodal: true" in cfg and "cold_item_frac: 0.2" in cfg


def test_run_sg_urinit_uses_the_chosen_backbone(tmp_path):
    recipe = get_recipe("sg-urinit")
    cfg = make_config(recipe, quick=True, overrides={**FAST, "backbone": "lightgcn", "projection": "pca"})
    out = run_in_dir(start_run(recipe, cfg, out=tmp_path / "run"))
    assert out["rows"][0]["method"] == "sg-urinit"
    assert out["extra"]["init"] == "sg-urinit" and "cold/ndcg@20" in out["rows"][0]["metrics"]


def test_suite_refuses_unknown_rows(tmp_path):
    with pytest.raises(ConfigError, match="does not compare"):
        prepare_compare(get_recipe("sg-urinit"), quick=True, only=["sgl"], out=tmp_path / "x")

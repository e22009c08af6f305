"""The demo report: headline arithmetic, the overview, failures, and a self-contained HTML page (issue 12)."""

import dataclasses
import re

from polymodal.core.registry import get_recipe
from polymodal.demo import write_report
from polymodal.demo.plan import DemoPlan
from polymodal.demo.render import overview_rows
from polymodal.demo.report import collect, headline


def _result(rows):
    return {"rows": [{"method": m, "metrics": metrics} for m, metrics in rows.items()]}


def test_headline_picks_the_best_listed_baseline():
    r = dataclasses.replace(get_recipe("nlgcl"), headline=("nlgcl", ("a", "b", "c")), primary_metric="acc")
    res = _result({"nlgcl": {"acc": 0.5}, "a": {"acc": 0.4}, "b": {"acc": 0.6}, "c": {"acc": float("nan")},
                   "nlgcl-ablation": {"acc": 0.9}})
    h = headline(r, res)
    assert (h.method, h.value, h.baseline, h.baseline_value) == ("nlgcl", 0.5, "b", 0.6)
    assert abs(h.delta - (-0.1)) < 1e-12 and h.method_wins is False


def test_headline_lower_is_better_metric():
    r = dataclasses.replace(get_recipe("nlgcl"), headline=("m", ("a", "b")), primary_metric="test_loss")
    h = headline(r, _result({"m": {"test_loss": 0.3}, "a": {"test_loss": 0.5}, "b": {"test_loss": 0.4}}))
    assert (h.baseline, h.baseline_value) == ("b", 0.4) and h.method_wins is True


def test_headline_default_is_own_row_vs_every_other_and_missing_rows():
    r = dataclasses.replace(get_recipe("nlgcl"), headline=(), primary_metric="acc")
    h = headline(r, _result({"nlgcl": {"acc": 0.7}, "x": {"acc": 0.6}, "y": {"acc": 0.65}}))
    assert (h.baseline, h.method_wins) == ("y", True)
    assert headline(r, _result({"x": {"acc": 0.6}})) is None  # the method's row is missing
    lone = headline(r, _result({"nlgcl": {"acc": 0.7}}))
    assert lone.baseline is None and lone.delta is None


def test_collect_reads_finished_and_failed_systems(fake_demo):
    done, failed = collect(fake_demo, DemoPlan.load(fake_demo))
    assert done.status == "finished" and "ndcg@20" in done.headers and len(done.rows) == 4
    assert done.headline.baseline == "lightgcn"  # nlgcl's declared baselines; the NaN row is skipped
    assert [p.name for p in done.images] == ["bars.png"]
    assert done.docs is not None and done.docs.name == "nlgcl.md"
    assert failed.status == "failed" and "line 3: field 'question' is missing" in failed.error
    assert "Traceback" in failed.log_tail
    rows = overview_rows([done, failed])
    assert rows[0][4:7] == ["0.3000 (nlgcl)", "0.2500 (lightgcn)", "+0.0500 ✓"] and rows[0][7] == "1m15s"
    assert rows[1][-1].startswith("failed: method 'ccd' failed: DataFormatError")


def test_written_report_md_and_self_contained_html(fake_demo):
    md_path = write_report(fake_demo)
    md = md_path.read_text()
    assert md.count("\n## ") == 3  # overview + two systems
    assert "![nlgcl bars](nlgcl/bars.png)" in md and "**Failed:** method 'ccd' failed" in md
    assert "setting smoke: the recipe's quick setting with " in md and "epochs=3" in md
    page = (fake_demo / "report.html").read_text()
    assert page.count('<section class="system"') == 2
    assert re.search(r'id="sys-ccd" data-status="failed"', page)
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)  # plots embedded
    assert "<script" not in page and "http://" not in page and "https://" not in page  # nothing fetched

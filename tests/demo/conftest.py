"""Demo tests: a hand-made demo folder (no recipe runs) for the report and plan tests."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from polymodal.core.registry import get_recipe  # noqa: E402
from polymodal.demo.plan import DemoPlan, write_status  # noqa: E402


def _png(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar(["a", "b"], [1, 2])
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture
def fake_demo(tmp_path) -> Path:
    """A demo folder of two systems as the runner leaves it: nlgcl finished (result.json + a plot), ccd failed."""
    d = tmp_path / "demo"
    d.mkdir()
    DemoPlan.build([get_recipe("nlgcl"), get_recipe("ccd")], "smoke", {"nlgcl": {"epochs": 3}}).save(d)
    sub = d / "nlgcl"
    sub.mkdir()
    rows = [("nlgcl", 0.30), ("mf-bpr", 0.20), ("lightgcn", 0.25), ("sgl", float("nan"))]
    result = {"recipe": "nlgcl", "primary_metric": "ndcg@20", "rows": [
        {"method": m, "metrics": {"ndcg@20": v, "recall@20": v + 0.1}, "train_seconds": 1.5, "peak_rss_mb": 300.0}
        for m, v in rows]}
    (sub / "result.json").write_text(json.dumps(result))
    _png(sub / "bars.png")
    write_status(sub, status="finished", seconds=75.0, cpu_seconds=70.0)
    fail = d / "ccd"
    fail.mkdir()
    (fail / "demo-error.json").write_text(json.dumps({"error": "method 'ccd' failed: DataFormatError: bad.jsonl "
                                                               "line 3: field 'question' is missing"}))
    (fail / "demo.log").write_text("starting\nTraceback (most recent call last):\nDataFormatError: bad.jsonl line 3\n")
    write_status(fail, status="failed", seconds=4.0, exit=1, error="x")
    return d

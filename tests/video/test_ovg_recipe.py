"""Recipe ``ovg-hq`` end to end on tiny settings: rows, per-modality metrics, report extras, exact resume."""

import json
import math

import pytest
import torch

from polymodal.core.config import build_config
from polymodal.core.errors import ConfigError
from polymodal.core.registry import get_recipe
from polymodal.core.runs import Run
from polymodal.video.grounding import recipe as ovg

TINY = {"n_train": 12, "n_valid": 6, "dim": 32, "text": "hash", "width": 32, "query_hidden": 32, "heads": 2,
        "dropout": 0.0, "epochs": 2, "teacher_epochs": 1, "batch_size": 8, "seq_len": 4, "seq_stride": 16,
        "latency_steps": 5, "threads": 1, "methods": ("ovg-hq", "hybrid-expert")}


def _run(tmp_path, name="r", **over):
    cfg = build_config(ovg.OVGHQConfig, {**TINY, **over})
    return cfg, Run.create(tmp_path / name, "ovg-hq", cfg.model_dump(mode="json"))


def test_registered_with_the_issue_rows():
    r = get_recipe("ovg-hq")
    assert r.family == "video" and r.demo and r.primary_metric == "On-Avg-R1@0.5_pos"
    for row in ("ovg-hq", "lstm-memory", "attention-memory", "no-refinement", "no-distillation"):
        assert row in r.rows


def test_config_rejects_unknown_rows_and_modalities():
    with pytest.raises(Exception, match="give distinct names"):
        build_config(ovg.OVGHQConfig, {"methods": ("ovg-hq", "gru-memory")})
    with pytest.raises((ConfigError, ValueError)):
        build_config(ovg.OVGHQConfig, {"student_modalities": ("text", "audio")})


def test_tiny_run_rows_metrics_and_report(tmp_path):
    torch.set_num_threads(1)
    cfg, run = _run(tmp_path)
    res = ovg.run_ovg_hq(cfg, run)
    assert list(res.rows) == ["ovg-hq", "hybrid-expert"]
    for row, m in res.rows.items():
        for pre in ("", "image/", "segment/", "hybrid/"):
            for key in ("On-Avg-R1@0.5_pos", "On-Avg-R1@0.7_pos", "On-Avg-mAP@Avg_pos"):
                assert 0.0 <= m[pre + key] <= 100.0, (row, pre, key)
        assert m["ms_per_step"] > 0 and math.isfinite(m["final_train_loss"])
        tl = res.extra["timeliness"][row]
        assert tl["L"] == list(ovg.TIMELINESS_L) and all(a <= b + 1e-9 for a, b in zip(tl["r1"], tl["r1"][1:], strict=False))
    assert res.metrics == res.rows["ovg-hq"]
    lines = {r["row"] for r in run.read_metrics()}
    assert lines == {"hybrid-expert", "ovg-hq"}
    # report extras: the per-modality table and the timeliness plot

    (run.dir / "result.json").write_text(json.dumps({"extra": res.extra}))
    result = {"rows": [{"method": k, "metrics": v} for k, v in res.rows.items()]}
    md, images = ovg.ovg_report(tmp_path, result, {"ovg-hq": run.dir})
    assert any("hybrid R1@0.5" in line for line in md)
    assert images and images[0].is_file()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_numbers(tmp_path):
    torch.set_num_threads(1)
    over = {"methods": ("ovg-hq",), "latency_steps": 0}
    cfg, run = _run(tmp_path, "clean", **over)
    clean = ovg.run_ovg_hq(cfg, run)

    class Killed(Exception):
        pass

    cfg, run = _run(tmp_path, "killed", **over)
    real_log = Run.log

    def dying_log(self, step, **m):
        real_log(self, step, **m)
        if m.get("row") == "ovg-hq" and step == 1:
            raise Killed

    Run.log = dying_log
    try:
        with pytest.raises(Killed):
            ovg.run_ovg_hq(cfg, run)
    finally:
        Run.log = real_log
    resumed = ovg.run_ovg_hq(cfg, Run.open(tmp_path / "killed"))
    # NaN (e.g. no top-1 hit to time: top1_delay_s) must match NaN, so compare the rows as JSON text
    assert json.dumps(resumed.rows, sort_keys=True) == json.dumps(clean.rows, sort_keys=True)
    assert resumed.extra["curves"] == clean.extra["curves"]

"""Recipe ``audio-tta`` end to end with tiny settings (src/polymodal/video/tta_recipe.py; issue 8 rows)."""

from __future__ import annotations

import json

import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.core.runs import Run
from polymodal.video.synth import AUDIO_CLASSES, VIDEO_CLASSES
from polymodal.video.tta_recipe import ROWS, AudioTTAConfig, audio_tta_report, run_audio_tta

torch.set_num_threads(1)
CORRS = ("gaussian_noise", "contrast")


def tiny(**kw) -> AudioTTAConfig:
    base = dict(n_per_class=4, frames=4, size=16, epochs=1, audio_epochs=1, test_per_corruption=3,
                corruptions=CORRS, k_max=2, mapping="oracle", theta_audio=0.0, device="cpu", threads=1)
    return AudioTTAConfig(**{**base, **kw})


def test_tiny_run_has_every_row_and_metric_and_resumes(tmp_path):
    cfg = tiny()
    run = Run.create(tmp_path / "run", "audio-tta", cfg.model_dump(mode="json"))
    res = run_audio_tta(cfg, run)
    assert tuple(res.rows) == ROWS and res.metrics == res.rows["audio-tta"]
    for m in res.rows.values():
        assert {f"top1_{c}" for c in CORRS} <= set(m)
        assert m["top1"] == pytest.approx(sum(m[f"top1_{c}"] for c in CORRS) / 2)
        assert 0 <= m["top1"] <= 1 and m["seconds_per_video"] > 0
    assert res.rows["source"]["steps_mean"] == 0 and res.rows["tent"]["steps_mean"] == 1
    assert res.rows["audio-pl-fixed1"]["steps_mean"] == 1
    assert 1 <= res.rows["audio-tta"]["steps_mean"] <= 2  # theta_audio 0: every clip is adapted
    assert res.rows["audio-tta"]["pl_accept_rate"] == 1
    for row in ("audio-tta", "audio-pl-fixed1", "audio-pl-fixedk"):
        assert {"pl_accept_rate", "pl_used_rate", "pl_accuracy"} <= set(res.rows[row])
    hist = res.extra["step_histograms"]["audio-tta"]
    assert len(hist) == 3 and sum(hist) == 3 * len(CORRS) and hist[0] == 0
    saved = json.loads((run.dir / "label_mapping.json").read_text())
    assert saved["audio_labels"] == list(AUDIO_CLASSES) and saved["video_labels"] == list(VIDEO_CLASSES)
    cells = sorted(p.name for p in run.checkpoint_dir.glob("cell-*.pt"))
    assert len(cells) == len(ROWS) * len(CORRS)
    # resume: every cell is loaded, nothing re-adapted, same numbers
    again = run_audio_tta(cfg, Run.open(run.dir))
    assert again.rows == res.rows
    # report: per-corruption heat map and steps histogram
    result = {"rows": [{"method": r, "metrics": m} for r, m in res.rows.items()]}
    run.write_json("result.json", {"extra": res.extra})
    md, images = audio_tta_report(tmp_path, result, {"audio-tta": run.dir})
    assert any("per corruption" in line for line in md) and len(images) == 2
    assert all(p.is_file() for p in images)


def test_config_validation():
    with pytest.raises(ValueError, match="distinct names"):
        tiny(methods=("audio-tta", "shot"))
    with pytest.raises(ValueError, match="distinct names"):
        tiny(corruptions=("fog",))
    cfg = tiny(mapping="table", methods=("source",))
    with pytest.raises(ConfigError, match="mapping_table"):
        from polymodal.video.tta_recipe import build_mapping

        build_mapping(cfg, AUDIO_CLASSES, VIDEO_CLASSES, None)

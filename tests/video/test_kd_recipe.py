"""Recipe ``dual-teacher-kd`` end to end with tiny settings (src/polymodal/video/kd_recipe.py; spec video.md 1.5)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from pydantic import ValidationError

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.core.runs import Run
from polymodal.video.kd_recipe import ROWS, DualTeacherKDConfig, run_dual_teacher_kd

torch.set_num_threads(1)
TINY = {"n_per_class": 4, "n_classes": 3, "frames": 4, "size": 16, "epochs": 2, "teacher_epochs": 1,
        "vit_epochs": 1, "batch_size": 8, "threads": 1}


def _run(tmp_path, name="run", **kw):
    cfg = DualTeacherKDConfig(**{**TINY, **kw})
    run = Run.create(tmp_path / name, "dual-teacher-kd", cfg.model_dump())
    return cfg, run, run_dual_teacher_kd(cfg, run)


def test_rows_are_the_issues_names():
    assert ROWS[:5] == ("dual-teacher-kd", "student-alone", "kd-cnn", "kd-vit", "kd-avg")
    assert {"teacher-cnn", "teacher-vit", "datw-only", "fitnets"} <= set(ROWS)


def test_tiny_end_to_end_and_resume_skips_finished_rows(tmp_path, monkeypatch):
    cfg, run, res = _run(tmp_path)
    assert list(res.rows) == list(ROWS)
    for row, m in res.rows.items():
        assert 0 <= m["top1"] <= m["top5"] <= 1, row
        assert m["params"] > 0 and m["mmacs"] > 0
    student = res.rows["student-alone"]["params"]
    assert all(res.rows[r]["params"] == student for r in ROWS if not r.startswith("teacher"))
    assert res.rows["teacher-vit"]["params"] > res.rows["teacher-cnn"]["params"] > student
    check = res.extra["export_check"]
    assert check["ok"] and check["sdb_keys_in_export"] == 0 and check["max_abs_diff_vs_plain"] == 0.0
    assert check["exported_params"] == check["plain_student_params"] == int(student)
    assert check["dropped_training_only_params"] > 0
    assert 0 < res.extra["ratios_to_vit_teacher"]["student_params_vs_vit"] < 1
    assert len(res.extra["curves"]["dual-teacher-kd"]) == cfg.epochs
    assert all(0 <= w <= 1 for _, w in res.extra["omega_vit"]["dual-teacher-kd"])
    assert (run.dir / "checkpoints" / "row-dual-teacher-kd.pt").is_file()

    # resume: finished rows and teachers are loaded, nothing is trained again
    import polymodal.video.kd_recipe as kr

    def boom(*a, **k):
        raise AssertionError("a finished row was retrained")

    monkeypatch.setattr(kr, "fit", boom)
    monkeypatch.setattr(kr, "train_student_row", boom)
    monkeypatch.setattr("polymodal.video.train.train_classifier", boom)
    again = run_dual_teacher_kd(cfg, Run.open(run.dir))
    assert again.rows == res.rows


def test_unfinished_row_resumes_and_matches(tmp_path):
    """A row killed after its first epoch continues from the checkpoint and ends with the same numbers."""
    # constant lr: the "killed" run is simulated by a 1-epoch run, and a cosine schedule depends on the epoch count
    # (scheduled resumes are tested in test_video_train.py with a real kill)
    kw = {"methods": ("student-alone", "kd-cnn"), "epochs": 2, "schedule": "constant"}
    _, _, full = _run(tmp_path, "full", **kw)
    cfg, run, _ = _run(tmp_path, "part", **{**kw, "epochs": 1})
    # pretend the run was killed after epoch 1 of 2 in kd-cnn: drop the finished-row marker, keep the epoch checkpoint
    (run.dir / "checkpoints" / "row-kd-cnn.pt").unlink()
    cfg2 = cfg.model_copy(update={"epochs": 2})
    (run.dir / "checkpoints" / "row-student-alone.pt").unlink()
    resumed = run_dual_teacher_kd(cfg2, Run.open(run.dir))
    for row in kw["methods"]:
        assert resumed.rows[row]["top1"] == pytest.approx(full.rows[row]["top1"])
        assert resumed.rows[row]["test_loss"] == pytest.approx(full.rows[row]["test_loss"], rel=1e-4)


def test_methods_subset_trains_only_needed_teachers(tmp_path):
    _, run, res = _run(tmp_path, methods=("student-alone", "kd-cnn"))
    assert list(res.rows) == ["student-alone", "kd-cnn"]
    assert "vit_teacher" not in res.extra["sizes"]
    assert not (run.dir / "checkpoints" / "teacher-vit-final.pt").exists()


def test_config_errors():
    with pytest.raises(ValidationError, match="distinct names"):
        DualTeacherKDConfig(methods=("dual-teacher-kd", "nope"))
    with pytest.raises(ValidationError, match="multiple of 8"):
        DualTeacherKDConfig(size=20)
    with pytest.raises(ValidationError, match="even whole number"):
        DualTeacherKDConfig(frames=8, teacher_frames_downsample=8)
    with pytest.raises(ValidationError):
        DualTeacherKDConfig(tau=0)


def test_missing_data_folder_is_a_clear_error(tmp_path):
    cfg = DualTeacherKDConfig(**{**TINY, "data": str(tmp_path / "nowhere")})
    run = Run.create(tmp_path / "r", "dual-teacher-kd", cfg.model_dump())
    with pytest.raises(DataFormatError, match="nowhere"):
        run_dual_teacher_kd(cfg, run)


@pytest.mark.skipif(importlib.util.find_spec("av") is None, reason="PyAV is not installed")
def test_video_folder_smoke_path(tmp_path):
    from polymodal.video.media import write_clip
    from polymodal.video.synth import moving_shapes

    clips = moving_shapes(3, n_classes=2, frames=8, size=16, seed=0)
    root = tmp_path / "clips"
    counts: dict[int, int] = {}
    for v, label in zip(clips.video, clips.labels.tolist(), strict=True):
        counts[label] = counts.get(label, 0) + 1
        write_clip(root / clips.class_names[label].replace(" ", "_") / f"c{counts[label]}.mp4", v, fps=8)
    _, _, res = _run(tmp_path, data=str(root), methods=("dual-teacher-kd", "student-alone"), epochs=1)
    assert set(res.rows) == {"dual-teacher-kd", "student-alone"}
    assert res.extra["n_train"] + res.extra["n_test"] == 6 and res.extra["files"] == 6
    assert res.extra["class_names"] == sorted(n.replace(" ", "_") for n in clips.class_names[:2])
    # one class folder only: a ConfigError naming the field
    single = tmp_path / "single"
    write_clip(single / "a" / "x.mp4", clips.video[0], fps=8)
    cfg = DualTeacherKDConfig(**{**TINY, "data": str(single)})
    with pytest.raises(ConfigError, match="data"):
        run_dual_teacher_kd(cfg, Run.create(tmp_path / "r1", "dual-teacher-kd", cfg.model_dump()))


def test_result_json_has_size_table(tmp_path):
    _, run, res = _run(tmp_path, methods=("dual-teacher-kd",), epochs=1)
    assert set(res.extra["sizes"]) == {"student", "cnn_teacher", "vit_teacher"}
    json.dumps(res.extra)  # serialisable

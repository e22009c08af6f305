"""Run folders: atomic writes, metrics truncation on resume, checkpoints loadable with weights_only."""

import json

import pytest
import torch

from polymodal.core.errors import PolymodalError
from polymodal.core.runs import Run, atomic_write_text, new_run_dir


def test_atomic_write_leaves_no_temp_files_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")

    class Boom(Exception):
        pass

    from polymodal.core.runs import atomic_path

    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise Boom
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_run_lifecycle(tmp_path):
    d = new_run_dir(tmp_path, "toy")
    d2 = new_run_dir(tmp_path, "toy")
    assert d != d2 and d.name.endswith("-toy")
    run = Run.create(d, "toy", {"epochs": 3})
    for step in range(3):
        run.log(step, loss=1.0 / (step + 1))
    run.save_checkpoint({"w": torch.ones(2), "epoch": 1, "note": "x"})
    assert torch.equal(run.load_checkpoint()["w"], torch.ones(2))
    reopened = Run.open(d)
    assert reopened.config == {"epochs": 3} and reopened.recipe == "toy"
    reopened.truncate_metrics(1)
    assert [r["step"] for r in reopened.read_metrics()] == [0, 1]
    reopened.finish()
    assert json.loads((d / "run.json").read_text())["status"] == "finished"


def test_cut_metrics_line_is_ignored(tmp_path):
    run = Run.create(tmp_path / "r", "toy", {})
    run.log(0, loss=1.0)
    with open(run.metrics_path, "a") as fh:
        fh.write('{"step": 1, "lo')  # a kill mid-write
    assert [r["step"] for r in run.read_metrics()] == [0]


def test_open_rejects_non_run_folder(tmp_path):
    with pytest.raises(PolymodalError, match="not a polymodal run folder"):
        Run.open(tmp_path)

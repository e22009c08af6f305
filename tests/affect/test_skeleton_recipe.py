"""A tiny end-to-end ``skeleton-emotion`` run: every row on the same split, checkpoints, resume, errors."""

import json

import numpy as np
import pytest
import torch

from polymodal.affect.skeleton.recipe import ROWS, SkeletonEmotionConfig, make_splits, run_skeleton_emotion
from polymodal.core.config import build_config
from polymodal.core.errors import ConfigError
from polymodal.core.runs import Run

torch.set_num_threads(1)

TINY = {"n_per_class": 12, "frames": 24, "folds": 2, "epochs": 2, "gcn_channels": (8, 16), "cnn_width": 4,
        "rf_trees": 10, "threads": 1, "fusion_hidden": 8}


def test_tiny_run_has_every_row_and_resumes(tmp_path):
    cfg = build_config(SkeletonEmotionConfig, TINY)
    run = Run.create(tmp_path / "r", "skeleton-emotion", cfg.model_dump(mode="json"))
    res = run_skeleton_emotion(cfg, run)
    assert tuple(res.rows) == ROWS
    for m in res.rows.values():
        assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["macro_f1"] <= 1.0 and m["params"] > 0
    conf = np.asarray(res.extra["rows"]["end2endnet"]["confusion"])
    assert conf.shape == (4, 4) and conf.sum() == 48  # every gait tested once over the 2 folds
    assert len(list((tmp_path / "r" / "checkpoints").glob("*.pt"))) == len(ROWS) * 2
    again = run_skeleton_emotion(cfg, Run.open(tmp_path / "r"))  # all (row, fold) results are checkpointed
    assert again.rows == res.rows
    json.dumps(res.extra)


def test_splits_are_stratified_and_seeded():
    y = np.repeat(np.arange(4), 10)
    a, b = make_splits(y, 5, 0.2, 3), make_splits(y, 5, 0.2, 3)
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(a, b, strict=True))
    assert all(np.bincount(y[te]).tolist() == [2, 2, 2, 2] for _, te in a)
    assert sorted(np.concatenate([te for _, te in a]).tolist()) == list(range(40))
    with pytest.raises(ConfigError, match="folds"):
        make_splits(np.array([0, 0, 1]), 2, 0.2, 0)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="methods"):
        build_config(SkeletonEmotionConfig, {"methods": ["svm"]})
    with pytest.raises(ConfigError, match="temporal_kernel"):
        build_config(SkeletonEmotionConfig, {"temporal_kernel": 8})

"""Training loop: masking rule, early stopping, checkpoint resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.recsys.models.base import Recommender
from polymodal.recsys.synthetic import make_synthetic
from polymodal.recsys.train import TrainSettings, evaluate, sample_negatives


class OracleScores(Recommender):
    """Scores = weighted split indicators, so we know what an unmasked ranking would put first."""

    def __init__(self, data, w_train, w_valid, w_test):
        super().__init__(data.n_users, data.n_items)
        dense = (w_train * data.train_csr + w_valid * data.valid_csr + w_test * data.test_csr).toarray()
        self.table = torch.tensor(dense, dtype=torch.float32)

    def full_sort_scores(self, users):
        return self.table[users]


@pytest.fixture(scope="module")
def data():
    return make_synthetic(n_users=60, n_items=80, avg_degree=12, seed=3)


def test_validation_masks_train_items(data):
    s = TrainSettings(ks=(50,))
    # train items score highest, then valid: only masking train lets valid items reach the top
    res = evaluate(OracleScores(data, 10, 1, 0), data, "valid", s)
    n_valid = np.diff(data.valid_csr.indptr)
    users = n_valid > 0
    assert res["recall@50"] == pytest.approx(np.mean(np.minimum(n_valid[users], 50) / n_valid[users]))
    assert res["hit@50"] == 1.0


def test_test_masks_train_and_valid_in_recbole_preset(data):
    s = TrainSettings(ks=(5,), mask_valid_at_test=True)
    res = evaluate(OracleScores(data, 10, 5, 1), data, "test", s)
    n_test = np.diff(data.test_csr.indptr)
    users = n_test > 0
    expected = np.mean(np.minimum(n_test[users], 5) / n_test[users])
    assert res["recall@5"] == pytest.approx(expected)
    # the mmrec preset masks train only: valid items now outrank test items
    res_mmrec = evaluate(OracleScores(data, 10, 5, 1), data, "test", TrainSettings(ks=(5,), mask_valid_at_test=False))
    assert res_mmrec["recall@5"] < res["recall@5"]


def test_negatives_never_hit_training_items(data):
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(data.n_users), 50)
    neg = sample_negatives(users, data.train_csr, rng)
    assert not np.asarray(data.train_csr[users, neg]).any()
    assert len(np.unique(neg)) > data.n_items // 2  # uniform, not stuck on a few items


def _polymodal(*args, **kw):
    env = dict(os.environ, POLYMODAL_PROGRESS="0", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "polymodal.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


RUN_ARGS = ["--set", "epochs=24", "--set", "warm_up_epochs=24", "--set", "batch_size=256", "--set", "lr=5e-3",
            "--set", "synth_users=150", "--set", "synth_items=200", "--set", "threads=1"]


def test_sigkill_then_resume_gives_the_uninterrupted_result(tmp_path: Path):
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    assert _polymodal("run", "nlgcl", *RUN_ARGS, "--out", str(full_dir)).wait(timeout=300) == 0

    proc = _polymodal("run", "nlgcl", *RUN_ARGS, "--out", str(killed_dir))
    metrics = killed_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "result.json").exists(), "the run finished before it could be killed"
    assert json.loads((killed_dir / "run.json").read_text())["status"] == "running"
    assert (killed_dir / "checkpoints" / "last.pt").exists()

    assert _polymodal("run", "--resume", str(killed_dir)).wait(timeout=300) == 0
    full = json.loads((full_dir / "result.json").read_text())["rows"][0]["metrics"]
    resumed = json.loads((killed_dir / "result.json").read_text())["rows"][0]["metrics"]
    assert resumed == full
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == list(range(24))  # no duplicated or missing epoch lines
    meta = json.loads((killed_dir / "run.json").read_text())
    assert meta["status"] == "finished" and meta.get("resumes")

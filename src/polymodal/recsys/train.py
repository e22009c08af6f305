"""Training loop for every recommender (spec section 1.3), checkpointed every epoch.

One epoch = every training interaction once, shuffled, in batches; each positive gets one negative drawn
uniformly from the items the user has no training interaction with, redrawn every epoch. Adam. Valid
metrics after every epoch; early stopping after ``patience`` evaluations without improvement, never
before ``warm_up_epochs``; test metrics come from the best-valid checkpoint.

Every random draw of epoch e uses generators seeded from (seed, e), so a run resumed from the
checkpoint of epoch e−1 continues with exactly the numbers an uninterrupted run would have produced.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from polymodal.core.progress import progress_bar
from polymodal.core.runs import Run
from polymodal.recsys.data import InteractionData
from polymodal.recsys.metrics import METRICS, evaluate_full_ranking
from polymodal.recsys.models.base import Recommender


@dataclass
class TrainSettings:
    epochs: int = 500
    batch_size: int = 4096
    lr: float = 5e-4
    weight_decay: float = 0.0
    patience: int = 10
    warm_up_epochs: int = 30
    valid_metric: str = "ndcg@10"
    ks: tuple[int, ...] = (10, 20, 50)
    metrics: tuple[str, ...] = METRICS
    eval_chunk_users: int = 512
    mask_valid_at_test: bool = True
    seed: int = 2023
    device: str = "cpu"
    checkpoint_every: int = 1
    quiet: bool = False


@dataclass
class TrainResult:
    test: dict[str, float]
    best_valid: dict[str, float]
    best_epoch: int
    epochs_run: int
    train_seconds: float
    seconds_per_epoch: float
    history: list[dict[str, Any]] = field(default_factory=list)


def sample_negatives(users: np.ndarray, train_csr: sp.csr_matrix, rng: np.random.Generator,
                     keys: np.ndarray | None = None) -> np.ndarray:
    """One item per user drawn uniformly from the items that user has no training interaction with
    (rejection sampling: redraw only the draws that hit a training item). ``keys`` = sorted
    ``user * n_items + item`` of the training pairs, to skip rebuilding them on every call."""
    n_items = train_csr.shape[1]
    degree = np.diff(train_csr.indptr)
    if (degree[users] >= n_items).any():
        raise ValueError("a user interacted with every item in training; no negative can be drawn")
    if keys is None:
        keys = training_keys(train_csr)
    neg = rng.integers(0, n_items, size=users.size)
    todo = np.arange(users.size)
    while todo.size:
        q = users[todo].astype(np.int64) * n_items + neg[todo]
        pos = np.minimum(np.searchsorted(keys, q), keys.size - 1)
        todo = todo[keys[pos] == q]
        neg[todo] = rng.integers(0, n_items, size=todo.size)
    return neg


def training_keys(train_csr: sp.csr_matrix) -> np.ndarray:
    coo = train_csr.tocoo()
    return np.sort(coo.row.astype(np.int64) * train_csr.shape[1] + coo.col)


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def evaluate(model: Recommender, data: InteractionData, split: str, s: TrainSettings) -> dict[str, float]:
    """Full-ranking metrics on ``split`` ("valid" or "test") with the spec's masking rule."""
    model.eval()
    if split == "valid":
        truth, masks = data.valid_csr, [data.train_csr]
    else:
        truth = data.test_csr
        masks = [data.train_csr, data.valid_csr] if s.mask_valid_at_test else [data.train_csr]
    return evaluate_full_ranking(model.full_sort_scores, truth, masks, s.ks, s.metrics,
                                 chunk_users=s.eval_chunk_users, device=s.device)


def train(model: Recommender, data: InteractionData, s: TrainSettings, run: Run | None = None,
          *, label: str = "train") -> TrainResult:
    """Train ``model`` with early stopping; resume from ``run``'s checkpoint when one exists."""
    device = torch.device(s.device)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    train_csr = data.train_csr
    pairs = data.train
    keys = training_keys(train_csr)
    n_batches = int(np.ceil(len(pairs) / s.batch_size))

    start_epoch, best_score, best_epoch, bad, train_seconds = 0, -np.inf, -1, 0, 0.0
    best_state: dict[str, torch.Tensor] | None = None
    best_valid: dict[str, float] = {}
    history: list[dict[str, Any]] = []
    ckpt = run.load_checkpoint() if run is not None else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        best_state = ckpt["best_model"]
        start_epoch, best_epoch, bad = ckpt["epoch"] + 1, ckpt["best_epoch"], ckpt["bad_epochs"]
        best_score, train_seconds = ckpt["best_score"], ckpt["train_seconds"]
        best_valid = json.loads(ckpt["best_valid"])
        history = json.loads(ckpt["history"])
        run.truncate_metrics(ckpt["epoch"])
        run.note_resume(ckpt["epoch"])
    stopped = ckpt is not None and ckpt.get("stopped", False)

    with progress_bar(s.epochs, label, quiet=s.quiet) as bar:
        bar.advance(start_epoch)
        epoch = start_epoch - 1
        for epoch in range(start_epoch, s.epochs if not stopped else start_epoch):
            rng = _epoch_rng(s.seed, epoch)
            torch.manual_seed(s.seed * 100003 + epoch)
            model.train()
            t0 = time.perf_counter()
            model.pre_epoch(rng)
            order = rng.permutation(len(pairs))
            users_all, pos_all = pairs[order, 0], pairs[order, 1]
            neg_all = sample_negatives(users_all, train_csr, rng, keys)
            sums: dict[str, float] = {}
            for b in range(n_batches):
                sl = slice(b * s.batch_size, (b + 1) * s.batch_size)
                u = torch.as_tensor(users_all[sl], device=device)
                p = torch.as_tensor(pos_all[sl], device=device)
                n = torch.as_tensor(neg_all[sl], device=device)
                parts = model.calculate_loss(u, p, n)
                loss = sum(parts.values())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}, batch {b}: "
                                             f"parts {({k: float(v) for k, v in parts.items()})}; lower lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
            epoch_seconds = time.perf_counter() - t0
            train_seconds += epoch_seconds
            valid = evaluate(model, data, "valid", s)
            score = valid[s.valid_metric]
            row = {"loss": sum(sums.values()) / n_batches, **{f"loss/{k}": v / n_batches for k, v in sums.items()},
                   "epoch_seconds": epoch_seconds, **{f"valid/{k}": v for k, v in valid.items()}}
            if score > best_score:
                best_score, best_epoch, bad, best_valid = score, epoch, 0, valid
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                bad += 1
            stop = epoch + 1 >= s.warm_up_epochs and bad >= s.patience
            history.append({"epoch": epoch, "loss": row["loss"], s.valid_metric: score})
            if run is not None:
                run.log(epoch, **row)
                if (epoch + 1) % s.checkpoint_every == 0 or stop or epoch + 1 == s.epochs:
                    run.save_checkpoint({
                        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "optimizer": optimizer.state_dict(), "best_model": best_state, "epoch": epoch,
                        "best_epoch": best_epoch, "bad_epochs": bad, "best_score": float(best_score),
                        "train_seconds": train_seconds, "best_valid": json.dumps(best_valid),
                        "history": json.dumps(history), "stopped": stop})
            bar.advance()
            bar.update(loss=row["loss"], **{s.valid_metric: score}, best=best_score)
            if stop:
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, data, "test", s)
    epochs_run = len(history)
    return TrainResult(test=test, best_valid=best_valid, best_epoch=best_epoch, epochs_run=epochs_run,
                       train_seconds=train_seconds, seconds_per_epoch=train_seconds / max(epochs_run, 1),
                       history=history)

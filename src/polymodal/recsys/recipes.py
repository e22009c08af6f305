"""Recommendation recipes: NLGCL and its baselines (spec sections 2-4).

Every recipe shares ``RecsysConfig`` (data, split, training protocol = the NLGCL preset of spec 1.3);
``compare nlgcl`` copies those protocol fields to every baseline so all methods train on the same split,
seed, batch size, learning rate and epoch budget.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from polymodal.core.config import RecipeConfig
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.core.runtime import resolve_device
from polymodal.recsys.data import InteractionData
from polymodal.recsys.datasource import resolve_data
from polymodal.recsys.models import BPRMF, NLGCL, SGL, LightGCN, SimGCL, XSimGCL
from polymodal.recsys.models.graph import normalized_adjacency
from polymodal.recsys.train import TrainSettings, train


class RecsysConfig(RecipeConfig):
    """Data and training protocol (NLGCL preset: batch 4096, Adam 5e-4, ≤500 epochs, patience 10, warm-up 30)."""

    seed: int = Field(2023, ge=0, description="seed for init, negatives, shuffling and the split")
    split: Literal["recbole", "mmrec"] = Field("recbole", description="split preset (spec 1.2)")
    min_rating: float | None = Field(None, description="keep ratings >= this (RecBole atomic data)")
    user_core: int = Field(0, ge=0, description="k-core filter on users before splitting")
    item_core: int = Field(0, ge=0, description="k-core filter on items before splitting")
    synth_users: int = Field(300, ge=10, description="embedded synthetic data: users")
    synth_items: int = Field(400, ge=10, description="embedded synthetic data: items")
    epochs: int = Field(500, ge=1, description="maximum training epochs")
    batch_size: int = Field(4096, ge=1)
    lr: float = Field(5e-4, gt=0, le=1.0, description="Adam learning rate")
    patience: int = Field(10, ge=1, description="evaluations without valid improvement before stopping")
    warm_up_epochs: int = Field(30, ge=0, description="never stop before this many epochs")
    valid_metric: str = Field("ndcg@10", pattern=r"^(recall|ndcg|precision|hit|mrr|map)@\d+$")
    ks: tuple[int, ...] = Field((10, 20, 50), min_length=1)
    embedding_size: int = Field(64, ge=1)
    eval_chunk_users: int = Field(512, ge=1)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    multimodal: bool = Field(False, description="load item features: synthetic multimodal (texts + visual), "
                             "'ml-100k-side' (titles + genres) or an MMRec folder")
    text_mode: Literal["sentence", "hash"] = Field("sentence", description="synthetic item texts: MiniLM or hashed")
    cold_item_frac: float = Field(0.0, ge=0, lt=1, description="share of items made cold (0: no cold-start test)")

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "split", "min_rating", "user_core", "item_core", "synth_users",
                "synth_items", "epochs", "batch_size", "lr", "patience", "warm_up_epochs", "valid_metric", "ks",
                "embedding_size", "eval_chunk_users", "threads", "multimodal", "text_mode", "cold_item_frac")


class MFConfig(RecsysConfig):
    reg_weight: float = Field(1e-4, ge=0)


class LightGCNConfig(RecsysConfig):
    n_layers: int = Field(2, ge=1, le=8)
    reg_weight: float = Field(1e-4, ge=0)
    require_pow: bool = False


class NLGCLConfig(LightGCNConfig):
    cl_temp: float = Field(0.1, gt=0, description="tau")
    alpha: float = Field(0.6, ge=0, le=1, description="weight of the user term")
    cl_reg: float = Field(5e-5, ge=0, description="weight of L_cl")
    cl_reduction: Literal["sum", "mean"] = Field("sum", description="official code: sum over the batch")
    cl_layers: Literal["all", "last_only"] = Field("all", description="'last_only' reproduces the 2026-03-21 bug")


class SGLConfig(LightGCNConfig):
    n_layers: int = Field(3, ge=1, le=8)
    aug_type: Literal["ED", "ND", "RW"] = "ED"
    drop_ratio: float = Field(0.2, ge=0, lt=1)
    ssl_tau: float = Field(0.2, gt=0)
    ssl_weight: float = Field(0.01, ge=0)


class SimGCLConfig(LightGCNConfig):
    cl_weight: float = Field(0.5, ge=0, description="lambda")
    eps: float = Field(0.1, ge=0)
    cl_temp: float = Field(0.2, gt=0)
    simgcl_reduction: Literal["sum", "mean"] = Field(
        "sum", description="InfoNCE over the batch: 'sum' = RecBole-GNN (default), 'mean' = SELFRec (authors)")


class XSimGCLConfig(LightGCNConfig):
    cl_weight: float = Field(0.1, ge=0, description="lambda")
    eps: float = Field(0.2, ge=0)
    cl_temp: float = Field(0.2, gt=0)
    layer_cl: int = Field(1, ge=1)
    require_pow: bool = True


NLGCL_PAPER = Paper(
    title="NLGCL: Naturally Existing Neighbor Layers Graph Contrastive Learning for Recommendation",
    venue="RecSys 2025", arxiv="2507.07522", code="https://github.com/Jinfeng-Xu/NLGCL")
LIGHTGCN_PAPER = Paper(title="LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
                       venue="SIGIR 2020", arxiv="2002.02126")
MF_PAPER = Paper(title="BPR: Bayesian Personalized Ranking from Implicit Feedback", venue="UAI 2009",
                 arxiv="1205.2618")
SGL_PAPER = Paper(title="Self-supervised Graph Learning for Recommendation", venue="SIGIR 2021", arxiv="2010.10783")
SIMGCL_PAPER = Paper(title="Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for Recommendation",
                     venue="SIGIR 2022", arxiv="2112.08679")
XSIMGCL_PAPER = Paper(title="XSimGCL: Towards Extremely Simple Graph Contrastive Learning for Recommendation",
                      venue="TKDE 2023", arxiv="2209.02544")

#: the embedded-data setting of ``--quick`` (demo, tests): same protocol, smaller budget, faster lr
QUICK = {"epochs": 60, "warm_up_epochs": 10, "patience": 10, "batch_size": 1024, "lr": 5e-3}
#: ``polymodal demo``: one torch thread, a 150 x 200 synthetic graph and batch 512 (same epoch budget)
DEMO = {"threads": 1, "synth_users": 150, "synth_items": 200, "batch_size": 512}
#: ``polymodal demo --setting smoke``: two epochs on a 60 x 80 graph
SMOKE = {"threads": 1, "synth_users": 60, "synth_items": 80, "batch_size": 256, "epochs": 2, "warm_up_epochs": 0}
TABLE = ("recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50")
BASELINES = ("mf-bpr", "lightgcn", "sgl", "simgcl", "xsimgcl")


def _settings(cfg: RecsysConfig, device: str, data: InteractionData) -> TrainSettings:
    return TrainSettings(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, patience=cfg.patience,
                         warm_up_epochs=cfg.warm_up_epochs, valid_metric=cfg.valid_metric, ks=tuple(cfg.ks),
                         eval_chunk_users=cfg.eval_chunk_users, mask_valid_at_test=cfg.split == "recbole",
                         seed=cfg.seed, device=device)


def load_recipe_data(cfg: RecsysConfig) -> InteractionData:
    """The data a recsys recipe trains on: ID-only (``resolve_data``) or with item features (``multimodal``)."""
    if cfg.multimodal:
        from polymodal.recsys.datasource import resolve_multimodal_data

        return resolve_multimodal_data(cfg.data, split=cfg.split, seed=cfg.seed, synth_users=cfg.synth_users,
                                       synth_items=cfg.synth_items, text_mode=cfg.text_mode)
    return resolve_data(cfg.data, split=cfg.split, seed=cfg.seed, min_rating=cfg.min_rating,
                        user_core=cfg.user_core, item_core=cfg.item_core, synth_users=cfg.synth_users,
                        synth_items=cfg.synth_items)


def _train_and_report(name: str, cfg: RecsysConfig, run: Run, build, init=None) -> Result:
    """Load data, build the model, optionally initialise it (``init(model, data) -> dict`` of extras), train,
    evaluate on test and, with ``cold_item_frac > 0``, on the held-out cold items."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.valid_metric.split("@")[1] not in {str(k) for k in cfg.ks}:
        from polymodal.core.errors import ConfigError

        raise ConfigError(f"field 'valid_metric': {cfg.valid_metric} needs its K in field 'ks' {list(cfg.ks)}")
    device = resolve_device(cfg.device)
    data = load_recipe_data(cfg)
    cold = None
    if cfg.cold_item_frac > 0:
        from polymodal.recsys.coldstart import split_cold_items

        data, cold = split_cold_items(data, cfg.cold_item_frac, seed=cfg.seed)
        data.validate()
    run.write_json("data.json", data.summary())
    torch.manual_seed(cfg.seed)
    adj = normalized_adjacency(data.train[:, 0], data.train[:, 1], data.n_users, data.n_items)
    model = build(data, adj)
    extra: dict = {}
    if init is not None:
        extra.update(init(model, data))
    res = train(model, data, _settings(cfg, device, data), run, label=name)
    metrics = dict(res.test)
    if cold is not None:
        from polymodal.recsys.coldstart import evaluate_cold

        cold_metrics = evaluate_cold(model, cold, data.n_users, tuple(cfg.ks), device=device,
                                     chunk_users=cfg.eval_chunk_users)
        metrics.update({f"cold/{k}": v for k, v in cold_metrics.items()})
        extra["cold_items"] = int(cold.items.size)
        extra["cold_interactions"] = int(len(cold.pairs))
    return Result(metrics=metrics, train_seconds=res.train_seconds,
                  extra={"best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                         "seconds_per_epoch": res.seconds_per_epoch, "best_valid": res.best_valid,
                         "propagations_per_step": model.propagations_per_step, "data": data.summary(),
                         "device": device, **extra})


_COMMON = dict(family="recsys", primary_metric="ndcg@20", quick=QUICK, table_metrics=TABLE,
               curve_metric="valid/ndcg@10")


@recipe("nlgcl", paper=NLGCL_PAPER, config=NLGCLConfig, baselines=BASELINES, demo=True, demo_settings=DEMO,
        smoke_settings=SMOKE, headline=("nlgcl", BASELINES), **_COMMON)
def run_nlgcl(cfg: NLGCLConfig, run: Run) -> Result:
    """NLGCL: contrast each node's layer-l view with its neighbours' layer-(l-1) views (one propagation)."""
    return _train_and_report("nlgcl", cfg, run, lambda d, adj: NLGCL(
        d.n_users, d.n_items, adj, cfg.embedding_size, cfg.n_layers, cfg.cl_temp, cfg.alpha, cfg.cl_reg,
        cfg.reg_weight, cfg.cl_reduction, cfg.cl_layers, cfg.require_pow))


@recipe("lightgcn", paper=LIGHTGCN_PAPER, config=LightGCNConfig, baselines=("mf-bpr",), **_COMMON)
def run_lightgcn(cfg: LightGCNConfig, run: Run) -> Result:
    """LightGCN: linear propagation over the user-item graph, layer-mean readout, BPR."""
    return _train_and_report("lightgcn", cfg, run, lambda d, adj: LightGCN(
        d.n_users, d.n_items, adj, cfg.embedding_size, cfg.n_layers, cfg.reg_weight, cfg.require_pow))


@recipe("mf-bpr", paper=MF_PAPER, config=MFConfig, **_COMMON)
def run_mf(cfg: MFConfig, run: Run) -> Result:
    """BPR-MF: matrix factorisation trained with BPR (LightGCN with zero layers)."""
    return _train_and_report("mf-bpr", cfg, run, lambda d, adj: BPRMF(
        d.n_users, d.n_items, None, cfg.embedding_size, cfg.reg_weight))


@recipe("sgl", paper=SGL_PAPER, config=SGLConfig, **_COMMON)
def run_sgl(cfg: SGLConfig, run: Run) -> Result:
    """SGL: contrast two graph augmentations (edge/node dropout, random walk) re-drawn every epoch."""
    return _train_and_report("sgl", cfg, run, lambda d, adj: SGL(
        d.n_users, d.n_items, adj, d.train[:, 0], d.train[:, 1], cfg.embedding_size, cfg.n_layers,
        cfg.reg_weight, cfg.aug_type, cfg.drop_ratio, cfg.ssl_tau, cfg.ssl_weight, cfg.require_pow))


@recipe("simgcl", paper=SIMGCL_PAPER, config=SimGCLConfig, **_COMMON)
def run_simgcl(cfg: SimGCLConfig, run: Run) -> Result:
    """SimGCL: contrast two noise-perturbed propagations instead of graph augmentations."""
    return _train_and_report("simgcl", cfg, run, lambda d, adj: SimGCL(
        d.n_users, d.n_items, adj, cfg.embedding_size, cfg.n_layers, cfg.reg_weight, cfg.cl_weight, cfg.eps,
        cfg.cl_temp, cfg.require_pow, cfg.simgcl_reduction))


@recipe("xsimgcl", paper=XSIMGCL_PAPER, config=XSimGCLConfig, **_COMMON)
def run_xsimgcl(cfg: XSimGCLConfig, run: Run) -> Result:
    """XSimGCL: one perturbed propagation; contrast the final view with an intermediate layer."""
    if cfg.layer_cl > cfg.n_layers:
        from polymodal.core.errors import ConfigError

        raise ConfigError(f"field 'layer_cl': {cfg.layer_cl} exceeds n_layers {cfg.n_layers}")
    return _train_and_report("xsimgcl", cfg, run, lambda d, adj: XSimGCL(
        d.n_users, d.n_items, adj, cfg.embedding_size, cfg.n_layers, cfg.reg_weight, cfg.cl_weight, cfg.eps,
        cfg.cl_temp, cfg.layer_cl, cfg.require_pow))


from polymodal.recsys import mm_recipes as _mm_recipes  # noqa: E402,F401  (registers sg-urinit and backbones)

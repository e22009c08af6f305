"""Recipe ``skeleton-emotion``: the survey's four paradigms side by side (spec affect.md 3.4, 3.7).

One run trains every paradigm on the same stratified, seeded splits (5-fold CV by default, one 80/20 split in
``--quick``) and reports one row each: ``traditional-svm`` / ``traditional-rf`` (29 STEP features -> SVM RBF /
random forest), ``feat2net`` (ProxEmo-style skeleton image + group-conv CNN), ``featfusionnet`` (STEP-style
ST-GCN embedding ⊕ affective features -> MLP) and ``end2endnet`` (ST-GCN on the joints). Metrics: accuracy (mean
over folds, with its spread), macro-F1, per-class recall, parameter counts; a confusion matrix per paradigm.
Every (row, fold) result is checkpointed, so ``--resume`` skips finished ones.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.affect.skeleton.features import GaitFeatures
from polymodal.affect.skeleton.loaders import load_gaits
from polymodal.affect.skeleton.models import STGCN, SkeletonImageCNN, STEPNet, count_parameters
from polymodal.affect.skeleton.skeleton import Skeleton16, normalize_sequence, resample_time
from polymodal.affect.skeleton.synthetic import GaitDataset, make_synthetic_gaits
from polymodal.affect.skeleton.traditional import TraditionalClassifier
from polymodal.affect.skeleton.training import fit_network, predict_network
from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run

PAPER = Paper(title="Emotion Recognition from Skeleton Data: A Comprehensive Survey", venue="survey 2025",
              arxiv="2507.18026")
ROWS = ("traditional-svm", "traditional-rf", "feat2net", "featfusionnet", "end2endnet")
NETS = ("feat2net", "featfusionnet", "end2endnet")


class SkeletonEmotionConfig(RecipeConfig):
    """Four paradigms on the embedded synthetic gaits (spec 3.6) or an Emotion-Gait HDF5 / NumPy file."""

    data: str | None = Field(None, description="None = synthetic gaits; a features.h5 (Emotion-Gait/ProxEmo), "
                             ".npz (x, y) or .npy file")
    labels: str | None = Field(None, description="labels.h5 (Emotion-Gait) or labels .npy for data")
    label_names: tuple[str, ...] | None = Field(None, description="integer -> emotion names (default: STEP order "
                                                "angry, neutral, happy, sad for HDF5)")
    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    # synthetic data
    n_per_class: int = Field(100, ge=4, description="synthetic gaits per emotion")
    n_subjects: int = Field(20, ge=1, description="simulated walkers")
    separation: float = Field(1.0, ge=0.0, description="scale of the emotion effects (0 = chance)")
    frames: int = Field(48, ge=8, le=1024, description="synthetic length; network input length (resampled)")
    # protocol
    folds: int = Field(5, ge=1, le=20, description="stratified CV folds (1 = one stratified split)")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="test share when folds = 1")
    up_axis: int = Field(1, ge=0, le=2, description="vertical axis of the data (0 x, 1 y, 2 z)")
    lateral_axis: int = Field(0, ge=0, le=2, description="left-right axis (mirroring, heading)")
    laban: bool = Field(False, description="add the Laban-style extras to the 29 STEP features")
    # traditional
    svm_c: float = Field(10.0, gt=0)
    rf_trees: int = Field(300, ge=1)
    # networks
    epochs: int = Field(40, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    batch_size: int = Field(32, ge=2)
    gcn_channels: tuple[int, ...] = Field((32, 64, 64), min_length=1, description="ST-GCN block widths")
    temporal_kernel: int = Field(9, ge=1, description="ST-GCN temporal kernel (odd)")
    partition: Literal["uniform", "spatial"] = "uniform"
    motion: bool = Field(True, description="ST-GCN input: centroid-relative joints + velocities (False: raw xyz)")
    fusion_hidden: int = Field(64, ge=1)
    image_views: int = Field(4, ge=1, le=8, description="Feat2Net rotated views (ProxEmo: 4)")
    cnn_width: int = Field(16, ge=1)
    augment: bool = Field(True, description="random mirror + small rotation of training gaits")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("temporal_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd, got {v}")
        return v

    @field_validator("gcn_channels")
    @classmethod
    def _positive(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(c < 1 for c in v):
            raise ValueError(f"channels must be >= 1, got {list(v)}")
        return v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "labels", "label_names", "n_per_class", "n_subjects", "separation",
                "frames", "folds", "test_fraction", "up_axis", "lateral_axis", "laban", "svm_c", "rf_trees",
                "epochs", "lr", "weight_decay", "batch_size", "gcn_channels", "temporal_kernel", "partition",
                "motion", "fusion_hidden", "image_views", "cnn_width", "augment", "threads")


#: ``--quick``: one 80/20 split, smaller ST-GCN, 30 epochs; about 1.5-2 minutes on one core
QUICK = {"folds": 1, "epochs": 30, "gcn_channels": (16, 32, 64), "rf_trees": 200, "threads": 1}
#: ``polymodal demo`` (on top of quick): 22 instead of 30 epochs for the three networks (~58 CPU-s in all)
DEMO = {"epochs": 22}
#: ``polymodal demo --setting smoke`` (on top of quick): 40 short gaits, 2 epochs, tiny ST-GCN (~12 CPU-s)
SMOKE = {"n_per_class": 10, "n_subjects": 4, "frames": 24, "epochs": 2, "gcn_channels": (8, 16), "rf_trees": 20}
#: the demo overview's comparison: the survey's state-of-the-art paradigm, End2EndNet (ST-GCN family; ST-Gait++ is the
#: best E-Gait number the survey reports, ~5.4 points above STEP), against the Traditional paradigm; Feat2Net and
#: FeatFusionNet are peer deep paradigms of the taxonomy, not baselines
HEADLINE = ("end2endnet", ("traditional-svm", "traditional-rf"))


def load_data(cfg: SkeletonEmotionConfig) -> GaitDataset:
    if cfg.data is None:
        return make_synthetic_gaits(cfg.n_per_class, cfg.frames, cfg.seed, n_subjects=cfg.n_subjects,
                                    separation=cfg.separation)
    return load_gaits(cfg.data, cfg.labels, label_names=cfg.label_names)


def make_splits(y: np.ndarray, folds: int, test_fraction: float, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, seeded (train, test) index pairs shared by every paradigm."""
    from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

    counts = np.bincount(y)
    counts = counts[counts > 0]
    need = folds if folds > 1 else 2
    if counts.min() < need:
        raise ConfigError(f"field 'folds': the smallest class has {counts.min()} gaits, needs at least {need}")
    if folds == 1:
        sp = StratifiedShuffleSplit(1, test_size=test_fraction, random_state=seed)
    else:
        sp = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in sp.split(np.zeros(len(y)), y)]


def build_network(cfg: SkeletonEmotionConfig, row: str, n_classes: int, n_features: int, sk: Skeleton16):
    if row == "end2endnet":
        return STGCN(n_classes, 3, None, cfg.gcn_channels, temporal_kernel=cfg.temporal_kernel,
                     partition=cfg.partition, motion=cfg.motion)
    if row == "featfusionnet":
        return STEPNet(n_classes, n_features, None, cfg.gcn_channels, cfg.temporal_kernel, cfg.fusion_hidden,
                       partition=cfg.partition, motion=cfg.motion)
    return SkeletonImageCNN(n_classes, cfg.image_views, cfg.cnn_width, up_axis=sk.up_axis)


def fold_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, float]:
    from sklearn.metrics import f1_score

    return {"accuracy": float((y_true == y_pred).mean()),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=list(range(n_classes)),
                                       zero_division=0))}


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


@recipe("skeleton-emotion", family="affect", paper=PAPER, config=SkeletonEmotionConfig, primary_metric="accuracy",
        baselines=(), rows=ROWS, compare_self=True, quick=QUICK, demo=True,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=HEADLINE,
        table_metrics=("accuracy", "accuracy_std", "macro_f1", "params"),
        report_extras=lambda d, result, run_dirs: skeleton_report(d, result, run_dirs))
def run_skeleton_emotion(cfg: SkeletonEmotionConfig, run: Run) -> Result:
    """Skeleton emotion recognition: Traditional (SVM, RF), Feat2Net, FeatFusionNet (STEP), End2EndNet (ST-GCN)."""
    from polymodal.core.runtime import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.up_axis == cfg.lateral_axis:
        raise ConfigError(f"fields 'up_axis' and 'lateral_axis' must differ, both are {cfg.up_axis}")
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    sk = Skeleton16(cfg.up_axis, cfg.lateral_axis)
    data = load_data(cfg)
    y = np.asarray(data.y)
    n_classes = len(data.class_names)
    featurizer = GaitFeatures(sk, laban=cfg.laban)
    feats = featurizer.transform(data.x)
    xnet = np.stack([resample_time(normalize_sequence(s, sk), cfg.frames) for s in data.x]).astype(np.float32)
    splits = make_splits(y, cfg.folds, cfg.test_fraction, cfg.seed)
    setup_s = time.perf_counter() - t_setup

    rows, seconds, extra_rows = {}, {}, {}
    n_nets = sum(r in NETS for r in cfg.methods)
    with progress_bar(len(splits) * max(n_nets, 1) * cfg.epochs, "skeleton-emotion") as bar:
        for row in cfg.methods:
            per_fold, conf, row_s, params = [], np.zeros((n_classes, n_classes), dtype=np.int64), 0.0, 0
            for k, (tr, te) in enumerate(splits):
                name = f"{row}-fold{k}.pt"
                done = run.load_checkpoint(name)
                if done is None:
                    t0 = time.perf_counter()
                    if row.startswith("traditional"):
                        clf = TraditionalClassifier("svm" if row.endswith("svm") else "rf", featurizer, C=cfg.svm_c,
                                                    n_estimators=cfg.rf_trees, seed=cfg.seed)
                        pred = clf.fit_features(feats[tr], y[tr]).predict_features(feats[te])
                        n_params = clf.num_parameters()
                    else:
                        from sklearn.preprocessing import StandardScaler

                        torch.manual_seed(cfg.seed + k)
                        model = build_network(cfg, row, n_classes, feats.shape[1], sk)
                        f_std = None
                        if row == "featfusionnet":
                            f_std = StandardScaler().fit(feats[tr]).transform(feats).astype(np.float32)

                        def tick(ep, loss, row=row, k=k):
                            bar.advance()
                            bar.update(row=row, fold=k, loss=loss)

                        fit_network(model, xnet[tr], y[tr], None if f_std is None else f_std[tr], epochs=cfg.epochs,
                                    lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                                    seed=cfg.seed + k, skeleton=sk, augment_data=cfg.augment, device=device,
                                    on_epoch=tick)
                        pred = predict_network(model, xnet[te], None if f_std is None else f_std[te], device=device)
                        n_params = count_parameters(model)
                    done = {"pred": torch.as_tensor(np.asarray(pred, dtype=np.int64)),
                            "seconds": time.perf_counter() - t0, "params": int(n_params)}
                    run.save_checkpoint(done, name)
                    m = fold_metrics(y[te], np.asarray(pred), n_classes)
                    run.log(k, row=row, fold=k, **m, seconds=round(done["seconds"], 3))
                pred = done["pred"].numpy()
                per_fold.append(fold_metrics(y[te], pred, n_classes))
                conf += confusion(y[te], pred, n_classes)
                row_s += float(done["seconds"])
                params = int(done["params"])
            acc = [m["accuracy"] for m in per_fold]
            recall = (np.diag(conf) / np.maximum(conf.sum(1), 1)).tolist()
            rows[row] = {"accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
                         "macro_f1": float(np.mean([m["macro_f1"] for m in per_fold])), "params": float(params)}
            seconds[row] = row_s
            extra_rows[row] = {"confusion": conf.tolist(), "recall": recall, "fold_accuracy": acc}
    extra = {"class_names": list(data.class_names), "rows": extra_rows, "n_gaits": len(y), "folds": len(splits),
             "n_features": int(feats.shape[1]), "chance": float(np.bincount(y).max() / len(y)),
             "setup_seconds": round(setup_s, 3), "data": cfg.data or "synthetic"}
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))


def plot_confusion(conf: np.ndarray, class_names: list[str], title: str):
    import matplotlib.pyplot as plt

    conf = np.asarray(conf, dtype=float)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    for i in range(len(conf)):
        for j in range(len(conf)):
            ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("true", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def skeleton_report(d, result: dict, run_dirs: dict) -> tuple[list[str], list[Path]]:
    """Per-class recall table and one confusion matrix (summed over folds) per paradigm."""
    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    extra: dict = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            e = json.loads(p.read_text()).get("extra", {})
            rows = {**extra.get("rows", {}), **e.get("rows", {})}
            extra.update(e)
            extra["rows"] = rows
    names = extra.get("class_names", [])
    per_row = extra.get("rows", {})
    md, images = [], []
    if per_row:
        md += ["## Per-class recall (pooled over folds)", "",
               f"{extra.get('n_gaits')} gaits ({extra.get('data')}), {extra.get('folds')} fold(s), "
               f"{extra.get('n_features')} affective features; majority-class rate {extra.get('chance', 0):.3f}.", "",
               markdown_table(["paradigm", *names], [[r, *per_row[r]["recall"]] for r in per_row],
                              bold_best={i + 1: "max" for i in range(len(names))}), ""]
        for r, info in per_row.items():
            fig = plot_confusion(np.asarray(info["confusion"]), names, f"{r} (summed over folds)")
            images.append(_save(fig, Path(d) / f"confusion-{r}.png"))
    return md, images

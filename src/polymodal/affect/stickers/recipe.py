"""Recipe ``mghft``: MGHFT vs its baselines on stickers (spec 2.6), all rows on the same data, split and seed.

Rows: ``mghft`` (the full model), ``pvt-visual-only`` (the same PVT, no text), ``pvt-late-fusion`` (PVT CLS ++ view
embeddings -> linear), ``text-only`` (view embeddings -> linear), and the ablations ``mghft-no-contrastive`` and
``mghft-no-tgfa`` (TGFA replaced by mean pooling). Metrics: accuracy, macro / weighted F1 (sklearn), per-class
F1 and the confusion matrix (plotted in the compare report). Embedded data: :func:`make_synthetic`; real data:
``data=`` a SER30K / MGHFT annotation JSON (``image_root`` for the images) or a ``<class>/<image>`` folder.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.affect.stickers.loaders import load_stickers
from polymodal.affect.stickers.mghft import MGHFT, PVTLateFusion, TextOnly
from polymodal.affect.stickers.pvt import PVT
from polymodal.affect.stickers.synthetic import SER30K_CLASSES, StickerDataset, make_synthetic
from polymodal.affect.stickers.text_features import ViewFeaturizer
from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run

PAPER = Paper(title="MGHFT: Multi-Granularity Hierarchical Fusion Transformer for Cross-Modal Sticker Emotion "
              "Recognition", venue="ACM MM 2025", arxiv="2507.18929", code="https://github.com/cccccj-03/MGHFT_ACMMM2025")
ROWS = ("mghft", "pvt-visual-only", "pvt-late-fusion", "text-only", "mghft-no-contrastive", "mghft-no-tgfa")
TEXT_ROWS = {"mghft", "pvt-late-fusion", "text-only", "mghft-no-contrastive", "mghft-no-tgfa"}


class MGHFTConfig(RecipeConfig):
    """MGHFT at the spec's CPU sizing (2.5): 96 px, dims 32/64/160/256, heads 1/2/5/8 (992 local tokens), depths
    1/1/2/1, TGFA 192 / 4 heads / MLP 768, batch 16, 10 epochs, AdamW 3e-4 (paper 1e-3) / wd 0.05, 1 warm-up epoch + cosine."""

    methods: tuple[str, ...] = Field(ROWS, description=f"rows to train, any of {', '.join(ROWS)}")
    n_samples: int = Field(1400, ge=14, description="synthetic stickers (train + test)")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    text_noise: float = Field(0.3, ge=0, le=1, description="synthetic: share of descriptions of a wrong emotion")
    cue_noise: float = Field(0.25, ge=0, le=1, description="synthetic: per-cue chance of drawing a wrong emotion")
    image_size: int = Field(96, ge=32, description="multiple of 32; >= 96 for alpha 8")
    image_root: str | None = Field(None, description="SER30K images folder (default: the JSON's folder)")
    class_names: tuple[str, ...] = Field(SER30K_CLASSES, description="label names for SER30K 'anno' 1..K")
    dims: tuple[int, int, int, int] = (32, 64, 160, 256)
    heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    depths: tuple[int, int, int, int] = (1, 1, 2, 1)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    alpha: int = Field(8, ge=1, description="LRA tokens per head = alpha * sr^2")
    embed_dim: int = Field(256, ge=8, description="joint token width (paper: 512)")
    fusion_dim: int = Field(192, ge=8)
    fusion_heads: int = Field(4, ge=1)
    fusion_mlp: int = Field(768, ge=8)
    text_encoder: str = Field("minilm", description="'minilm' (frozen, offline), 'tiny' (trainable hashing bag) "
                              "or a local sentence-transformers directory")
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(16, ge=2)
    lr: float = Field(3e-4, gt=0, description="paper: 1e-3 (stalls for the tiny from-scratch PVT here)")
    fusion_lr: float | None = Field(None, gt=0, description="MGHFT rows: lr of the parts outside the PVT (text "
                                    "branch, projections, TGFA, head); None = lr")
    weight_decay: float = Field(0.05, ge=0)
    warmup_epochs: int = Field(1, ge=0)
    label_smoothing: float = Field(0.2, ge=0, lt=1)
    contrastive_weight: float = Field(0.5, ge=0)
    structure_weight: float = Field(30.0, ge=0)
    temperature: float = Field(0.07, gt=0)
    drop_path: float = Field(0.1, ge=0, lt=1)
    flip: bool = Field(True, description="random horizontal flips while training")
    replicate_view_text_bug: bool = Field(False, description="encode the whole text for every view (released code)")
    replicate_stage4_text_quirk: bool = Field(False, description="4th local text token = stage 3's (released code)")
    text_norm: bool = Field(True, description="LayerNorm the frozen view embeddings before l_proj (MiniLM's are "
                            "L2-normalised, ~10x smaller than the paper's BERT features); False: raw scale")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "n_samples", "test_fraction", "text_noise", "cue_noise", "image_size",
                "epochs", "batch_size", "lr", "text_encoder", "threads")


#: ``--quick``: 700 stickers, 6 epochs, the three headline rows + text-only, one thread
QUICK = {"methods": ("mghft", "pvt-visual-only", "pvt-late-fusion", "text-only"), "n_samples": 700, "epochs": 6,
         "embed_dim": 128, "threads": 1}
#: ``polymodal demo`` (on top of quick): 560 stickers and 3 epochs for every row (~80 CPU-s in all)
DEMO = {"n_samples": 560, "epochs": 3}
#: ``polymodal demo --setting smoke`` (on top of quick): 70 stickers, 1 epoch, narrow fusion (~18 CPU-s)
SMOKE = {"n_samples": 70, "epochs": 1, "embed_dim": 32, "fusion_dim": 32, "fusion_mlp": 64}
#: the demo overview: MGHFT against the visual-only PVT, late fusion and the text-only reference
HEADLINE = ("mghft", ("pvt-visual-only", "pvt-late-fusion", "text-only"))


# ---------------------------------------------------------------------------------------------- data
def load_data(cfg: MGHFTConfig) -> tuple[StickerDataset, StickerDataset]:
    if cfg.image_size % 32:
        raise ConfigError(f"field 'image_size': {cfg.image_size} is not a multiple of 32")
    if cfg.data is None:
        ds = make_synthetic(cfg.n_samples, len(SER30K_CLASSES), cfg.image_size, cfg.seed, text_noise=cfg.text_noise,
                            cue_noise=cfg.cue_noise)
    else:
        ds = load_stickers(cfg.data, size=cfg.image_size, image_root=cfg.image_root, class_names=cfg.class_names)
    rng = np.random.default_rng([cfg.seed, 0x5711])
    test, train = [], []
    for c in range(len(ds.class_names)):  # stratified split
        idx = rng.permutation(np.flatnonzero(ds.labels == c))
        k = int(round(cfg.test_fraction * len(idx)))
        test += idx[:k].tolist()
        train += idx[k:].tolist()
    if not test or not train:
        raise ConfigError(f"field 'test_fraction': {cfg.test_fraction} leaves an empty split of {len(ds)} samples")
    return ds.subset(sorted(train)), ds.subset(sorted(test))


def build_model(cfg: MGHFTConfig, row: str, n_classes: int, text_module, text_dim: int) -> torch.nn.Module:
    pvt_kw = {"img_size": cfg.image_size, "dims": cfg.dims, "heads": cfg.heads, "depths": cfg.depths,
              "sr_ratios": cfg.sr_ratios, "drop_path": cfg.drop_path}
    if row == "pvt-visual-only":
        return PVT(n_classes, **pvt_kw)
    if row == "pvt-late-fusion":
        return PVTLateFusion(n_classes, PVT(None, **pvt_kw), text_dim, text_encoder=text_module,
                             label_smoothing=cfg.label_smoothing)
    if row == "text-only":
        return TextOnly(n_classes, text_dim, text_encoder=text_module, label_smoothing=cfg.label_smoothing)
    return MGHFT(n_classes, alpha=cfg.alpha, text_dim=text_dim, embed_dim=cfg.embed_dim, fusion_dim=cfg.fusion_dim,
                 fusion_heads=cfg.fusion_heads, fusion_mlp=cfg.fusion_mlp, temperature=cfg.temperature,
                 structure_weight=cfg.structure_weight, contrastive_weight=cfg.contrastive_weight,
                 label_smoothing=cfg.label_smoothing, use_contrastive=row != "mghft-no-contrastive",
                 fusion="mean" if row == "mghft-no-tgfa" else "tgfa",
                 replicate_stage4_text_quirk=cfg.replicate_stage4_text_quirk, text_encoder=text_module,
                 text_norm=cfg.text_norm, **pvt_kw)


def _forward(model, row: str, images, views) -> dict:
    if row == "pvt-visual-only":
        return {"logits": model(images)}
    return model(images, views)


def _loss(model, row: str, out: dict, y: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    if row == "pvt-visual-only":
        return torch.nn.functional.cross_entropy(out["logits"], y, label_smoothing=label_smoothing)
    return model.loss(out, y)


@torch.no_grad()
def predict(model, row: str, data: StickerDataset, views: torch.Tensor | None, batch_size: int, device: str
            ) -> np.ndarray:
    model.eval()
    preds = []
    for s in range(0, len(data), batch_size):
        x = data.float_images(np.arange(s, min(s + batch_size, len(data)))).to(device)
        v = views[s:s + batch_size].to(device) if views is not None else None
        preds.append(_forward(model, row, x, v)["logits"].argmax(-1).cpu())
    return torch.cat(preds).numpy()


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> dict[str, Any]:
    """sklearn accuracy, macro / weighted F1, per-class F1 and the confusion matrix (rows: true class)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    labels = list(range(len(class_names)))
    per_class = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
            "per_class_f1": {c: float(f) for c, f in zip(class_names, per_class, strict=True)},
            "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


def train_row(cfg: MGHFTConfig, run: Run, row: str, train: StickerDataset, test: StickerDataset,
              feats: ViewFeaturizer, views_tr, views_te, device: str) -> dict[str, Any]:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, row, len(train.class_names), feats.make_module(), feats.dim).to(device)
    groups: list[dict[str, Any]] = [{"params": list(model.parameters()), "scale": 1.0}]
    if cfg.fusion_lr is not None and isinstance(model, MGHFT):
        fusion = model.fusion_parameters()
        ids = {id(p) for p in fusion}
        groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "scale": 1.0},
                  {"params": fusion, "scale": cfg.fusion_lr / cfg.lr}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total, warm = steps_per_epoch * cfg.epochs, steps_per_epoch * cfg.warmup_epochs
    ckpt = f"{row}-last.pt"
    epoch, curve, train_s = 0, [], 0.0
    state = run.load_checkpoint(ckpt)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        epoch, curve, train_s = int(state["epoch"]), [list(p) for p in state["curve"]], float(state["train_s"])
        run.truncate_metrics(epoch, match={"row": row})
        run.note_resume(epoch)
    y_all = torch.from_numpy(train.labels)
    with progress_bar(total - epoch * steps_per_epoch, f"mghft: {row}") as bar:
        while epoch < cfg.epochs:
            t0 = time.perf_counter()
            model.train()
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(len(train), generator=gen)
            losses = []
            for k in range(steps_per_epoch):
                step = epoch * steps_per_epoch + k
                lr = cfg.lr * (step + 1) / warm if step < warm else \
                    cfg.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
                for g in opt.param_groups:
                    g["lr"] = lr * g["scale"]
                idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
                if len(idx) < 2:
                    continue
                x = train.float_images(idx.numpy())
                if cfg.flip:
                    flip = torch.rand(len(idx), generator=gen) < 0.5
                    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                v = views_tr[idx].to(device) if views_tr is not None else None
                out = _forward(model, row, x.to(device), v)
                loss = _loss(model, row, out, y_all[idx].to(device), cfg.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.item())
                bar.advance()
            epoch += 1
            train_s += time.perf_counter() - t0
            pred = predict(model, row, test, views_te, 64, device)
            acc = float((pred == test.labels).mean())
            curve.append([epoch, float(np.mean(losses)), acc])
            run.log(epoch, row=row, loss=float(np.mean(losses)), test_accuracy=acc)
            bar.update(info=f"epoch {epoch} loss {np.mean(losses):.3f} acc {acc:.3f}")
            if epoch < cfg.epochs:
                run.save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch,
                                     "curve": curve, "train_s": train_s}, ckpt)
    pred = predict(model, row, test, views_te, 64, device)
    m = classification_metrics(test.labels, pred, test.class_names)
    n_params = sum(p.numel() for p in model.parameters())
    return {"metrics": {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"],
                        "final_train_loss": curve[-1][1], "params": float(n_params)},
            "per_class_f1": m["per_class_f1"], "confusion": m["confusion"], "curve": curve, "train_seconds": train_s}


# ---------------------------------------------------------------------------------------------- report
def plot_confusions(confusions: dict[str, list[list[int]]], class_names: list[str]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(confusions)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, (row, cm) in zip(axes[0], confusions.items(), strict=True):
        cm = np.asarray(cm, dtype=float)
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
        short = [c[:4] for c in class_names]
        ax.set_xticks(range(len(short)), short, rotation=60, fontsize=7)
        ax.set_yticks(range(len(short)), short, fontsize=7)
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set_title(f"{row} (acc {acc:.3f})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
    axes[0][0].set_ylabel("true", fontsize=8)
    fig.tight_layout()
    return fig


def mghft_report(d, result: dict, run_dirs: dict) -> tuple[list[str], list]:
    import json
    from pathlib import Path

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    extra: dict[str, Any] = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            extra.update(json.loads(p.read_text()).get("extra", {}))
    md, images = [], []
    names = extra.get("class_names", [])
    per_class = extra.get("per_class_f1", {})
    if per_class:
        md += ["## Per-class F1", "", markdown_table(["method", *names],
                                                      [[r, *[v.get(c) for c in names]] for r, v in per_class.items()]),
               ""]
    if extra.get("text_label_accuracy") is not None:
        md += [f"Accuracy of the (noisy) synthetic descriptions' own emotion: {extra['text_label_accuracy']:.3f} "
               f"(text_noise {extra.get('text_noise')}).", ""]
    if extra.get("confusion"):
        images.append(_save(plot_confusions(extra["confusion"], names), Path(d) / "confusion.png"))
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("mghft", family="affect", paper=PAPER, config=MGHFTConfig, primary_metric="accuracy", rows=ROWS,
        compare_self=True, quick=QUICK, demo=True, report_extras=mghft_report,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=HEADLINE,
        table_metrics=("accuracy", "macro_f1", "weighted_f1", "final_train_loss", "params"))
def run_mghft(cfg: MGHFTConfig, run: Run) -> Result:
    """MGHFT (PVT + LRA token selection + multi-view text fusion + TGFA) vs visual-only, late-fusion and text baselines."""
    from polymodal.core.runtime import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    train, test = load_data(cfg)
    feats = ViewFeaturizer(cfg.text_encoder, replicate_view_text_bug=cfg.replicate_view_text_bug)
    needs_text = any(r in TEXT_ROWS for r in cfg.methods)
    if needs_text and not (train.has_texts and test.has_texts):
        raise ConfigError("field 'methods': rows " + ", ".join(r for r in cfg.methods if r in TEXT_ROWS)
                          + " need a description per sticker (SER30K 'text' field); this data has none: use "
                          "methods=[pvt-visual-only] or write descriptions with a multi-view interpreter")
    views_tr = feats.featurize(train.texts) if needs_text else None
    views_te = feats.featurize(test.texts) if needs_text else None
    setup_s = time.perf_counter() - t_setup
    rows, seconds, curves, per_class, confusion = {}, {}, {}, {}, {}
    for row in cfg.methods:
        done = run.load_checkpoint(f"row-{row}.pt")
        if done is None:
            done = train_row(cfg, run, row, train, test, feats, views_tr, views_te, device)
            run.save_checkpoint(done, f"row-{row}.pt")
        rows[row] = {k: float(v) for k, v in done["metrics"].items()}
        seconds[row] = float(done["train_seconds"])
        curves[row], per_class[row], confusion[row] = done["curve"], done["per_class_f1"], done["confusion"]
    extra: dict[str, Any] = {"class_names": list(train.class_names), "per_class_f1": per_class,
                             "confusion": confusion, "curves": curves, "setup_seconds": round(setup_s, 2),
                             "n_train": len(train), "n_test": len(test)}
    if cfg.data is None:
        tl = np.array([m["text_label"] for m in test.meta])
        extra.update(text_label_accuracy=float((tl == test.labels).mean()), text_noise=cfg.text_noise)
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))

"""Recipe ``audio-tta``: Audio-Assisted TTA vs source / TENT / ViTTA on corrupted synthetic clips (spec 2.3-2.7).

One run trains, once, a source video classifier (``TinyX3D``; the student size by default) and an audio CNN on clean
synthetic audio-visual clips (``synth.audio_visual``; audio label space != video label space), builds the
audio -> video label mapping (``label_mapping``; MiniLM by default), then runs every adapter *online* (one clip per
adaptation step, no reset between clips) over the test stream of each of ViTTA's 12 UCF101-C corruption types at
severity 5 (video corrupted, audio clean), starting from the source model for each corruption type.

Rows: ``audio-tta`` (flexible cycle), ``source``, ``tent``, ``vitta``, and the fixed-step ablations
``audio-pl-fixed1`` / ``audio-pl-fixedk``. Metrics per row: ``top1`` (mean over corruptions, the primary metric),
``top1_<corruption>``, ``steps_mean`` (adaptation steps per clip), for the audio rows the pseudo-label acceptance
rate (audio label accepted), the share of clips adapted at all and the accuracy of the pseudo-labels used, and
``seconds_per_video``. Each (row, corruption) cell is checkpointed, so ``--resume`` skips finished cells.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.video.backbones import AudioCNN, TinyX3D, make_cnn_teacher, make_student
from polymodal.video.corruptions import CORRUPTIONS, VIDEO_CORRUPTIONS_UCF101C, corrupt
from polymodal.video.label_mapping import LabelMapping, build_label_mapping, mapping_from_relation
from polymodal.video.synth import audio_video_relation, audio_visual, stratified_split
from polymodal.video.train import TrainSettings, evaluate_classifier, load_or_train
from polymodal.video.tta import AudioAssistedTTA, SourceOnly, Tent, TTAMethod, ViTTA

PAPER = Paper(title="Exploring Audio Cues for Enhanced Test-Time Video Model Adaptation", venue="IEEE journal 2025",
              arxiv="2506.12481", code="https://github.com/keikeiqi/Audio-Assisted-TTA (announced, not public)")
ROWS = ("audio-tta", "source", "tent", "vitta", "audio-pl-fixed1", "audio-pl-fixedk")
AUDIO_ROWS = ("audio-tta", "audio-pl-fixed1", "audio-pl-fixedk")


class AudioTTAConfig(RecipeConfig):
    """Audio-Assisted TTA protocol on the embedded synthetic audio-visual clips (spec 2.3-2.5; see
    docs/methods/audio-tta.md for which defaults are [official code] and which [reconstruction])."""

    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    # data
    n_per_class: int = Field(80, ge=4, description="synthetic clips per video class (10 classes)")
    train_fraction: float = Field(0.75, gt=0, lt=1)
    frames: int = Field(8, ge=4)
    size: int = Field(32, ge=16)
    nuisance: Literal["easy", "hard"] = Field("easy", description="synthetic nuisance preset (synth.NUISANCE_PRESETS"
                                              "; 'hard' = the original generator, docs/methods/video-data.md)")
    test_per_corruption: int | None = Field(None, ge=1, description="test clips streamed per corruption type "
                                            "(None: the whole test split)")
    corruptions: tuple[str, ...] = Field(VIDEO_CORRUPTIONS_UCF101C, description="video corruption types")
    severity: int = Field(5, ge=1, le=5)
    # source models
    video_model: Literal["student", "cnn-teacher"] = Field("student", description="TinyX3D size of the source model")
    epochs: int = Field(15, ge=1)
    lr: float = Field(3e-3, gt=0)
    schedule: Literal["constant", "cosine"] = Field("cosine", description="source-model learning-rate schedule")
    batch_size: int = Field(16, ge=1)
    audio_epochs: int = Field(6, ge=1)
    # mapping
    mapping: Literal["encoder", "llm", "table", "oracle"] = Field(
        "encoder", description="encoder (MiniLM), llm (SmolLM2 yes/no), table (mapping_table JSON), oracle "
        "(the generator's ground-truth relation: an upper bound)")
    mapping_table: str | None = Field(None, description="JSON table for mapping='table'")
    # audio-assisted TTA
    theta_audio: float = Field(0.5, ge=0, le=1)
    theta_video: float = Field(0.9, ge=0, le=1)
    k_max: int = Field(5, ge=1)
    eps: float = Field(1e-3)
    adapt: Literal["norm_affine", "all"] = "norm_affine"
    fallback: Literal["video_confident", "skip"] = "video_confident"
    pseudo_label: Literal["audio", "audio_x_video"] = "audio"
    optimizer: Literal["adam", "sgd"] = Field("adam", description="audio-tta optimiser (TENT's Adam by default)")
    tta_lr: float = Field(1e-3, gt=0, description="audio-tta learning rate (TENT's Adam 1e-3; 1e-2 helped only a "
                          "near-chance source model, docs/methods/audio-tta.md)")
    bn_mode: Literal["batch", "source"] = Field("source", description="audio-tta BN statistics during adaptation "
                                                "('batch': one clip's statistics, spec 2.4; collapses our models)")
    n_views: int = Field(2, ge=1)
    consistency_weight: float = Field(0.1, ge=0)
    entropy_weight: float = Field(0.0, ge=0)
    soft_labels: bool = False
    episodic: bool = False
    # baselines
    tent_lr: float = Field(1e-3, gt=0)
    vitta_lr: float = Field(5e-5, gt=0)
    vitta_adapt: Literal["norm_affine", "all"] = "all"
    vitta_lambda: float = Field(0.1, ge=0)
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("corruptions")
    @classmethod
    def _known_corruptions(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, tuple(CORRUPTIONS))

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "n_per_class", "train_fraction", "frames", "size", "nuisance", "schedule",
                "test_per_corruption", "corruptions", "severity", "video_model", "epochs", "lr", "batch_size",
                "audio_epochs", "mapping", "mapping_table", "threads")


#: ``--quick``: 600 "easy" synthetic clips (450 train), a 32-px TinyX3D-student source model (25 epochs, cosine from
#: lr 3e-3, batch 16) + 3 audio epochs, 20 test clips per corruption, the four issue rows, one thread
QUICK = {"n_per_class": 60, "size": 32, "nuisance": "easy", "epochs": 25, "lr": 3e-3, "audio_epochs": 3,
         "test_per_corruption": 20, "methods": ("audio-tta", "source", "tent", "vitta"), "threads": 1}
#: ``polymodal demo`` (on top of quick): 15 source epochs instead of 25 (~70 instead of ~90-110 CPU-s; clean source
#: top-1 stays 0.90); the stream, corruptions and rows are quick's (docs/methods/audio-tta.md, "In the demo")
DEMO = {"epochs": 15}
#: ``polymodal demo --setting smoke`` (on top of quick): 80 clips, one source / audio epoch, 3 corruptions x 4 clips
SMOKE = {"n_per_class": 8, "epochs": 1, "audio_epochs": 1, "test_per_corruption": 4,
         "corruptions": ("gaussian_noise", "motion_blur", "contrast")}


# ---------------------------------------------------------------------------------------------- setting
def build_mapping(cfg: AudioTTAConfig, audio_labels: tuple[str, ...], video_labels: tuple[str, ...],
                  run: Run | None) -> LabelMapping:
    save_to = run.path("label_mapping.json") if run is not None else None
    if cfg.mapping == "oracle":
        m = mapping_from_relation(audio_video_relation(), audio_labels, video_labels)
        if save_to is not None:
            m.save(save_to)
        return m
    if cfg.mapping == "table":
        if not cfg.mapping_table:
            raise ConfigError("field 'mapping_table': mapping='table' needs a JSON file path")
        return build_label_mapping(audio_labels, video_labels, "table", table=cfg.mapping_table, save_to=save_to)
    return build_label_mapping(audio_labels, video_labels, cfg.mapping, save_to=save_to)


def make_adapter(row: str, cfg: AudioTTAConfig, model: torch.nn.Module, audio_model: torch.nn.Module,
                 mapping: LabelMapping) -> TTAMethod | AudioAssistedTTA:
    if row == "source":
        return SourceOnly(model)
    if row == "tent":
        return Tent(model, lr=cfg.tent_lr)
    if row == "vitta":
        return ViTTA(model, lr=cfg.vitta_lr, adapt=cfg.vitta_adapt, lambda_consistency=cfg.vitta_lambda,
                     view_seed=cfg.seed)
    kw: dict[str, Any] = dict(theta_audio=cfg.theta_audio, theta_video=cfg.theta_video, k_max=cfg.k_max,
                              eps=cfg.eps, adapt=cfg.adapt, fallback=cfg.fallback, episodic=cfg.episodic,
                              optimizer=cfg.optimizer, lr=cfg.tta_lr, n_views=cfg.n_views,
                              consistency_weight=cfg.consistency_weight, entropy_weight=cfg.entropy_weight,
                              soft_labels=cfg.soft_labels, bn_mode=cfg.bn_mode, pseudo_label=cfg.pseudo_label,
                              view_seed=cfg.seed)
    if row == "audio-pl-fixed1":
        kw["fixed_steps"] = 1
    elif row == "audio-pl-fixedk":
        kw["fixed_steps"] = cfg.k_max
    return AudioAssistedTTA(model, audio_model, mapping, **kw)


def stream_cell(adapter: TTAMethod | AudioAssistedTTA, clips: torch.Tensor, labels: torch.Tensor,
                audio: torch.Tensor) -> dict[str, Any]:
    """Run ``adapter`` online over one corruption's stream; per-clip predictions and adaptation info."""
    preds, steps, pls, sources, stops = [], [], [], [], []
    t0 = time.perf_counter()
    for i in range(clips.shape[0]):
        label, info = adapter.adapt_and_predict(clips[i], audio[i])
        preds.append(label)
        steps.append(int(info.get("steps", 0)))
        pl = info.get("pseudo_label")
        pls.append(-1 if pl is None else int(pl))
        sources.append(info.get("source") or "")
        stops.append(str(info.get("stop", "")))
    seconds = time.perf_counter() - t0
    return {"preds": preds, "steps": steps, "pseudo_labels": pls, "sources": sources, "stops": stops,
            "labels": labels.tolist(), "seconds": seconds}


def row_metrics(row: str, cells: dict[str, dict[str, Any]]) -> dict[str, float]:
    m: dict[str, float] = {}
    accs = []
    for corr, c in cells.items():
        acc = float(np.mean(np.asarray(c["preds"]) == np.asarray(c["labels"])))
        m[f"top1_{corr}"] = acc
        accs.append(acc)
    m["top1"] = float(np.mean(accs))
    steps = np.concatenate([np.asarray(c["steps"]) for c in cells.values()])
    n = steps.size
    m["steps_mean"] = float(steps.mean())
    m["seconds_per_video"] = float(sum(c["seconds"] for c in cells.values()) / max(n, 1))
    if row in AUDIO_ROWS:
        src = np.concatenate([np.asarray(c["sources"]) for c in cells.values()])
        pl = np.concatenate([np.asarray(c["pseudo_labels"]) for c in cells.values()])
        y = np.concatenate([np.asarray(c["labels"]) for c in cells.values()])
        used = pl >= 0
        m["pl_accept_rate"] = float((src == "audio").mean())
        m["pl_used_rate"] = float(used.mean())
        m["pl_accuracy"] = float((pl[used] == y[used]).mean()) if used.any() else float("nan")
        audio = src == "audio"
        m["audio_pl_accuracy"] = float((pl[audio] == y[audio]).mean()) if audio.any() else float("nan")
    return m


# ---------------------------------------------------------------------------------------------- report
def _load_extra(run_dirs: dict) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            extra.update(json.loads(p.read_text()).get("extra", {}))
    return extra


def audio_tta_report(d, result: dict, run_dirs: dict) -> tuple[list[str], list]:
    """Per-corruption table + heat map, and the histogram of adaptation steps per clip of the audio rows."""
    import matplotlib.pyplot as plt

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    d = Path(d)
    md: list[str] = []
    images: list = []
    rows = result["rows"]
    extra = _load_extra(run_dirs)
    corrs = extra.get("corruptions") or sorted({k[5:] for r in rows for k in r["metrics"] if k.startswith("top1_")})
    names = [r["method"] for r in rows]
    grid = np.array([[r["metrics"].get(f"top1_{c}", np.nan) for c in corrs] for r in rows], dtype=float)
    md += [f"## Top-1 per corruption (severity {extra.get('severity', 5)}, online)", "",
           markdown_table(["method", *corrs, "mean"],
                          [[n, *grid[i].tolist(), rows[i]["metrics"].get("top1")] for i, n in enumerate(names)],
                          bold_best={i: "max" for i in range(1, len(corrs) + 2)}), ""]
    if extra.get("source_clean_top1") is not None:
        md += [f"Source model on clean test clips: top-1 {extra['source_clean_top1']:.3f}; audio model top-1 "
               f"{extra.get('audio_top1', float('nan')):.3f} on its own {extra.get('n_audio_classes', '?')} classes; "
               f"label mapping: {extra.get('mapping_backend')}.", ""]
    if grid.size:
        fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(corrs), 0.9 + 0.4 * len(names)))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(corrs)), corrs, rotation=50, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if grid[i, j] < 0.6 else "black")
        ax.set_title("top-1 per corruption", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03)
        fig.tight_layout()
        images.append(_save(fig, d / "per_corruption.png"))
    hists = extra.get("step_histograms", {})
    if hists:
        fig, ax = plt.subplots(figsize=(6.0, 3.4))
        width = 0.8 / len(hists)
        for i, (row, counts) in enumerate(hists.items()):
            ks = np.arange(len(counts))
            total = max(sum(counts), 1)
            ax.bar(ks + (i - (len(hists) - 1) / 2) * width, np.asarray(counts) / total, width=width, label=row)
        ax.set_xlabel("adaptation steps per clip (0 = no pseudo-label, not adapted)")
        ax.set_ylabel("share of clips")
        ax.set_title("iterations used per sample")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        images.append(_save(fig, d / "steps_histogram.png"))
        md += ["## Iterations used per sample", "",
               markdown_table(["method", *[str(k) for k in range(max(len(c) for c in hists.values()))]],
                              [[r, *c] for r, c in hists.items()]), ""]
        stops = extra.get("stop_reasons", {})
        if stops:
            md += ["Stop reasons: " + "; ".join(f"{r}: " + ", ".join(f"{k} {v}" for k, v in s.items())
                                                for r, s in stops.items()) + ".", ""]
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("audio-tta", family="video", paper=PAPER, config=AudioTTAConfig, primary_metric="top1", rows=ROWS,
        compare_self=True, quick=QUICK, demo=True, report_extras=audio_tta_report, demo_settings=DEMO,
        smoke_settings=SMOKE, headline=("audio-tta", ("source", "tent", "vitta")),
        table_metrics=("top1", "steps_mean", "pl_accept_rate", "pl_used_rate", "pl_accuracy", "seconds_per_video"))
def run_audio_tta(cfg: AudioTTAConfig, run: Run) -> Result:
    """Audio-Assisted TTA (audio pseudo-labels + flexible cycle) vs source, TENT and ViTTA on corrupted clips."""
    from polymodal.core.runtime import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    data = audio_visual(cfg.n_per_class, frames=cfg.frames, size=cfg.size, seed=cfg.seed, nuisance=cfg.nuisance)
    train_idx, test_idx = stratified_split(data.labels, (cfg.train_fraction, 1 - cfg.train_fraction), cfg.seed)
    train, test = data.subset(train_idx), data.subset(test_idx)
    order = np.random.default_rng([cfg.seed, 0x7E57]).permutation(len(test))
    if cfg.test_per_corruption is not None:
        order = order[:cfg.test_per_corruption]
    test = test.subset(order)
    torch.manual_seed(cfg.seed)
    video_model: TinyX3D = make_student(data.n_classes) if cfg.video_model == "student" else \
        make_cnn_teacher(data.n_classes)
    vs = TrainSettings(epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, seed=cfg.seed, schedule=cfg.schedule)
    load_or_train(video_model, train.video, train.labels, vs, run=run, tag="source-video", device=device,
                  desc="train source video model")
    torch.manual_seed(cfg.seed + 1)
    audio_model = AudioCNN(len(data.audio_class_names), sample_rate=data.sample_rate)
    aus = TrainSettings(epochs=cfg.audio_epochs, lr=2e-3, batch_size=cfg.batch_size, seed=cfg.seed)
    load_or_train(audio_model, train.audio, train.audio_labels, aus, run=run, tag="audio", device=device,
                  desc="train audio model")
    audio_model.requires_grad_(False)
    mapping = build_mapping(cfg, data.audio_class_names, data.class_names, run)
    clean = evaluate_classifier(video_model, test.video, test.labels, device=device)
    audio_eval = evaluate_classifier(audio_model, test.audio, test.audio_labels, device=device)
    source_state = copy.deepcopy(video_model.state_dict())
    setup_s = time.perf_counter() - t_setup

    cells: dict[str, dict[str, dict[str, Any]]] = {row: {} for row in cfg.methods}
    with progress_bar(len(cfg.corruptions) * len(cfg.methods), "audio-tta: adapt online") as bar:
        for ci, corr in enumerate(cfg.corruptions):
            corrupted = None
            for row in cfg.methods:
                name = f"cell-{row}-{corr}.pt"
                done = run.load_checkpoint(name)
                if done is None:
                    if corrupted is None:
                        corrupted = corrupt(test.video, corr, cfg.severity, seed=cfg.seed * 1000 + ci)
                    video_model.load_state_dict(source_state)  # every corruption type starts from the source model
                    adapter = make_adapter(row, cfg, video_model, audio_model, mapping)
                    done = stream_cell(adapter, corrupted, test.labels, test.audio)
                    if isinstance(adapter, ViTTA):
                        adapter.remove_hooks()
                    run.save_checkpoint(done, name)
                    acc = float(np.mean(np.asarray(done["preds"]) == np.asarray(done["labels"])))
                    run.log(ci + 1, row=row, corruption=corr, top1=acc, steps_mean=float(np.mean(done["steps"])))
                cells[row][corr] = done
                bar.advance()
    video_model.load_state_dict(source_state)

    rows = {row: row_metrics(row, cells[row]) for row in cfg.methods}
    seconds = {row: float(sum(c["seconds"] for c in cells[row].values())) for row in cfg.methods}
    hist, stops = {}, {}
    for row in cfg.methods:
        if row in AUDIO_ROWS:
            steps = np.concatenate([np.asarray(c["steps"]) for c in cells[row].values()])
            hist[row] = np.bincount(steps, minlength=cfg.k_max + 1).tolist()
            reasons = [s for c in cells[row].values() for s in c.get("stops", [])]
            stops[row] = {k: reasons.count(k) for k in dict.fromkeys(sorted(reasons))}
    extra = {"corruptions": list(cfg.corruptions), "severity": cfg.severity,
             "source_clean_top1": clean["top1"], "audio_top1": audio_eval["top1"],
             "n_audio_classes": len(data.audio_class_names), "mapping_backend": mapping.backend,
             "mapping": mapping.to_dict(), "step_histograms": hist, "stop_reasons": stops,
             "n_train": len(train), "n_test_per_corruption": len(test), "setup_seconds": round(setup_s, 2)}
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))

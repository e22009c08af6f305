"""Recipe ``dual-teacher-kd``: Dual-Teacher KD and its baselines on one data set and seed (spec video.md 1.5).

One run trains the two frozen teachers once (``teacher-cnn``: the wider TinyX3D; ``teacher-vit``: TinyVideoViT,
both with cross-entropy), caches their logits and pooled features on the training clips (frozen, no augmentation:
the cache equals the live outputs), then trains every student row from the same initial weights, batch order and
seed:

- ``dual-teacher-kd``  DATW-weighted KD + structure-discrepancy branch + RKD (:class:`~polymodal.video.distill.DualTeacherKD`);
- ``student-alone``    cross-entropy only;
- ``kd-cnn`` / ``kd-vit``  single-teacher Hinton KD (tau 4) from the CNN / the ViT teacher;
- ``kd-avg``           both teachers with fixed weights 0.5;
- ``datw-only``        DATW without SDD / RKD;  ``fitnets``  MSE hint on projected ViT features (weight 10);
- ``teacher-cnn`` / ``teacher-vit``  the teachers themselves.

Each row reports top-1 / top-5 on held-out clips, parameters and multiply-accumulates; ``extra`` holds the model
sizes (and the student / ViT-teacher ratios), a check that the exported inference model is the plain student
(same parameter count, same outputs), the per-epoch test top-1 curves and the mean DATW weight of the ViT teacher.
Data: ``synth.moving_shapes`` (embedded) or ``data=<root>`` holding ``<class>/<clip>.mp4`` (``VideoFolder``).
Finished rows are kept in ``checkpoints/row-<name>.pt``: ``--resume`` does not retrain them; an unfinished row
continues from its last epoch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.video.backbones import (
    count_macs,
    count_parameters,
    make_cnn_teacher,
    make_student,
    make_vit_teacher,
)
from polymodal.video.distill import TeacherOutputs, make_variant, teacher_outputs
from polymodal.video.synth import moving_shapes, stratified_split
from polymodal.video.train import TrainSettings, accuracy_metrics, fit, load_or_train, predict_logits

PAPER = Paper(title="Revisiting Cross-Architecture Distillation: Adaptive Dual-Teacher Transfer for Lightweight "
                    "Video Models", venue="arXiv preprint 2025", arxiv="2511.09469")
STUDENT_ROWS = ("dual-teacher-kd", "student-alone", "kd-cnn", "kd-vit", "kd-avg", "datw-only", "fitnets")
TEACHER_ROWS = ("teacher-cnn", "teacher-vit")
ROWS = (*STUDENT_ROWS, *TEACHER_ROWS)
#: which teachers a row needs
NEEDS = {"dual-teacher-kd": ("cnn", "vit"), "student-alone": (), "kd-cnn": ("cnn",), "kd-vit": ("vit",),
         "kd-avg": ("cnn", "vit"), "datw-only": ("cnn", "vit"), "fitnets": ("vit",), "teacher-cnn": ("cnn",),
         "teacher-vit": ("vit",)}


class DualTeacherKDConfig(RecipeConfig):
    """Dual-Teacher KD at CPU scale (spec 1.3-1.5): 10 synthetic action classes, 8 frames of 32x32, 75/25 split;
    student TinyX3D 16/32/64, CNN teacher TinyX3D 32/64/128 x2, ViT teacher width 128 depth 4; AdamW; KD defaults
    tau 4, alpha = beta = gamma = 1, kappa 1, maxprob confidence, KL discrepancy, D = 128."""

    data: str | None = Field(None, description="None: synthetic moving shapes; or a folder <class>/<clip>.mp4")
    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    # data
    n_per_class: int = Field(80, ge=2, description="synthetic clips per class (before the train/test split)")
    n_classes: int = Field(10, ge=2, le=10, description="synthetic classes")
    frames: int = Field(8, ge=2, le=64)
    size: int = Field(32, ge=16, le=256, description="frame side in pixels (a multiple of 8 for the ViT tubelets)")
    noise: float = Field(0.05, ge=0, le=1, description="pixel noise of the synthetic clips")
    nuisance: Literal["easy", "hard"] = Field("easy", description="synthetic nuisance preset (synth.NUISANCE_PRESETS"
                                              "; 'hard' = the original generator, docs/methods/video-data.md)")
    teacher_extra_per_class: int = Field(0, ge=0, description="extra synthetic clips per class (another seed) the "
                                         "teachers are trained on besides the student's training clips: a stand-in "
                                         "for the paper's pretrained teachers [reconstruction]; 0 = same data")
    test_fraction: float = Field(0.25, gt=0, lt=1)
    # optimisation (AdamW, batch order re-seeded per epoch, same for every student row)
    epochs: int = Field(12, ge=1, description="student epochs (every student row)")
    teacher_epochs: int = Field(12, ge=1, description="CNN-teacher epochs")
    vit_epochs: int = Field(30, ge=1, description="ViT-teacher epochs")
    lr: float = Field(3e-3, gt=0, description="student and CNN-teacher learning rate")
    vit_lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    vit_weight_decay: float = Field(0.05, ge=0)
    batch_size: int = Field(16, ge=2)
    schedule: Literal["constant", "cosine"] = Field("cosine", description="per-step learning-rate schedule (all)")
    vit_warmup_epochs: float = Field(2.0, ge=0, description="linear warm-up of the ViT teacher")
    vit_stem: Literal["strided", "conv", "linear"] = Field("strided", description="ViT patch stem (backbones."
                                                           "TinyVideoViT): strided 3x3 convolutions by default")
    # distillation
    tau: float = Field(4.0, gt=0)
    alpha: float = Field(1.0, ge=0, description="KD weight")
    beta: float = Field(1.0, ge=0, description="structure-discrepancy (SDB) weight")
    gamma: float = Field(1.0, ge=0, description="RKD weight")
    kappa: float = Field(1.0, gt=0, description="DATW softmax temperature")
    confidence: Literal["maxprob", "neg_entropy"] = "maxprob"
    discrepancy: Literal["kl", "cosine"] = "kl"
    feat_dim: int = Field(128, ge=2, description="D, width of the residual target")
    phi: Literal["auto", "identity", "orthogonal", "pca"] = "auto"
    fitnets_weight: float = Field(10.0, gt=0, description="MSE weight of the fitnets row")
    teacher_frames_downsample: int = Field(1, ge=1, description="the ViT teacher sees every r-th frame")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @model_validator(mode="after")
    def _vit_shapes(self) -> DualTeacherKDConfig:
        r = self.teacher_frames_downsample
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8 (ViT tubelet 2x8x8), got {self.size}")
        if self.frames % r or (self.frames // r) % 2:
            raise ValueError(f"frames / teacher_frames_downsample must be an even whole number (ViT tubelet 2 "
                             f"frames), got {self.frames} / {r}")
        return self

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "n_per_class", "n_classes", "frames", "size", "noise", "nuisance",
                "teacher_extra_per_class", "schedule", "vit_warmup_epochs", "vit_stem", "test_fraction",
                "epochs", "teacher_epochs", "vit_epochs", "lr", "vit_lr", "weight_decay", "vit_weight_decay",
                "batch_size", "tau", "alpha", "beta", "gamma", "kappa", "confidence", "discrepancy", "feat_dim",
                "phi", "fitnets_weight", "teacher_frames_downsample", "threads")


#: ``--quick``: 400 clips of 8 frames at 24x24 (240 train / 160 test) of the calibrated "easy" synthetic task, the
#: teachers trained on 600 more clips (a stand-in for pretraining), cosine schedules, batch 16, the issue's seven
#: rows, one thread (calibration: docs/methods/video-data.md)
QUICK = {"n_per_class": 40, "test_fraction": 0.4, "frames": 8, "size": 24, "nuisance": "easy",
         "teacher_extra_per_class": 60, "epochs": 30, "teacher_epochs": 8, "vit_epochs": 15, "batch_size": 16,
         "methods": ("dual-teacher-kd", "student-alone", "kd-cnn", "kd-vit", "kd-avg", "teacher-cnn", "teacher-vit"),
         "threads": 1}
#: ``polymodal demo`` (on top of quick): 4 frames instead of 8, teachers on 540 clips (30 extra per class) with 10
#: ViT epochs, 20 student epochs: about half quick's CPU (docs/methods/dual-teacher-kd.md, "In the demo")
DEMO = {"frames": 4, "teacher_extra_per_class": 30, "vit_epochs": 10, "epochs": 20}
#: ``polymodal demo --setting smoke`` (on top of quick): 60 clips of 4 frames at 16 px, one epoch per model
SMOKE = {"n_per_class": 6, "teacher_extra_per_class": 0, "frames": 4, "size": 16, "epochs": 1, "teacher_epochs": 1,
         "vit_epochs": 1, "vit_warmup_epochs": 0.0}


# ---------------------------------------------------------------------------------------------- data
def load_clips(cfg: DualTeacherKDConfig) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...], dict[str, Any]]:
    """``(video (N, T, 3, H, W), labels, class names, info)`` of the embedded synthetic clips or a VideoFolder."""
    if cfg.data is None:
        clips = moving_shapes(cfg.n_per_class, n_classes=cfg.n_classes, frames=cfg.frames, size=cfg.size,
                              seed=cfg.seed, noise=cfg.noise, nuisance=cfg.nuisance)
        return clips.video, clips.labels, tuple(clips.class_names), {"data": "synthetic moving_shapes",
                                                                     "nuisance": cfg.nuisance}
    from polymodal.core.progress import progress_bar
    from polymodal.video.media import VideoFolder

    root = Path(cfg.data).expanduser()
    folder = VideoFolder(root, frames=cfg.frames, size=cfg.size)
    if len(folder.classes) < 2:
        raise ConfigError(f"field 'data': {root} holds {len(folder.classes)} class folder(s); need at least 2 "
                          "(<root>/<class>/<clip>.mp4)")
    videos, labels = [], []
    with progress_bar(len(folder), f"decode {root.name}") as bar:
        for i in range(len(folder)):
            v, label = folder[i]
            videos.append(v.float())
            labels.append(label)
            bar.advance()
    return (torch.stack(videos), torch.tensor(labels, dtype=torch.long), tuple(folder.classes),
            {"data": str(root), "files": len(folder)})


def teacher_extra_clips(cfg: DualTeacherKDConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The teachers' extra "pre-training" clips (``teacher_extra_per_class`` per class, drawn with another seed than
    the student's clips and the test clips), or None [reconstruction: the paper's teachers are pretrained on large
    data; ours see more synthetic clips than the student]."""
    if cfg.teacher_extra_per_class == 0:
        return None
    if cfg.data is not None:
        raise ConfigError("field 'teacher_extra_per_class': extra teacher clips exist only for the synthetic data; "
                          "set it to 0 with data=<folder>")
    extra = moving_shapes(cfg.teacher_extra_per_class, n_classes=cfg.n_classes, frames=cfg.frames, size=cfg.size,
                          seed=cfg.seed + 104_729, noise=cfg.noise, nuisance=cfg.nuisance)
    return extra.video, extra.labels


def split_clips(y: torch.Tensor, cfg: DualTeacherKDConfig) -> tuple[np.ndarray, np.ndarray]:
    train, test = stratified_split(y, (1 - cfg.test_fraction, cfg.test_fraction), seed=cfg.seed)
    if len(train) < 2 or len(test) < 1:
        raise ConfigError(f"field 'test_fraction': {len(y)} clips split into {len(train)} train / {len(test)} test; "
                          "need >= 2 training and >= 1 test clip (add clips per class)")
    return train, test


# ---------------------------------------------------------------------------------------------- rows
def _settings(cfg: DualTeacherKDConfig, who: str) -> TrainSettings:
    if who == "vit":
        return TrainSettings(epochs=cfg.vit_epochs, lr=cfg.vit_lr, weight_decay=cfg.vit_weight_decay,
                             batch_size=cfg.batch_size, grad_clip=1.0, seed=cfg.seed, schedule=cfg.schedule,
                             warmup_epochs=cfg.vit_warmup_epochs)
    epochs = cfg.teacher_epochs if who == "cnn" else cfg.epochs
    return TrainSettings(epochs=epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                         seed=cfg.seed, schedule=cfg.schedule)


def _row_metrics(logits: torch.Tensor, y: torch.Tensor, params: int, macs: int) -> dict[str, float]:
    m = accuracy_metrics(logits, y)
    return {"top1": m["top1"], "top5": m["top5"], "test_loss": m["loss"], "params": float(params),
            "mmacs": macs / 1e6}


def _curve(run: Run, key: str) -> list[list[float]]:
    return [[float(m["step"]), float(m[key])] for m in run.read_metrics() if key in m]


def train_student_row(cfg: DualTeacherKDConfig, run: Run, row: str, init: dict[str, torch.Tensor],
                      x: torch.Tensor, y: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor,
                      teachers: dict[str, torch.nn.Module], cache: TeacherOutputs | None, n_classes: int,
                      device: str, macs: int) -> dict[str, Any]:
    """Train one student row from the shared initial weights; returns its metrics, curves and export check."""
    student = make_student(n_classes)
    student.load_state_dict(init)
    settings = _settings(cfg, "student")
    if row == "student-alone":
        module: torch.nn.Module = student
        kd = None

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(student(xb), yb)
    else:
        kd = make_variant(row, student, teachers.get("cnn"), teachers.get("vit"), tau=cfg.tau, alpha=cfg.alpha,
                          beta=cfg.beta, gamma=cfg.gamma, kappa=cfg.kappa, confidence=cfg.confidence,
                          discrepancy=cfg.discrepancy, feat_dim=cfg.feat_dim, phi=cfg.phi, phi_seed=cfg.seed,
                          teacher_frames_downsample=cfg.teacher_frames_downsample,
                          **({"fitnets_weight": cfg.fitnets_weight} if row == "fitnets" else {}))
        if cfg.phi == "pca":
            kd.fit_projections(cache.cnn_features, cache.vit_features)
        module = kd
        acc: dict[str, float] = {"omega_vit": 0.0, "n": 0.0}

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            out = kd(xb, yb, cache.index(idx, xb.device))
            acc["omega_vit"] += float(out["weights"][:, 1].sum())
            acc["n"] += float(idx.numel())
            return out["total"]

    def on_epoch(epoch: int, loss: float) -> None:
        m = accuracy_metrics(predict_logits(student, x_test, device=device), y_test)
        extra = {f"{row}/test_top1": m["top1"]}
        if kd is not None and acc["n"]:
            extra[f"{row}/omega_vit"] = acc["omega_vit"] / acc["n"]
            acc["omega_vit"], acc["n"] = 0.0, 0.0
        run.log(epoch, tag=row, **extra)

    t0 = time.perf_counter()
    fit(module, x, y, loss_fn, settings, run=run, tag=row, device=device, desc=f"student {row}", on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    exported = kd.export() if kd is not None else student.eval()
    logits = predict_logits(exported, x_test, device=device)
    out: dict[str, Any] = {"metrics": _row_metrics(logits, y_test, count_parameters(exported), macs),
                           "seconds": seconds, "curve": _curve(run, f"{row}/test_top1"),
                           "omega_vit": _curve(run, f"{row}/omega_vit")}
    if kd is not None:
        plain = make_student(n_classes)
        plain.load_state_dict(exported.state_dict(), strict=True)  # no SDB / regressor / phi keys in the export
        plain_logits = predict_logits(plain.to(device), x_test, device=device)
        kd_logits = predict_logits(kd.student, x_test, device=device)
        out["export_check"] = {
            "exported_params": count_parameters(exported), "plain_student_params": count_parameters(plain),
            "training_module_params": count_parameters(kd), "dropped_training_only_params":
                kd.training_only_parameters(),
            "max_abs_diff_vs_plain": float((logits - plain_logits).abs().max()),
            "max_abs_diff_vs_training_student": float((logits - kd_logits).abs().max()),
            "sdb_keys_in_export": sum(1 for k in exported.state_dict() if "sdb" in k),
            "ok": bool(count_parameters(exported) == count_parameters(plain) and torch.equal(logits, plain_logits)
                       and torch.equal(logits, kd_logits)
                       and not any("sdb" in k for k in exported.state_dict()))}
    return out


# ---------------------------------------------------------------------------------------------- report
def kd_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Model sizes vs the ViT teacher, the inference-graph check, test top-1 curves and the DATW weight curve."""
    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table, plot_curves

    extra: dict[str, Any] = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            extra.update(json.loads(p.read_text()).get("extra", {}))
    md: list[str] = []
    images: list[Path] = []
    sizes = extra.get("sizes", {})
    if sizes:
        vit = sizes.get("vit_teacher", {})
        rows = []
        for name, s in sizes.items():
            rows.append([name, int(s["params"]), s["macs"] / 1e6,
                         s["params"] / vit["params"] if vit else None, s["macs"] / vit["macs"] if vit else None])
        md += ["## Model sizes", "", markdown_table(["model", "params", "MMACs / clip", "params / ViT", "MACs / ViT"],
                                                    rows), ""]
    check = extra.get("export_check")
    if check:
        md += ["## Inference model = plain student", "",
               f"Exported `dual-teacher-kd` student: {check['exported_params']} parameters (plain student "
               f"{check['plain_student_params']}; training module {check['training_module_params']}, of which "
               f"{check['dropped_training_only_params']} in the dropped SDB); max |logit difference| vs the plain "
               f"student loaded with its weights: {check['max_abs_diff_vs_plain']:.2e}; SDB keys in the export: "
               f"{check['sdb_keys_in_export']}; check {'passed' if check['ok'] else 'FAILED'}.", ""]
    curves = extra.get("curves", {})
    if curves:
        fig = plot_curves({k: [tuple(p) for p in v] for k, v in curves.items()}, xlabel="epoch",
                          ylabel="test top-1", title="dual-teacher-kd: student test top-1 per epoch")
        images.append(_save(fig, Path(d) / "student_curves.png"))
    omega = {k: v for k, v in extra.get("omega_vit", {}).items() if v and k in ("dual-teacher-kd", "datw-only")}
    if omega:
        fig = plot_curves({k: [tuple(p) for p in v] for k, v in omega.items()}, xlabel="epoch",
                          ylabel="mean omega_ViT", title="DATW: mean weight of the ViT teacher per epoch")
        images.append(_save(fig, Path(d) / "omega_vit.png"))
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("dual-teacher-kd", family="video", paper=PAPER, config=DualTeacherKDConfig, primary_metric="top1",
        baselines=(), rows=ROWS, compare_self=True, quick=QUICK, demo=True, report_extras=kd_report,
        table_metrics=("top1", "top5", "params", "mmacs"), demo_settings=DEMO, smoke_settings=SMOKE,
        headline=("dual-teacher-kd", ("student-alone", "kd-cnn", "kd-vit", "kd-avg", "fitnets")))
def run_dual_teacher_kd(cfg: DualTeacherKDConfig, run: Run) -> Result:
    """Dual-Teacher KD (DATW + structure-discrepancy branch + RKD) vs single-teacher KD, averaged teachers and no KD."""
    from polymodal.core.runtime import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    video, labels, class_names, info = load_clips(cfg)
    tr, te = split_clips(labels, cfg)
    x, y, x_test, y_test = video[tr], labels[tr], video[te], labels[te]
    extra_clips = teacher_extra_clips(cfg)
    x_teach, y_teach = (x, y) if extra_clips is None else (torch.cat([x, extra_clips[0]]),
                                                           torch.cat([y, extra_clips[1]]))
    n_classes = len(class_names)
    r = cfg.teacher_frames_downsample
    example = torch.zeros(1, *x.shape[1:])
    torch.manual_seed(cfg.seed)
    student_init = {k: v.clone() for k, v in make_student(n_classes).state_dict().items()}
    sizes = {"student": {"params": count_parameters(make_student(n_classes)),
                         "macs": count_macs(make_student(n_classes), example)}}
    setup_s = time.perf_counter() - t_setup

    needed = {t for row in cfg.methods for t in NEEDS[row]}
    teachers: dict[str, torch.nn.Module] = {}
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for who in ("cnn", "vit"):
        if who not in needed:
            continue
        torch.manual_seed(cfg.seed + (1 if who == "cnn" else 2))
        if who == "cnn":
            model, xt, xe, ex = make_cnn_teacher(n_classes), x_teach, x_test, example
        else:
            model = make_vit_teacher(n_classes, frames=cfg.frames // r, size=x.shape[-1], stem=cfg.vit_stem)
            xt, xe, ex = x_teach[:, ::r], x_test[:, ::r], example[:, ::r]
        t0 = time.perf_counter()
        done = run.load_checkpoint(f"row-teacher-{who}.pt")
        model = load_or_train(model, xt, y_teach, _settings(cfg, who), run=run, tag=f"teacher-{who}", device=device,
                              desc=f"teacher {who}")
        sizes[f"{who}_teacher"] = {"params": count_parameters(model), "macs": count_macs(model.cpu(), ex)}
        model.to(device)
        if done is None:
            done = {"metrics": _row_metrics(predict_logits(model, xe, device=device), y_test,
                                            sizes[f"{who}_teacher"]["params"], sizes[f"{who}_teacher"]["macs"]),
                    "seconds": time.perf_counter() - t0}
            run.save_checkpoint(done, f"row-teacher-{who}.pt")
        teachers[who] = model
        if f"teacher-{who}" in cfg.methods:
            rows[f"teacher-{who}"] = {k: float(v) for k, v in done["metrics"].items()}
            seconds[f"teacher-{who}"] = float(done["seconds"])

    cache = None
    if any(row in STUDENT_ROWS and row != "student-alone" for row in cfg.methods):
        cache = teacher_outputs(teachers.get("cnn"), teachers.get("vit"), x, batch_size=64, device=device,
                                teacher_frames_downsample=r)
    curves, omegas, export_check = {}, {}, None
    for row in cfg.methods:
        if row not in STUDENT_ROWS:
            continue
        done = run.load_checkpoint(f"row-{row}.pt")
        if done is None:
            done = train_student_row(cfg, run, row, student_init, x, y, x_test, y_test, teachers, cache, n_classes,
                                     device, sizes["student"]["macs"])
            run.save_checkpoint(done, f"row-{row}.pt")
        rows[row] = {k: float(v) for k, v in done["metrics"].items()}
        seconds[row] = float(done["seconds"])
        curves[row] = done["curve"]
        omegas[row] = done["omega_vit"]
        if row == "dual-teacher-kd":
            export_check = done.get("export_check")

    ordered = {k: rows[k] for k in ROWS if k in rows}
    ratios = {}
    if "vit_teacher" in sizes:
        v = sizes["vit_teacher"]
        ratios = {"student_params_vs_vit": sizes["student"]["params"] / v["params"],
                  "student_macs_vs_vit": sizes["student"]["macs"] / v["macs"]}
    extra = {"sizes": sizes, "ratios_to_vit_teacher": ratios, "export_check": export_check, "curves": curves,
             "omega_vit": omegas, "class_names": list(class_names), "n_train": int(len(tr)), "n_test": int(len(te)),
             "n_teacher_train": int(len(y_teach)),
             "clip_shape": list(x.shape[1:]), "setup_seconds": round(setup_s, 2), **info}
    return Result(metrics=ordered[cfg.methods[0]] if cfg.methods[0] in ordered else next(iter(ordered.values())),
                  rows=ordered, row_seconds=seconds, extra=extra, train_seconds=float(sum(seconds.values())))

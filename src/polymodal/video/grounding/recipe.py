"""Recipe ``ovg-hq``: OVG-HQ-Unify and its baselines/ablations on one dataset and seed (spec ``video.md`` 3).

One run trains a frozen **hybrid expert** (the distillation teacher: segment + text queries) and then, with the same
data, seed and budget, one model per row:

- ``ovg-hq``: TTT memory (PMB #1), refinement (PMB #2), student modality cycling + expert distillation;
- ``lstm-memory`` / ``attention-memory`` / ``no-memory``: PMB #1 replaced by an LSTM over window summaries, by causal
  self-attention inside the window, by nothing (the offline model run online);
- ``no-refinement``: without PMB #2; ``no-distillation``: the unified model trained without the teacher;
- ``hybrid-expert``: the teacher itself (trained on hybrid queries only), evaluated like the others.

Every row is evaluated on the validation queries in each modality (text, image, segment, hybrid) with the online
metrics (oR@1 at IoU 0.5/0.7 and omAP, the "pos" timeliness weight averaged over L = 1, 3, 5 s); the primary metric
is ``On-Avg-R1@0.5_pos`` on **text** queries (un-prefixed keys are text; other modalities are prefixed ``image/``,
``segment/``, ``hybrid/``). The report adds a per-modality table and the timeliness trade-off (text oR@1 IoU 0.5 as
the delay tolerance L grows, the offline R1 as the limit). Each model checkpoints every epoch and each finished row is
stored, so ``--resume`` continues a killed run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.video.grounding.losses import LossWeights
from polymodal.video.grounding.model import MODALITIES, OVGConfig, OVGHQUnify
from polymodal.video.grounding.stream import OnlineGrounder, predict_dataset
from polymodal.video.grounding.train import TrainConfig, train_model

PAPER = Paper(title="OVG-HQ: Online Video Grounding with Hybrid-modal Queries", venue="ICCV 2025",
              arxiv="2508.11903", code="https://github.com/maojiaqi2324/OVG-HQ")

#: row -> (PMB #1 memory, PMB #2 refinement, distillation)
ROW_SPECS: dict[str, tuple[str, bool, bool]] = {
    "ovg-hq": ("ttt", True, True),
    "lstm-memory": ("lstm", True, True),
    "attention-memory": ("attention", True, True),
    "no-refinement": ("ttt", False, True),
    "no-distillation": ("ttt", True, False),
    "no-memory": ("none", True, True),
    "hybrid-expert": ("ttt", True, False),
}
ROWS = tuple(ROW_SPECS)
#: delay tolerances (s) of the timeliness plot
TIMELINESS_L = (0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0)
BRIEF = ("On-Avg-R1@0.5_pos", "On-Avg-R1@0.7_pos", "On-Avg-mAP@0.5_pos", "On-Avg-mAP@Avg_pos")
OFFLINE = ("OFF-R1@0.5", "OFF-R1@0.7", "OFF-mAP@Avg")


class OVGHQConfig(RecipeConfig):
    """OVG-HQ on synthetic CLIP-shaped features over real QVHighlights rows (spec 3.8). Model defaults are the CPU
    sizes (official: width 256, 8 heads, FFN 1024, lr 1e-4, batch 256, 30 epochs)."""

    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    n_train: int = Field(800, ge=4, description="training queries (a seeded subset of QVHighlights train)")
    n_valid: int = Field(200, ge=2, description="validation queries (a seeded subset of QVHighlights val)")
    dim: int = Field(512, ge=8, description="feature width of clips and queries (CLIP ViT-B/32: 512)")
    text: Literal["minilm", "hash"] = Field("minilm", description="event latents from MiniLM on the real query "
                                            "text, or from hashed words (no model)")
    width: int = Field(128, ge=8)
    heads: int = Field(4, ge=1)
    query_hidden: int = Field(256, ge=8)
    ffn_mult: int = Field(2, ge=1)
    window: int = Field(16, ge=8, description="clips per window (the anchors go up to 8 clips)")
    memory_blocks: int = Field(2, ge=1)
    ttt_base_lr: float = Field(1.0, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    input_dropout: float = Field(0.5, ge=0, lt=1)
    epochs: int = Field(10, ge=1, description="official 30; 10 keeps a CPU run of all rows to hours")
    teacher_epochs: int | None = Field(None, ge=1, description="epochs of the hybrid expert (None: epochs)")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0, description="AdamW lr (official 1e-4 at batch 256 and a far larger set)")
    weight_decay: float = Field(1e-4, ge=0)
    grad_clip: float = Field(0.1, ge=0)
    seq_len: int = Field(16, ge=1, description="windows per training sequence (the TTT state is reset per sequence)")
    seq_stride: int = Field(8, ge=1, description="clips between the starts of a video's training sequences")
    student_modalities: tuple[str, ...] = Field(("hybrid", "segment", "text", "image"),
                                                description="the student's query modality cycles over these by batch")
    distill_weight: float = Field(0.4, ge=0)
    temperature: float = Field(2.0, gt=0)
    replicate_double_softmax: bool = Field(False, description="reproduce the official KL on double-softmaxed "
                                           "student probabilities")
    aux_loss: bool = Field(True, description="also supervise the pre-refinement predictions")
    score_threshold: float = Field(0.5, ge=0, le=1)
    nms_overlap: float = Field(0.1, ge=0, le=1)
    eval_batch: int = Field(32, ge=1)
    latency_steps: int = Field(60, ge=0, description="streaming steps timed per row (ms_per_step); 0: skip")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("student_modalities")
    @classmethod
    def _known_modalities(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, MODALITIES)

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "n_train", "n_valid", "dim", "text", "width", "heads", "query_hidden",
                "ffn_mult", "window", "memory_blocks", "ttt_base_lr", "dropout", "input_dropout", "epochs",
                "teacher_epochs", "batch_size", "lr", "weight_decay", "grad_clip", "seq_len", "seq_stride",
                "student_modalities", "distill_weight", "temperature", "replicate_double_softmax", "aux_loss",
                "score_threshold", "nms_overlap", "threads")


#: ``--quick``: 240 / 120 queries, 256-d hashed-word features, width 64, 3 epochs of 16-window sequences (one
#: sequence every 16 clips: the sequences tile each video; those without a positive anchor are dropped)
QUICK = {"n_train": 240, "n_valid": 120, "dim": 256, "text": "hash", "width": 64, "query_hidden": 128,
         "dropout": 0.0, "epochs": 3, "teacher_epochs": 2, "batch_size": 16, "seq_len": 16, "seq_stride": 16,
         "latency_steps": 40, "threads": 1}
#: ``polymodal demo`` (on top of quick): quick's data, models and epochs, but only the method and its strongest quick
#: baseline (no-memory) and 20 timed streaming steps: the two rows equal quick's (docs/methods/ovg-hq.md)
DEMO = {"methods": ("ovg-hq", "no-memory"), "latency_steps": 20}
#: ``polymodal demo --setting smoke`` (on top of quick): 16 / 8 queries, one epoch, two rows
SMOKE = {"n_train": 16, "n_valid": 8, "epochs": 1, "teacher_epochs": 1, "latency_steps": 5,
         "methods": ("ovg-hq", "no-memory")}


def model_config(cfg: OVGHQConfig, input_dim: int, memory: str, refine: bool) -> OVGConfig:
    return OVGConfig(input_dim=input_dim, width=cfg.width, heads=cfg.heads, query_hidden=cfg.query_hidden,
                     ffn_mult=cfg.ffn_mult, window=cfg.window, memory=memory, memory_blocks=cfg.memory_blocks,
                     refine=refine, ttt_base_lr=cfg.ttt_base_lr, dropout=cfg.dropout,
                     input_dropout=cfg.input_dropout)


def train_config(cfg: OVGHQConfig, device: str, *, teacher: bool = False) -> TrainConfig:
    return TrainConfig(epochs=(cfg.teacher_epochs or cfg.epochs) if teacher else cfg.epochs,
                       batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
                       seq_len=cfg.seq_len, seq_stride=cfg.seq_stride,
                       modalities=("hybrid",) if teacher else cfg.student_modalities,
                       distill_weight=cfg.distill_weight, temperature=cfg.temperature,
                       replicate_double_softmax=cfg.replicate_double_softmax, losses=LossWeights(aux=cfg.aux_loss),
                       seed=cfg.seed, device=device)


# ---------------------------------------------------------------------------------------------- evaluation
def top1_delays(preds: list[dict], gts: list[dict], iou: float = 0.5) -> list[float]:
    """Emission delay ``gentime - e*`` (s) of each query's top-1 proposal that hits a GT at ``iou`` (negative =
    emitted before the moment ended)."""
    by_qid = {g["qid"]: np.asarray(g["relevant_windows"], dtype=float) for g in gts}
    out = []
    for p in preds:
        if not p["pred_relevant_windows"]:
            continue
        s, e, _, g = max(p["pred_relevant_windows"], key=lambda w: w[2])
        gt = by_qid[p["qid"]]
        inter = np.clip(np.minimum(e, gt[:, 1]) - np.maximum(s, gt[:, 0]), 0, None)
        union = np.maximum(e, gt[:, 1]) - np.minimum(s, gt[:, 0])
        ious = inter / np.maximum(union, 1e-9)
        j = int(np.argmax(ious))
        if ious[j] >= iou:
            out.append(float(g - gt[j, 1]))
    return out


def evaluate_model(model: OVGHQUnify, valid: Any, cfg: OVGHQConfig, device: str) -> tuple[dict[str, float], dict]:
    """Online metrics per modality + the text timeliness curve. Returns ``(metrics, extra)``."""
    from polymodal.video.grounding.metrics.online import evaluate

    gts = valid.gts()
    metrics: dict[str, float] = {}
    extra: dict[str, Any] = {}
    for modality in MODALITIES:
        preds = predict_dataset(model, valid, modality, batch_size=cfg.eval_batch, score_threshold=cfg.score_threshold,
                                nms_overlap=cfg.nms_overlap, device=device)
        brief = evaluate(preds, gts, tolerances=(1, 3, 5), variant="pos")["brief"]
        prefix = "" if modality == "text" else f"{modality}/"
        for key in BRIEF + OFFLINE:
            if key in brief:
                metrics[prefix + key] = float(brief[key])
        metrics[prefix + "proposals_per_query"] = float(np.mean([len(p["pred_relevant_windows"]) for p in preds]))
        if modality == "text":
            delays = top1_delays(preds, gts)
            metrics["top1_delay_s"] = float(np.median(delays)) if delays else float("nan")
            curve = [[L, float(evaluate(preds, gts, tolerances=(L,), variant="pos")["brief"]["On-Avg-R1@0.5_pos"])]
                     for L in TIMELINESS_L]
            extra["timeliness"] = {"L": list(TIMELINESS_L), "r1": [c[1] for c in curve],
                                   "offline": float(brief.get("OFF-R1@0.5", float("nan")))}
    return metrics, extra


def streaming_latency(model: OVGHQUnify, sample: Any, steps: int) -> float:
    """Median milliseconds of one ``OnlineGrounder.step`` (text query) over the first ``steps`` clips."""
    g = OnlineGrounder(model, sample.queries, "text", duration=sample.duration)
    clips = np.asarray(sample.video, dtype=np.float32)
    times = []
    for t in range(min(steps, len(clips))):
        t0 = time.perf_counter()
        g.step(clips[t])
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[3:] if len(times) > 6 else times))


# ---------------------------------------------------------------------------------------------- report
def ovg_report(d: Path, result: dict, run_dirs: dict) -> tuple[list[str], list[Path]]:
    """Per-modality table and the timeliness trade-off plot (text oR@1, IoU 0.5, vs the delay tolerance L)."""
    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    extra: dict[str, Any] = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            extra.update(json.loads(p.read_text()).get("extra", {}))
    md: list[str] = ["## Online grounding by query modality", "",
                     "oR@1 at IoU 0.5 / 0.7 and omAP (IoU 0.5:0.95), 'pos' timeliness weight averaged over "
                     "L = 1, 3, 5 s (x100).", ""]
    headers = ["method"]
    for m in MODALITIES:
        headers += [f"{m} R1@0.5", f"{m} R1@0.7", f"{m} omAP"]
    rows = []
    for r in result["rows"]:
        mt = r["metrics"]
        line = [r["method"]]
        for m in MODALITIES:
            pre = "" if m == "text" else f"{m}/"
            line += [mt.get(pre + "On-Avg-R1@0.5_pos"), mt.get(pre + "On-Avg-R1@0.7_pos"),
                     mt.get(pre + "On-Avg-mAP@Avg_pos")]
        rows.append(line)
    md += [markdown_table(headers, rows, bold_best={i: "max" for i in range(1, len(headers))}), ""]
    images: list[Path] = []
    timeliness = extra.get("timeliness", {})
    if timeliness:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        for name, tl in timeliness.items():
            line, = ax.plot(tl["L"], tl["r1"], marker="o", label=name, lw=2 if name == "ovg-hq" else 1)
            ax.axhline(tl["offline"], color=line.get_color(), ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("delay tolerance L (s, log scale)")
        ax.set_ylabel("text oR@1, IoU 0.5 ('pos')")
        ax.set_title("timeliness trade-off (dotted: offline R1@0.5, no timeliness)", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        images.append(_save(fig, Path(d) / "timeliness.png"))
        md += ["The timeliness plot shows text oR@1 (IoU 0.5) as the tolerated emission delay L grows; a proposal "
               "emitted after the moment's end e* + L scores 0. The dotted lines are the offline R1@0.5.", ""]
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("ovg-hq", family="video", paper=PAPER, config=OVGHQConfig, primary_metric="On-Avg-R1@0.5_pos",
        baselines=(), rows=ROWS, compare_self=True, quick=QUICK, demo=True, report_extras=ovg_report,
        table_metrics=("On-Avg-R1@0.5_pos", "On-Avg-R1@0.7_pos", "On-Avg-mAP@Avg_pos", "image/On-Avg-R1@0.5_pos",
                       "segment/On-Avg-R1@0.5_pos", "hybrid/On-Avg-R1@0.5_pos", "OFF-R1@0.5", "top1_delay_s",
                       "ms_per_step"), demo_settings=DEMO, smoke_settings=SMOKE,
        headline=("ovg-hq", ("lstm-memory", "attention-memory", "no-memory")))
def run_ovg_hq(cfg: OVGHQConfig, run: Run) -> Result:
    """OVG-HQ-Unify (TTT memory, refinement, expert distillation) vs LSTM / attention / no memory, no refinement,
    no distillation, on text, image, segment and hybrid queries; primary: text oR@1, IoU 0.5."""
    from polymodal.core.runtime import resolve_device
    from polymodal.video.grounding.data import default_dataset

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    train, valid = default_dataset(cfg.n_train, cfg.n_valid, dim=cfg.dim, seed=cfg.seed, text=cfg.text)
    setup_s = time.perf_counter() - t_setup
    dim = train.dim
    need_teacher = any(ROW_SPECS[r][2] for r in cfg.methods) or "hybrid-expert" in cfg.methods
    teacher = None
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    extra: dict[str, Any] = {"timeliness": {}, "curves": {}, "setup_seconds": round(setup_s, 2),
                             "n_train": len(train), "n_valid": len(valid), "skeleton": train.info.get("skeleton")}
    teacher_seconds = 0.0
    if need_teacher:
        torch.manual_seed(cfg.seed)
        teacher = OVGHQUnify(model_config(cfg, dim, "ttt", True))
        out = train_model(teacher, train, train_config(cfg, device, teacher=True), run=run, tag="hybrid-expert")
        teacher.eval()
        teacher_seconds = out["train_seconds"]
        extra["curves"]["hybrid-expert"] = out["curve"]
    for row in cfg.methods:
        done = run.load_checkpoint(f"row-{row}.pt")
        if done is None:
            memory, refine, distill = ROW_SPECS[row]
            t0 = time.perf_counter()
            if row == "hybrid-expert":
                model, curve, train_s = teacher, extra["curves"]["hybrid-expert"], teacher_seconds
            else:
                torch.manual_seed(cfg.seed)
                model = OVGHQUnify(model_config(cfg, dim, memory, refine))
                out = train_model(model, train, train_config(cfg, device), teacher=teacher if distill else None,
                                  run=run, tag=row)
                curve, train_s = out["curve"], out["train_seconds"]
            metrics, ev = evaluate_model(model, valid, cfg, device)
            if cfg.latency_steps:
                metrics["ms_per_step"] = streaming_latency(model.to("cpu") if device != "cpu" else model, valid[0],
                                                           cfg.latency_steps)
                model.to(device)
            metrics["final_train_loss"] = float(curve[-1][1])
            done = {"metrics": metrics, "timeliness": ev.get("timeliness", {}), "curve": curve,
                    "train_seconds": float(train_s), "eval_seconds": time.perf_counter() - t0 - (
                        0.0 if row == "hybrid-expert" else train_s)}
            run.save_checkpoint(done, f"row-{row}.pt")
        rows[row] = {k: float(v) for k, v in done["metrics"].items()}
        seconds[row] = float(done["train_seconds"]) + float(done["eval_seconds"])
        extra["timeliness"][row] = done["timeliness"]
        extra["curves"][row] = done["curve"]
    extra["teacher_seconds"] = round(teacher_seconds, 2)
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())) + teacher_seconds)

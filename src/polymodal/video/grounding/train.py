"""Training loop of OVG-HQ (spec ``video.md`` sections 3.2 and 3.4).

A training item is a **sequence** of ``seq_len`` (16) consecutive window positions of one video (windows of 16 clips
advanced by 1 clip); the model state (TTT inner weights, LSTM state) starts fresh at each sequence, as the official
training (the evaluation then runs the whole video in one pass: a train/test horizon mismatch kept on purpose).
Sequences start every ``seq_stride`` clips [reconstruction; a CPU budget] and only those with >= 1 positive anchor
are kept. AdamW, gradient clipping, focal + L1 losses, optional frozen teacher distillation with the student's query
modality cycling by batch index. With a :class:`~polymodal.core.runs.Run`, every epoch ends with a checkpoint so a
killed run resumes and ends with the same numbers; the epoch order and dropout are seeded per epoch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polymodal.core.progress import progress_bar
from polymodal.video.grounding.anchors import label_video
from polymodal.video.grounding.losses import LossWeights, distill_loss, grounding_loss
from polymodal.video.grounding.model import OVGHQUnify
from polymodal.video.grounding.stream import CLIP_SECONDS, query_batch


@dataclass
class TrainConfig:
    """Optimisation settings; official: AdamW lr 1e-4, wd 1e-4, 30 epochs, batch 256, grad clip 0.1, seed 3."""

    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    grad_clip: float = 0.1
    seq_len: int = 16
    seq_stride: int = 4
    #: student query modalities, cycled by batch index (the teacher/expert uses ("hybrid",))
    modalities: tuple[str, ...] = ("hybrid", "segment", "text", "image")
    distill_weight: float = 0.4
    temperature: float = 2.0
    replicate_double_softmax: bool = False
    losses: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    device: str = "cpu"


class SequenceData:
    """Per-video anchor labels and the list of training sequences ``(sample index, first window end)``."""

    def __init__(self, samples: Sequence[Any], window: int, seq_len: int, seq_stride: int,
                 lengths: Sequence[int], clip_seconds: float = CLIP_SECONDS):
        self.samples = list(samples)
        self.window, self.seq_len = window, seq_len
        self.labels: list[tuple[np.ndarray, np.ndarray]] = []
        self.items: list[tuple[int, int]] = []
        for i, s in enumerate(self.samples):
            n = len(s.video)
            gts = np.asarray(s.windows, dtype=np.float64).reshape(-1, 2) / clip_seconds
            pos, tgt = label_video(n, gts, lengths)
            self.labels.append((pos, tgt))
            for t0 in range(0, max(1, n - seq_len + 1), seq_stride):
                if pos[t0:t0 + seq_len].any():
                    self.items.append((i, t0))

    def __len__(self) -> int:
        return len(self.items)

    def batch(self, idx: Sequence[int], modalities: Sequence[str], device: str | torch.device = "cpu"
              ) -> dict[str, Any]:
        """Tensors for the items ``idx``: left-padded clips ``x`` (B, W-1+S, D) with ``clip_mask``, labels
        ``positive``/``valid`` (B, S, A), ``targets`` (B, S, A, 2), and the queries of each modality."""
        W, S = self.window, self.seq_len
        D = np.asarray(self.samples[0].video).shape[1]
        A = self.labels[0][0].shape[1]
        B = len(idx)
        x = np.zeros((B, W - 1 + S, D), dtype=np.float32)
        cmask = np.zeros((B, W - 1 + S), dtype=bool)
        pos = np.zeros((B, S, A), dtype=bool)
        valid = np.zeros((B, S, A), dtype=bool)
        tgt = np.zeros((B, S, A, 2), dtype=np.float32)
        for b, k in enumerate(idx):
            i, t0 = self.items[k]
            video = np.asarray(self.samples[i].video, dtype=np.float32)
            n = len(video)
            lo = t0 - (W - 1)
            src = np.arange(lo, t0 + S)
            ok = (src >= 0) & (src < n)
            x[b, ok] = video[src[ok]]
            cmask[b, ok] = True
            ends = np.arange(t0, t0 + S)
            e_ok = ends < n
            p, t = self.labels[i]
            pos[b, e_ok] = p[ends[e_ok]]
            tgt[b, e_ok] = t[ends[e_ok]]
            valid[b, e_ok] = True
        queries = {m: query_batch([self.samples[self.items[k][0]].queries for k in idx], m, device)
                   for m in dict.fromkeys(modalities)}
        dev = torch.device(device)
        return {"x": torch.from_numpy(x).to(dev), "clip_mask": torch.from_numpy(cmask).to(dev),
                "positive": torch.from_numpy(pos).to(dev), "valid": torch.from_numpy(valid).to(dev),
                "targets": torch.from_numpy(tgt).to(dev), "queries": queries}


def train_step_loss(model: OVGHQUnify, batch: dict[str, Any], modality: str, cfg: TrainConfig,
                    teacher: OVGHQUnify | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: grounding loss of the student on ``modality`` (+ ``distill_weight`` x L_d against the
    frozen teacher fed the hybrid query)."""
    toks, masks = batch["queries"][modality]
    out, _ = model(batch["x"], batch["clip_mask"], model.encode_query(toks, modality, masks))
    loss, logs = grounding_loss(out, batch["positive"], batch["targets"], batch["valid"], cfg.losses)
    if teacher is not None and cfg.distill_weight > 0:
        with torch.no_grad():
            ttoks, tmasks = batch["queries"]["hybrid"]
            tout, _ = teacher(batch["x"], batch["clip_mask"], teacher.encode_query(ttoks, "hybrid", tmasks))
        ld, dlogs = distill_loss(out, tout, cfg.temperature, cfg.replicate_double_softmax, batch["valid"])
        loss = loss + cfg.distill_weight * ld
        logs.update({f"distill_{k}": v for k, v in dlogs.items()})
        logs["distill"] = float(ld.detach())
    logs["loss"] = float(loss.detach())
    return loss, logs


def train_model(model: OVGHQUnify, samples: Sequence[Any], cfg: TrainConfig, *, teacher: OVGHQUnify | None = None,
                run: Any = None, tag: str = "model", quiet: bool = False) -> dict[str, Any]:
    """Train ``model`` in place on ``samples`` (``GroundingSample`` s). With ``run`` (a ``Run``), a checkpoint
    ``{tag}-last.pt`` is written after every epoch and reloaded on resume; each epoch logs one metrics line with
    ``row=tag``. Returns ``{"curve": [[epoch, mean loss], ...], "train_seconds": s}``."""
    device = torch.device(cfg.device)
    model.to(device)
    if teacher is not None:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    data = SequenceData(samples, model.cfg.window, cfg.seq_len, cfg.seq_stride, model.cfg.anchor_lengths)
    if len(data) == 0:
        raise ValueError("no training sequence has a positive anchor (are the GT windows inside the videos?)")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    steps_per_epoch = (len(data) + cfg.batch_size - 1) // cfg.batch_size
    start_epoch, curve, seconds = 0, [], 0.0
    ckpt = f"{tag}-last.pt"
    if run is not None:
        state = run.load_checkpoint(ckpt)
        if state is not None:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start_epoch, curve, seconds = int(state["epoch"]), [list(p) for p in state["curve"]], float(state["seconds"])
            run.note_resume(start_epoch)
        # lines logged after the last checkpoint (a kill between the log and the save) are written again
        run.truncate_metrics(start_epoch, match={"row": tag})
    with progress_bar(steps_per_epoch * (cfg.epochs - start_epoch), f"train {tag}", quiet=quiet) as bar:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            order = np.random.default_rng([cfg.seed, epoch]).permutation(len(data))
            model.train()
            sums: dict[str, float] = {}
            for k in range(steps_per_epoch):
                idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
                modality = cfg.modalities[(epoch * steps_per_epoch + k) % len(cfg.modalities)]
                needed = (modality, "hybrid") if teacher is not None else (modality,)
                batch = data.batch(idx, needed, device)
                loss, logs = train_step_loss(model, batch, modality, cfg, teacher)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                for key, v in logs.items():
                    sums[key] = sums.get(key, 0.0) + v
                bar.advance()
                bar.update(epoch=epoch + 1, loss=logs["loss"])
            seconds += time.perf_counter() - t0
            means = {key: v / steps_per_epoch for key, v in sums.items()}
            curve.append([epoch + 1, means["loss"]])
            if run is not None:
                run.log(epoch + 1, row=tag, **means)
                run.save_checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                                     "curve": curve, "seconds": seconds}, ckpt)
    return {"curve": curve, "train_seconds": seconds, "sequences": len(data), "steps_per_epoch": steps_per_epoch}

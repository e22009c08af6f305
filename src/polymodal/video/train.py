"""Training and evaluation loops shared by the video recipes (teachers, students, audio model, source models).

``fit`` runs mini-batch epochs of any loss over in-memory tensors, checkpointing the trained module and its
optimiser after every epoch through the recipe's ``Run`` (``<tag>.pt``) so a killed run resumes mid-training and
ends with the same numbers: batch order and dropout are re-seeded from ``(seed, epoch)`` at each epoch.
``train_classifier`` is ``fit`` with cross-entropy; ``evaluate_classifier`` returns top-1 / top-5 / loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.progress import progress_bar

if TYPE_CHECKING:
    from polymodal.core.runs import Run


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    optimizer: str = "adamw"  # "adamw" | "sgd"
    label_smoothing: float = 0.0
    grad_clip: float = 0.0  # 0 = off
    seed: int = 0
    schedule: str = "constant"  # "constant" | "cosine" (per step, to 0 at the last step)
    warmup_epochs: float = 0.0  # linear warm-up from 0 over this many epochs (per step)


def lr_factor(s: TrainSettings, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at optimiser step ``step`` (0-based): linear warm-up over ``warmup_epochs``, then
    constant or cosine decay to 0 at the end of ``epochs``. A pure function of the step, so resuming is exact."""
    if s.schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {s.schedule!r}")
    total = max(s.epochs * steps_per_epoch, 1)
    warm = int(round(s.warmup_epochs * steps_per_epoch))
    if warm > 0 and step < warm:
        return (step + 1) / warm
    if s.schedule == "cosine":
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return 1.0


def make_optimizer(params: list[nn.Parameter], s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay, nesterov=True)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {s.optimizer!r}")


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fit(module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn, settings: TrainSettings, *,
        run: Run | None = None, tag: str = "model", device: str | torch.device = "cpu", desc: str | None = None,
        params: list[nn.Parameter] | None = None, on_epoch: Callable[[int, float], None] | None = None
        ) -> list[float]:
    """Train ``module`` for ``settings.epochs`` epochs; ``loss_fn(xb, yb, idx)`` returns the batch loss (``idx``:
    the batch's row indices, for per-sample side information). Returns the mean loss of each epoch.

    With ``run``: resumes from ``checkpoints/<tag>.pt`` when present and saves it after every epoch;
    ``metrics.jsonl`` gets a line ``{"step": epoch, "<tag>/loss": ...}`` per epoch.
    """
    device = torch.device(device)
    module.to(device)
    params = params if params is not None else [p for p in module.parameters() if p.requires_grad]
    opt = make_optimizer(params, settings)
    base_lrs = [g["lr"] for g in opt.param_groups]  # before a resumed state overwrites the scheduled lr
    start, history = 0, []
    ckpt_name = f"{tag}.pt"
    if run is not None:
        state = run.load_checkpoint(ckpt_name)
        if state is not None:
            module.load_state_dict(state["module"])
            opt.load_state_dict(state["optimizer"])
            start, history = int(state["epoch"]), [float(v) for v in state["history"]]
            run.truncate_metrics(start, match={"tag": tag})
    n = x.shape[0]
    steps_per_epoch = max(math.ceil(n / settings.batch_size), 1)
    scheduled = settings.schedule != "constant" or settings.warmup_epochs > 0
    with progress_bar(settings.epochs, desc or f"train {tag}") as bar:
        bar.advance(start)
        for epoch in range(start, settings.epochs):
            module.train()
            torch.manual_seed(settings.seed * 100_003 + epoch)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(settings.seed * 7919 + epoch))
            total, count = 0.0, 0
            for b, i in enumerate(range(0, n, settings.batch_size)):
                idx = order[i:i + settings.batch_size]
                if scheduled:
                    f = lr_factor(settings, epoch * steps_per_epoch + b, steps_per_epoch)
                    for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                        g["lr"] = lr * f
                loss = loss_fn(x[idx].to(device), y[idx].to(device), idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip > 0:
                    nn.utils.clip_grad_norm_(params, settings.grad_clip)
                opt.step()
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()
            history.append(total / max(count, 1))
            if run is not None:
                run.log(epoch + 1, tag=tag, **{f"{tag}/loss": history[-1]})
                run.save_checkpoint({"module": module.state_dict(), "optimizer": opt.state_dict(),
                                     "epoch": epoch + 1, "history": history}, ckpt_name)
            if on_epoch is not None:
                on_epoch(epoch + 1, history[-1])
            bar.advance()
            bar.update(loss=history[-1])
    return history


def train_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: TrainSettings, *,
                     run: Run | None = None, tag: str = "model", device: str | torch.device = "cpu",
                     desc: str | None = None) -> list[float]:
    """Cross-entropy training of a clip (or audio) classifier; see ``fit``."""
    def ce(xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(xb), yb, label_smoothing=settings.label_smoothing)

    return fit(model, x, y, ce, settings, run=run, tag=tag, device=device, desc=desc)


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, *, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Eval-mode logits for every row of ``x`` (on the CPU)."""
    was = model.training
    model.eval()
    out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, x.shape[0], batch_size)]
    model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def accuracy_metrics(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """top-1 / top-5 accuracy and mean cross-entropy of ``logits`` against labels ``y``."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return {"top1": float((top[:, 0] == y).float().mean()),
            "top5": float((top == y[:, None]).any(dim=1).float().mean()),
            "loss": float(F.cross_entropy(logits, y))}


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 64,
                        device: str | torch.device = "cpu") -> dict[str, float]:
    return accuracy_metrics(predict_logits(model, x, batch_size=batch_size, device=device), y)


def load_or_train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: TrainSettings, *,
                  run: Run | None, tag: str, device: str | torch.device = "cpu", desc: str | None = None) -> nn.Module:
    """Train ``model`` unless ``checkpoints/<tag>-final.pt`` exists in ``run`` (then load it); returns it in eval mode.
    Used for the frozen models (teachers, source model, audio model) several rows share."""
    final = f"{tag}-final.pt"
    state = run.load_checkpoint(final) if run is not None else None
    if state is not None:
        model.load_state_dict(state["module"])
    else:
        train_classifier(model, x, y, settings, run=run, tag=tag, device=device, desc=desc)
        if run is not None:
            run.save_checkpoint({"module": model.state_dict()}, final)
    model.to(device).eval()
    return model

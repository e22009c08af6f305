"""OVG-HQ losses (spec ``video.md`` section 3.4): focal classification, L1 regression, expert-teacher distillation.

- Classification: focal loss on every anchor, alpha 0.9 (foreground) / 0.1 (background), gamma 2, weight 10; the
  foreground probability is the softmax of the (background, foreground) logits; mean over real anchors.
- Regression: L1 on (offset, log-length) of positive anchors, weight 1; mean over positive anchors x 2 values.
- Distillation (unified model): a frozen expert teacher sees the hybrid (segment + text) query while the student's
  modality cycles by batch index; ``L_d`` = mean of four terms: KL(teacher || student) on the class logits with
  temperature 2 (scaled by T^2 [reconstruction]), MSE on the span predictions, MSE on the decoder anchor features of
  layer 0 and of the last layer; weight 0.4. The official code applies ``log_softmax`` to already-softmaxed student
  probabilities (a double softmax); ``replicate_double_softmax=True`` reproduces it, the default does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

STUDENT_CYCLE = ("hybrid", "segment", "text", "image")


@dataclass
class LossWeights:
    cls: float = 10.0
    reg: float = 1.0
    distill: float = 0.4
    focal_alpha: float = 0.9
    focal_gamma: float = 2.0
    temperature: float = 2.0
    #: also supervise the pre-refinement predictions (auxiliary loss) [reconstruction]
    aux: bool = True


def focal_loss(logits: torch.Tensor, positive: torch.Tensor, valid: torch.Tensor | None = None, alpha: float = 0.9,
               gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss ``-alpha_t (1 - p_t)^gamma log p_t`` over the anchors where ``valid`` (all when None).
    ``logits`` (..., 2) = (background, foreground); ``positive`` (...) bool."""
    logp = torch.log_softmax(logits.float(), -1)
    pos = positive.bool()
    logp_t = torch.where(pos, logp[..., 1], logp[..., 0])
    p_t = logp_t.exp()
    alpha_t = torch.where(pos, torch.full_like(p_t, alpha), torch.full_like(p_t, 1 - alpha))
    loss = -alpha_t * (1 - p_t) ** gamma * logp_t
    if valid is None:
        return loss.mean()
    v = valid.to(loss.dtype)
    return (loss * v).sum() / v.sum().clamp_min(1.0)


def span_l1(spans: torch.Tensor, targets: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """L1 on (offset, log-length) of the positive anchors (0 when there is none)."""
    m = positive.to(spans.dtype)[..., None]
    return ((spans.float() - targets.float()).abs() * m).sum() / (2 * m.sum()).clamp_min(1.0)


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0,
               replicate_double_softmax: bool = False, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` summed over classes, mean over anchors.

    ``replicate_double_softmax=True`` reproduces the official code's quirk: the student's log-probabilities are
    ``log_softmax(softmax(student / T))`` (a second softmax over probabilities)."""
    T = temperature
    s = student_logits.float() / T
    if replicate_double_softmax:
        s = torch.softmax(s, -1)
    log_q = torch.log_softmax(s, -1)
    p = torch.softmax(teacher_logits.float() / T, -1)
    kl = (p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(-1) * T * T
    if valid is None:
        return kl.mean()
    v = valid.to(kl.dtype)
    return (kl * v).sum() / v.sum().clamp_min(1.0)


def distill_loss(student: dict[str, Any], teacher: dict[str, Any], temperature: float = 2.0,
                 replicate_double_softmax: bool = False, valid: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """``L_d`` = mean of KL on class logits, MSE on spans, MSE on decoder features of the first and last layer."""
    def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d = ((a.float() - b.float().detach()) ** 2).mean(-1)
        if valid is None:
            return d.mean()
        v = valid.to(d.dtype)
        return (d * v).sum() / v.sum().clamp_min(1.0)

    terms = {
        "kl": distill_kl(student["logits"], teacher["logits"].detach(), temperature, replicate_double_softmax, valid),
        "span_mse": mse(student["spans"], teacher["spans"]),
        "feat0_mse": mse(student["features"][0], teacher["features"][0]),
        "feat1_mse": mse(student["features"][-1], teacher["features"][-1]),
    }
    total = sum(terms.values()) / len(terms)
    return total, {k: float(v.detach()) for k, v in terms.items()}


def grounding_loss(out: dict[str, Any], positive: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                   w: LossWeights | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal (x ``w.cls``) + L1 (x ``w.reg``) on the final predictions, plus the same on the pre-refinement ones when
    ``w.aux`` and the model refines. ``positive``/``valid`` (B, S, A) bool, ``targets`` (B, S, A, 2)."""
    w = w or LossWeights()
    pos = positive & valid
    cls = focal_loss(out["logits"], pos, valid, w.focal_alpha, w.focal_gamma)
    reg = span_l1(out["spans"], targets, pos)
    total = w.cls * cls + w.reg * reg
    logs = {"cls": float(cls.detach()), "reg": float(reg.detach())}
    if w.aux and out["init_logits"] is not out["logits"]:
        aux = w.cls * focal_loss(out["init_logits"], pos, valid, w.focal_alpha, w.focal_gamma) + \
            w.reg * span_l1(out["init_spans"], targets, pos)
        total = total + aux
        logs["aux"] = float(aux.detach())
    return total, logs


def student_modality(batch_index: int, cycle: tuple[str, ...] = STUDENT_CYCLE) -> str:
    """The student's query modality for batch ``batch_index`` (cycling, as the official unified training)."""
    return cycle[batch_index % len(cycle)]

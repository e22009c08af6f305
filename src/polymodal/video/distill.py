"""Dual-Teacher Knowledge Distillation for lightweight video CNNs (spec video.md section 1.3).

Peng et al., "Revisiting Cross-Architecture Distillation: Adaptive Dual-Teacher Transfer for Lightweight Video
Models" (arXiv 2511.09469; no public code). A small 3D-CNN student learns from a homogeneous CNN teacher and a
heterogeneous ViT teacher with

- **DATW** (:func:`datw_weights`): per-sample teacher weights ``omega = softmax_T(c_T * d_T / kappa)`` from each
  teacher's confidence ``c_T`` and its discrepancy ``d_T`` to the current student, computed without gradient; the
  KD target is ``z_target = omega_CNN * z_CNN + omega_ViT * z_ViT``;
- **SDD** (:class:`StructureDiscrepancyBranch`): a training-only branch on the student's last feature map that
  regresses the residual ``normalize(phi_ViT(f_ViT)) - normalize(phi_CNN(f_CNN))`` between the two teachers'
  (frozen-projected) features; it is dropped at inference (:meth:`DualTeacherKD.export`);
- **RKD** (:func:`rkd_loss`): Park et al.'s distance + angle relational loss from the ViT's pooled features to the
  student's.

``L = CE + alpha * tau^2 * KL(p(z_target) || p(z_S)) + beta * ||SDB(F_S) - f_res||^2 + gamma * L_RKD``.

The paper's formula for z_target and the three components are [paper]; every other detail (the exact confidence and
discrepancy functions, the softmax normalisation, phi, the SDB layout, the loss weights) is [reconstruction] with the
spec's defaults, each behind an argument. The baselines (single-teacher KD, fixed-weight average, DATW only,
FitNets) are the same module with options; see ``docs/methods/dual-teacher-kd.md``.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

Confidence = Literal["maxprob", "neg_entropy"]
Discrepancy = Literal["kl", "cosine"]


# ------------------------------------------------------------------------------------------ DATW
def teacher_confidence(z: torch.Tensor, tau: float = 4.0, kind: Confidence = "maxprob") -> torch.Tensor:
    """Per-sample confidence of logits ``z`` (B, K) at temperature ``tau``: ``max_k softmax(z / tau)``
    (``"maxprob"``) or ``1 - H(softmax(z / tau)) / log K`` (``"neg_entropy"``, rescaled to [0, 1] so that the
    product with the discrepancy stays a non-negative score) [reconstruction]."""
    p = F.softmax(z / tau, dim=-1)
    if kind == "maxprob":
        return p.max(dim=-1).values
    if kind == "neg_entropy":
        ent = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
        return 1.0 - ent / math.log(z.shape[-1]) if z.shape[-1] > 1 else torch.ones_like(ent)
    raise ValueError(f"confidence must be 'maxprob' or 'neg_entropy', got {kind!r}")


def teacher_discrepancy(z_t: torch.Tensor, z_s: torch.Tensor, tau: float = 4.0,
                        kind: Discrepancy = "kl") -> torch.Tensor:
    """Per-sample discrepancy between teacher and student logits: ``KL(p_T || p_S)`` at temperature ``tau``
    (``"kl"``) or ``1 - cos(z_T, z_S)`` (``"cosine"``) [reconstruction of the paper's "prediction discrepancy"]."""
    if kind == "kl":
        log_pt = F.log_softmax(z_t / tau, dim=-1)
        log_ps = F.log_softmax(z_s / tau, dim=-1)
        return (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).clamp_min(0.0)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(z_t, z_s, dim=-1)
    raise ValueError(f"discrepancy must be 'kl' or 'cosine', got {kind!r}")


@torch.no_grad()
def datw_weights(z_cnn: torch.Tensor, z_vit: torch.Tensor, z_s: torch.Tensor, tau: float = 4.0, kappa: float = 1.0,
                 confidence: Confidence = "maxprob", discrepancy: Discrepancy = "kl") -> torch.Tensor:
    """Discrepancy-Aware Teacher Weighting (spec 1.3): ``(B, 2)`` weights ``[omega_CNN, omega_ViT]`` per sample,
    ``omega = softmax_T(c_T * d_T / kappa)``. Computed under ``no_grad`` (the student's gradient does not flow
    through the weights); each row is a convex combination (non-negative, sums to 1)."""
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    if not (z_cnn.shape == z_vit.shape == z_s.shape):
        raise ValueError(f"teacher and student logits must share a shape, got {tuple(z_cnn.shape)}, "
                         f"{tuple(z_vit.shape)}, {tuple(z_s.shape)}")
    z_s = z_s.detach()
    scores = torch.stack([teacher_confidence(z, tau, confidence) * teacher_discrepancy(z, z_s, tau, discrepancy)
                          for z in (z_cnn.detach(), z_vit.detach())], dim=-1)
    return F.softmax(scores / kappa, dim=-1)


def kd_kl(z_target: torch.Tensor, z_s: torch.Tensor, tau: float) -> torch.Tensor:
    """Hinton KD term ``tau^2 * KL(softmax(z_target / tau) || softmax(z_s / tau))``, summed over classes and
    averaged over the batch."""
    log_pt = F.log_softmax(z_target / tau, dim=-1)
    log_ps = F.log_softmax(z_s / tau, dim=-1)
    return tau * tau * (log_pt.exp() * (log_pt - log_ps)).sum(dim=-1).mean()


# ------------------------------------------------------------------------------------------ RKD
def _pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x.unsqueeze(0) - x.unsqueeze(1)).pow(2).sum(-1)
    return sq.clamp_min(1e-12).sqrt() * (1 - torch.eye(x.shape[0], device=x.device, dtype=x.dtype))


def rkd_distance(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD distance term (Park et al., CVPR 2019): Huber between pairwise distances, each space normalised by its
    mean non-zero pairwise distance (so the term is invariant to scaling and translating either space)."""
    with torch.no_grad():
        td = _pairwise_distances(t)
        td = td / td[td > 0].mean().clamp_min(1e-12) if (td > 0).any() else td
    sd = _pairwise_distances(s)
    pos = sd.detach() > 0
    sd = sd / sd[pos].mean().clamp_min(1e-12) if pos.any() else sd
    return F.smooth_l1_loss(sd, td)


def rkd_angle(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RKD angle term: Huber between ``cos angle(x_i - x_j, x_k - x_j)`` over all triplets of each space."""
    def angles(x: torch.Tensor) -> torch.Tensor:
        diff = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # [j, i] = x_i - x_j
        return torch.bmm(diff, diff.transpose(1, 2)).reshape(-1)

    with torch.no_grad():
        ta = angles(t)
    return F.smooth_l1_loss(angles(s), ta)


def rkd_loss(s: torch.Tensor, t: torch.Tensor, distance_weight: float = 1.0, angle_weight: float = 2.0
             ) -> torch.Tensor:
    """Relational KD (spec 1.3): ``distance_weight * distance + angle_weight * angle`` (RKD paper defaults 1 and 2)
    between student features ``s`` (B, Ds) and teacher features ``t`` (B, Dt); the widths may differ (distances and
    angles are computed within each space). The teacher side carries no gradient."""
    if s.dim() != 2 or t.dim() != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(f"rkd_loss expects (B, Ds) and (B, Dt) features, got {tuple(s.shape)} and {tuple(t.shape)}")
    t = t.detach().float()
    s = s.float()
    out = s.new_zeros(())
    if s.shape[0] < 2:
        return out
    if distance_weight:
        out = out + distance_weight * rkd_distance(s, t)
    if angle_weight and s.shape[0] >= 3:
        out = out + angle_weight * rkd_angle(s, t)
    return out


# ------------------------------------------------------------------------------------------ projections phi
def orthogonal_projection(d_in: int, d_out: int, seed: int = 0) -> torch.Tensor:
    """A fixed ``(d_out, d_in)`` matrix with orthonormal rows (``d_out <= d_in``) or columns, from a seeded Gaussian."""
    g = torch.Generator().manual_seed(int(seed))
    a = torch.randn(max(d_in, d_out), min(d_in, d_out), generator=g)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # unique QR
    return q.T.contiguous() if d_out <= d_in else q.contiguous()  # (d_out, d_in)


class FrozenProjection(nn.Module):
    """phi of spec 1.3: a frozen linear map ``f -> (f - mean) @ W^T`` to the common width ``d_out``.

    ``kind="auto"``: identity when the widths match, else ``"orthogonal"`` (seeded random orthogonal map, so the
    residual target cannot collapse to zero); ``"identity"``; ``"pca"``: the top ``d_out`` principal directions of
    teacher features given to :meth:`fit` (needs ``d_out <= d_in``). Stored as buffers: no trainable parameters.
    """

    def __init__(self, d_in: int, d_out: int, kind: str = "auto", seed: int = 0):
        super().__init__()
        if kind == "auto":
            kind = "identity" if d_in == d_out else "orthogonal"
        if kind not in ("identity", "orthogonal", "pca"):
            raise ValueError(f"phi must be 'auto', 'identity', 'orthogonal' or 'pca', got {kind!r}")
        if kind == "identity" and d_in != d_out:
            raise ValueError(f"phi='identity' needs equal widths, got {d_in} -> {d_out}")
        if kind == "pca" and d_out > d_in:
            raise ValueError(f"phi='pca' needs feat_dim <= the teacher width, got {d_out} > {d_in}")
        self.kind, self.d_in, self.d_out = kind, d_in, d_out
        weight = torch.eye(d_out) if kind == "identity" else orthogonal_projection(d_in, d_out, seed)
        self.register_buffer("weight", weight)
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("fitted", torch.tensor(kind != "pca"))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> FrozenProjection:
        """Fit the ``"pca"`` map on teacher features ``(N, d_in)`` (a no-op for the other kinds)."""
        if self.kind != "pca":
            return self
        x = features.detach().float().cpu()
        if x.shape[0] < 2 or x.shape[1] != self.d_in:
            raise ValueError(f"phi='pca' needs (N >= 2, {self.d_in}) features, got {tuple(x.shape)}")
        mean = x.mean(0)
        _, _, vh = torch.linalg.svd(x - mean, full_matrices=False)
        w = torch.zeros(self.d_out, self.d_in)
        k = min(self.d_out, vh.shape[0])
        w[:k] = vh[:k]
        self.weight.copy_(w.to(self.weight))
        self.mean.copy_(mean.to(self.mean))
        self.fitted.fill_(True)
        return self

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("phi='pca' is not fitted: call DualTeacherKD.fit_projections(cnn_feats, vit_feats)")
        return (f - self.mean) @ self.weight.T


# ------------------------------------------------------------------------------------------ SDB
class NonLocal3D(nn.Module):
    """Single-head non-local block (self-attention over the T*H*W positions of a (B, C, T, H, W) map, residual)."""

    def __init__(self, channels: int, inner: int | None = None):
        super().__init__()
        inner = inner or max(channels // 2, 1)
        self.q = nn.Conv3d(channels, inner, 1)
        self.k = nn.Conv3d(channels, inner, 1)
        self.v = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)  # starts as the identity (the usual non-local init)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        q, k, v = (m(x).flatten(2).transpose(1, 2) for m in (self.q, self.k, self.v))  # (B, N, inner)
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(y.transpose(1, 2).reshape(b, -1, t, h, w))


class SqueezeExcite3D(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels),
                                nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3, 4)))[:, :, None, None, None]


class StructureDiscrepancyBranch(nn.Module):
    """SDB of spec 1.3: non-local -> squeeze-excitation -> global pool -> Linear(C -> D), on the student's last
    feature map. Regresses the teachers' residual feature; training only (not part of the exported student)."""

    def __init__(self, channels: int, out_dim: int = 128, se_reduction: int = 4):
        super().__init__()
        self.nonlocal_block = NonLocal3D(channels)
        self.se = SqueezeExcite3D(channels, se_reduction)
        self.proj = nn.Linear(channels, out_dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.proj(self.se(self.nonlocal_block(fmap)).mean(dim=(2, 3, 4)))


# ------------------------------------------------------------------------------------------ the module
class TeacherOutputs(NamedTuple):
    """Frozen teachers' outputs for a batch (or cached for a whole training set, then indexed by row): logits and
    pooled last-stage features. A teacher that is not used may be ``None``."""

    cnn_logits: torch.Tensor | None
    cnn_features: torch.Tensor | None
    vit_logits: torch.Tensor | None
    vit_features: torch.Tensor | None

    def index(self, idx: torch.Tensor, device: torch.device | str | None = None) -> TeacherOutputs:
        return TeacherOutputs(*(None if v is None else v[idx].to(device or v.device) for v in self))


LOSS_PARTS = ("ce", "kd", "sdd", "rkd", "fitnets", "total")


class DualTeacherKD(nn.Module):
    """Dual-Teacher KD training module (spec 1.3 / 1.5). ``forward(x, y)`` returns a dict of loss parts
    ``ce, kd, sdd, rkd, fitnets, total`` (scalars; a switched-off part is an exact 0) plus ``weights`` ``(B, 2)``
    (``[omega_CNN, omega_ViT]``, no gradient) — call ``out["total"].backward()``.

    Options (the baselines are this module with options):
      - ``teachers``: ``"both"`` (default), ``"cnn"`` or ``"vit"`` (single-teacher KD: ``z_target = z_T``);
      - ``weighting``: ``"datw"`` (default) or ``"fixed"`` (``omega = fixed_weight`` for the CNN, 0.5 default);
      - ``alpha``, ``beta``, ``gamma``: weights of the KD, SDD and RKD terms (1, 1, 1); ``tau`` 4, ``kappa`` 1;
      - ``feat_dim`` D of the residual target (128), ``phi`` ``"auto"|"identity"|"orthogonal"|"pca"``;
      - ``fitnets_weight`` (0 = off): FitNets baseline, MSE between a training-only linear regressor of the student's
        pooled feature and ``phi_ViT`` of the ViT teacher's feature (or the CNN teacher's with ``teachers="cnn"``);
      - ``teacher_frames_downsample`` r: the ViT teacher sees frames ``x[:, ::r]`` (official single-teacher code's
        ``frames_downsample_rate``); the ViT must have been built and trained for ``T // r`` frames.
    Teachers are frozen (``requires_grad_(False)``, eval mode). Give ``teacher_out`` (e.g. cached over the training
    set, see :func:`teacher_outputs`) to skip the teacher forward passes.
    """

    def __init__(self, student: nn.Module, cnn_teacher: nn.Module | None, vit_teacher: nn.Module | None, *,
                 tau: float = 4.0, alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0,
                 confidence: Confidence = "maxprob", discrepancy: Discrepancy = "kl", kappa: float = 1.0,
                 teachers: Literal["both", "cnn", "vit"] = "both", weighting: Literal["datw", "fixed"] = "datw",
                 fixed_weight: float = 0.5, feat_dim: int = 128, phi: str = "auto", phi_seed: int = 0,
                 rkd_distance_weight: float = 1.0, rkd_angle_weight: float = 2.0, fitnets_weight: float = 0.0,
                 teacher_frames_downsample: int = 1, label_smoothing: float = 0.0):
        super().__init__()
        if teachers not in ("both", "cnn", "vit"):
            raise ValueError(f"teachers must be 'both', 'cnn' or 'vit', got {teachers!r}")
        if weighting not in ("datw", "fixed"):
            raise ValueError(f"weighting must be 'datw' or 'fixed', got {weighting!r}")
        if tau <= 0 or kappa <= 0 or min(alpha, beta, gamma, fitnets_weight) < 0 or not 0 <= fixed_weight <= 1:
            raise ValueError("need tau > 0, kappa > 0, alpha/beta/gamma/fitnets_weight >= 0, 0 <= fixed_weight <= 1")
        if teacher_frames_downsample < 1:
            raise ValueError(f"teacher_frames_downsample must be >= 1, got {teacher_frames_downsample}")
        need_cnn = teachers in ("both", "cnn")
        need_vit = teachers in ("both", "vit")
        if need_cnn and cnn_teacher is None:
            raise ValueError(f"teachers={teachers!r} needs a CNN teacher")
        if need_vit and vit_teacher is None:
            raise ValueError(f"teachers={teachers!r} needs a ViT teacher")
        if teachers != "both" and beta > 0:
            raise ValueError("the structure-discrepancy term (beta > 0) needs both teachers")
        if gamma > 0 and vit_teacher is None:
            raise ValueError("the RKD term (gamma > 0) distils the ViT teacher's features: give a ViT teacher")
        self.student = student
        # teachers are held outside the module tree: frozen, never in state_dict / parameters / .train()
        self._teachers = {"cnn": cnn_teacher, "vit": vit_teacher}
        for t in self._teachers.values():
            if t is not None:
                t.requires_grad_(False).eval()
        self.tau, self.alpha, self.beta, self.gamma, self.kappa = float(tau), float(alpha), float(beta), \
            float(gamma), float(kappa)
        self.confidence, self.discrepancy = confidence, discrepancy
        self.teachers, self.weighting, self.fixed_weight = teachers, weighting, float(fixed_weight)
        self.rkd_weights = (float(rkd_distance_weight), float(rkd_angle_weight))
        self.fitnets_weight = float(fitnets_weight)
        self.teacher_frames_downsample = int(teacher_frames_downsample)
        self.label_smoothing = float(label_smoothing)
        self.feat_dim = int(feat_dim)
        s_width = int(student.feat_dim)
        self.phi = nn.ModuleDict()
        for name, t in self._teachers.items():
            if t is not None:
                self.phi[name] = FrozenProjection(int(t.feat_dim), self.feat_dim, phi,
                                                  seed=phi_seed + (0 if name == "cnn" else 1))
        self.sdb = StructureDiscrepancyBranch(s_width, self.feat_dim) if self.beta > 0 else None
        self.fitnets_regressor = nn.Linear(s_width, self.feat_dim) if self.fitnets_weight > 0 else None

    # --------------------------------------------------------------------------------------- teachers
    @property
    def cnn_teacher(self) -> nn.Module | None:
        return self._teachers["cnn"]

    @property
    def vit_teacher(self) -> nn.Module | None:
        return self._teachers["vit"]

    def vit_input(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, ::self.teacher_frames_downsample] if self.teacher_frames_downsample > 1 else x

    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor) -> TeacherOutputs:
        """Logits and pooled features of both frozen teachers (eval mode) on clips ``x``."""
        outs: list[torch.Tensor | None] = []
        for name in ("cnn", "vit"):
            t = self._teachers[name]
            if t is None:
                outs += [None, None]
                continue
            t.eval()
            o = t.forward_features(self.vit_input(x) if name == "vit" else x)
            outs += [o.logits.float(), o.pooled.float()]
        return TeacherOutputs(*outs)

    def fit_projections(self, cnn_features: torch.Tensor | None, vit_features: torch.Tensor | None
                        ) -> DualTeacherKD:
        """Fit ``phi="pca"`` on teacher features (e.g. the cached training-set features)."""
        for name, f in (("cnn", cnn_features), ("vit", vit_features)):
            if name in self.phi and f is not None:
                self.phi[name].fit(f)
        return self

    # --------------------------------------------------------------------------------------- targets
    def target_weights(self, t: TeacherOutputs, z_s: torch.Tensor) -> torch.Tensor:
        """``(B, 2)`` teacher weights ``[omega_CNN, omega_ViT]`` for this batch (no gradient)."""
        b = z_s.shape[0]
        if self.teachers == "cnn":
            return z_s.new_tensor([1.0, 0.0]).expand(b, 2)
        if self.teachers == "vit":
            return z_s.new_tensor([0.0, 1.0]).expand(b, 2)
        if self.weighting == "fixed":
            return z_s.new_tensor([self.fixed_weight, 1.0 - self.fixed_weight]).expand(b, 2)
        return datw_weights(t.cnn_logits, t.vit_logits, z_s, self.tau, self.kappa, self.confidence,
                            self.discrepancy)

    @staticmethod
    def combine(t: TeacherOutputs, w: torch.Tensor) -> torch.Tensor:
        """``z_target = omega_CNN * z_CNN + omega_ViT * z_ViT`` (a missing teacher has weight 0)."""
        parts = [w[:, i:i + 1] * z for i, z in enumerate((t.cnn_logits, t.vit_logits)) if z is not None]
        return torch.stack(parts).sum(0)

    def residual_target(self, t: TeacherOutputs) -> torch.Tensor:
        """``f_res = normalize(phi_ViT(f_ViT)) - normalize(phi_CNN(f_CNN))`` (B, D)."""
        return (F.normalize(self.phi["vit"](t.vit_features), dim=-1)
                - F.normalize(self.phi["cnn"](t.cnn_features), dim=-1))

    # --------------------------------------------------------------------------------------- loss
    def forward(self, x: torch.Tensor, y: torch.Tensor, teacher_out: TeacherOutputs | None = None
                ) -> dict[str, torch.Tensor]:
        t = teacher_out if teacher_out is not None else self.teacher_forward(x)
        s = self.student.forward_features(x)
        z_s = s.logits
        zero = z_s.new_zeros(())
        parts: dict[str, torch.Tensor] = {"ce": F.cross_entropy(z_s, y, label_smoothing=self.label_smoothing)}
        has_logits = t.cnn_logits is not None or t.vit_logits is not None
        w = self.target_weights(t, z_s) if has_logits else z_s.new_zeros(z_s.shape[0], 2)
        parts["kd"] = kd_kl(self.combine(t, w), z_s, self.tau) if self.alpha > 0 else zero
        parts["sdd"] = F.mse_loss(self.sdb(s.fmap), self.residual_target(t)) if self.sdb is not None else zero
        parts["rkd"] = rkd_loss(s.pooled, t.vit_features, *self.rkd_weights) if self.gamma > 0 else zero
        if self.fitnets_regressor is not None:
            name = "cnn" if self.teachers == "cnn" else "vit"
            hint = t.cnn_features if name == "cnn" else t.vit_features
            parts["fitnets"] = F.mse_loss(self.fitnets_regressor(s.pooled), self.phi[name](hint))
        else:
            parts["fitnets"] = zero
        total = parts["ce"]
        for key, weight in (("kd", self.alpha), ("sdd", self.beta), ("rkd", self.gamma),
                            ("fitnets", self.fitnets_weight)):
            if weight > 0:
                total = total + weight * parts[key]
        parts["total"] = total
        parts["weights"] = w.detach()
        return parts

    # --------------------------------------------------------------------------------------- inference
    def training_only_parameters(self) -> int:
        """Parameters of the training-only heads (SDB, FitNets regressor) that :meth:`export` drops."""
        return sum(p.numel() for m in (self.sdb, self.fitnets_regressor) if m is not None for p in m.parameters())

    def export(self) -> nn.Module:
        """The inference model: a copy of the plain student in eval mode, without the SDB / regressor / teachers."""
        return copy.deepcopy(self.student).eval()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Student logits (the SDB plays no part at inference)."""
        return self.student(x)


@torch.no_grad()
def teacher_outputs(cnn_teacher: nn.Module | None, vit_teacher: nn.Module | None, x: torch.Tensor, *,
                    batch_size: int = 64, device: str | torch.device = "cpu",
                    teacher_frames_downsample: int = 1) -> TeacherOutputs:
    """Eval-mode logits and pooled features of both teachers over a whole clip tensor ``x`` (on the CPU), to cache
    once and pass batch-wise (``.index(idx)``) as ``teacher_out`` — the teachers are frozen and the clips are not
    augmented, so the cached outputs equal the live ones."""
    outs: list[torch.Tensor | None] = []
    for name, t in (("cnn", cnn_teacher), ("vit", vit_teacher)):
        if t is None:
            outs += [None, None]
            continue
        was = t.training
        t.eval()
        logits, pooled = [], []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(device)
            if name == "vit" and teacher_frames_downsample > 1:
                xb = xb[:, ::teacher_frames_downsample]
            o = t.forward_features(xb)
            logits.append(o.logits.float().cpu())
            pooled.append(o.pooled.float().cpu())
        t.train(was)
        outs += [torch.cat(logits), torch.cat(pooled)]
    return TeacherOutputs(*outs)


#: the baselines of spec 1.5 as :class:`DualTeacherKD` options (row name -> keyword arguments)
VARIANTS: dict[str, dict] = {
    "dual-teacher-kd": {},
    "kd-cnn": {"teachers": "cnn", "beta": 0.0, "gamma": 0.0},
    "kd-vit": {"teachers": "vit", "beta": 0.0, "gamma": 0.0},
    "kd-avg": {"weighting": "fixed", "beta": 0.0, "gamma": 0.0},
    "datw-only": {"beta": 0.0, "gamma": 0.0},
    "fitnets": {"teachers": "vit", "alpha": 0.0, "beta": 0.0, "gamma": 0.0, "fitnets_weight": 10.0},
}


def make_variant(name: str, student: nn.Module, cnn_teacher: nn.Module | None, vit_teacher: nn.Module | None,
                 **overrides) -> DualTeacherKD:
    """The :class:`DualTeacherKD` of a row of :data:`VARIANTS` (``overrides`` replace the shared hyper-parameters,
    e.g. ``tau``; the row's own switches win)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    kwargs = {**overrides, **VARIANTS[name]}
    teachers = kwargs.get("teachers", "both")
    cnn = cnn_teacher if teachers in ("both", "cnn") else None
    vit = vit_teacher if teachers in ("both", "vit") else None
    return DualTeacherKD(student, cnn, vit, **kwargs)


__all__ = ["DualTeacherKD", "FrozenProjection", "LOSS_PARTS", "NonLocal3D", "SqueezeExcite3D",
           "StructureDiscrepancyBranch", "TeacherOutputs", "VARIANTS", "datw_weights", "kd_kl", "make_variant",
           "orthogonal_projection", "rkd_angle", "rkd_distance", "rkd_loss", "teacher_confidence",
           "teacher_discrepancy", "teacher_outputs"]

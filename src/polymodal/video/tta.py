"""Test-time adaptation of clip classifiers: Audio-Assisted TTA and its baselines (spec video.md 2.3-2.4, 2.7).

Every adapter follows the test-time-adaptation pattern (``mariodoebler/test-time-adaptation``): it wraps a model
*in place* and offers ``configure_model()`` (train/eval modes, which parameters get gradients), ``collect_params()``,
``setup_optimizer()``, ``reset()`` (model and optimiser back to the state they had when the adapter was built) and
``forward_and_adapt(x)``; ``adapter(x)`` resets first when ``episodic``. For the recipe all of them also offer
``adapt_and_predict(video, audio) -> (label, info)`` on one clip (online: parameters carry over to the next clip).

- :class:`SourceOnly` - the frozen source model (eval mode, no update).
- :class:`Tent` - DequanWang/tent [official code]: BN layers use the test batch's statistics, only the norm affine
  parameters have gradients, loss = mean softmax entropy, Adam lr 1e-3, one step per batch, optional episodic reset;
  the prediction is the output of the forward pass that computed the loss (before the update).
- :class:`ViTTA` - wlin-at/ViTTA [official code for the loss; see docs for the details we reconstructed]: L1 between
  exponential-moving-average test statistics (mean and variance, momentum 0.1) of the inputs of chosen norm layers
  and their source statistics, plus 0.1 x prediction consistency (L1 between each of 2 temporally augmented views'
  softmax and their mean); SGD lr 5e-5 momentum 0.9; all parameters by default (``adapt="norm_affine"`` = ViTTA's
  ``--update_only_bn_affine``).
- :class:`AudioAssistedTTA` - arXiv 2506.12481 [paper, abstract level] with every detail [reconstruction] (spec 2.4):
  the audio model's class probabilities are mapped to the video label space (``q = normalise(M^T p_audio)``); an
  accepted pseudo-label (max q >= theta_audio, else the video model's own prediction when its max-prob >= theta_video,
  else no adaptation) drives a *flexible cycle* of 1..k_max steps of cross-entropy (+ ViTTA consistency) over
  temporally augmented views, stopping when the loss stopped decreasing by eps or every view agrees with the
  pseudo-label (:func:`flexible_cycle`); the prediction is made after the cycle.

Parameters outside the adapted set never change: they have ``requires_grad=False`` and are not in the optimiser;
BN running buffers are never written (test statistics are used with momentum 0, or the layer runs in eval mode).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.video.label_mapping import LabelMapping

NORM_TYPES: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                                           nn.modules.instancenorm._InstanceNorm)
ADAPT_CHOICES = ("norm_affine", "all")
BN_MODES = ("batch", "source")
FALLBACKS = ("video_confident", "skip")
PSEUDO_LABELS = ("audio", "audio_x_video")
STOP_REASONS = ("agreement", "loss_plateau", "k_max", "fixed", "skipped")


# ------------------------------------------------------------------------------------------------ helpers
def norm_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every normalisation layer (BatchNorm*, LayerNorm, GroupNorm, InstanceNorm*) with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, NORM_TYPES)]


def adaptable_parameters(model: nn.Module, adapt: str) -> list[tuple[str, nn.Parameter]]:
    """``"norm_affine"``: weight and bias of every norm layer (TENT's set, LayerNorm included);
    ``"all"``: every parameter."""
    if adapt not in ADAPT_CHOICES:
        raise ValueError(f"adapt must be one of {ADAPT_CHOICES}, got {adapt!r}")
    if adapt == "all":
        return list(model.named_parameters())
    out = []
    for name, mod in norm_modules(model):
        for pname in ("weight", "bias"):
            p = getattr(mod, pname, None)
            if isinstance(p, nn.Parameter):
                out.append((f"{name}.{pname}" if name else pname, p))
    return out


def set_bn_mode(model: nn.Module, bn_mode: str) -> None:
    """``"batch"``: BatchNorm normalises with the statistics of the current test batch (for one clip: over its
    T x H x W positions), running buffers left untouched (momentum 0); ``"source"``: eval mode, source statistics."""
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if bn_mode == "batch":
                m.train()
                m.momentum = 0.0  # use batch statistics, never overwrite the source running statistics
            else:
                m.eval()


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of softmax(logits) (TENT's loss before the mean)."""
    return -(logits.softmax(dim=1) * logits.log_softmax(dim=1)).sum(dim=1)


def prediction_consistency(logits: torch.Tensor) -> torch.Tensor:
    """ViTTA's consistency over views (rows of ``logits``): mean L1 between each view's softmax and the views' mean."""
    p = logits.softmax(dim=1)
    return (p - p.mean(dim=0, keepdim=True)).abs().mean()


def temporal_views(clip: torch.Tensor, n_views: int, generator: torch.Generator | None = None,
                   jitter: int = 1) -> torch.Tensor:
    """``n_views`` temporally augmented views of one clip ``(T, C, H, W)`` or ``(1, T, C, H, W)``: frame ``t`` of
    a view is frame ``clamp(t + U{-jitter..jitter})`` of the clip, indices sorted so the motion direction is kept
    (ViTTA samples its views with random temporal offsets) [reconstruction]. ``n_views=1``: the clip itself."""
    x = clip[0] if clip.dim() == 5 else clip
    if x.dim() != 4:
        raise ValueError(f"expected one clip (T, C, H, W) or (1, T, C, H, W), got {tuple(clip.shape)}")
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    if n_views == 1:
        return x[None]
    t = x.shape[0]
    base = torch.arange(t)
    views = []
    for _ in range(n_views):
        shift = torch.randint(-jitter, jitter + 1, (t,), generator=generator)
        idx = (base + shift).clamp(0, t - 1).sort().values
        views.append(x[idx.to(x.device)])
    return torch.stack(views)


def _as_batch(video: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = video if video.dim() == 5 else video[None]
    if x.dim() != 5:
        raise ValueError(f"expected a clip (T, C, H, W) or a batch (B, T, C, H, W), got {tuple(video.shape)}")
    return x.to(device)


# ------------------------------------------------------------------------------------------------ cycle
@dataclass
class CycleResult:
    steps: int
    stop: str
    losses: list[float] = field(default_factory=list)


def flexible_cycle(step: Callable[[int], tuple[float, bool]], *, k_max: int = 5, eps: float = 1e-3,
                   fixed_steps: int | None = None) -> CycleResult:
    """The flexible adaptation cycle (spec 2.4): for k = 1..k_max call ``step(k)`` (one update; it returns the loss
    L_k of that step's forward pass and whether every view's argmax agreed with the pseudo-label), then stop when
    every view agreed (``"agreement"``) or L_{k-1} - L_k < eps (``"loss_plateau"``: the loss stopped decreasing);
    at least one step is always taken, at most ``k_max`` (``"k_max"``). ``fixed_steps``: exactly that many steps
    (``"fixed"``; the ablation rows)."""
    if k_max < 1:
        raise ValueError(f"k_max must be >= 1, got {k_max}")
    if fixed_steps is not None and fixed_steps < 1:
        raise ValueError(f"fixed_steps must be >= 1, got {fixed_steps}")
    losses: list[float] = []
    limit = fixed_steps if fixed_steps is not None else k_max
    for k in range(1, limit + 1):
        loss, agree = step(k)
        losses.append(float(loss))
        if fixed_steps is not None:
            continue
        if agree:
            return CycleResult(k, "agreement", losses)
        if k >= 2 and losses[-2] - losses[-1] < eps:
            return CycleResult(k, "loss_plateau", losses)
    return CycleResult(limit, "fixed" if fixed_steps is not None else "k_max", losses)


# ------------------------------------------------------------------------------------------------ base
class TTAMethod:
    """Base adapter (the ``TTAMethod`` interface of mariodoebler/test-time-adaptation).

    Wraps ``model`` in place. ``adapt``: ``"norm_affine"`` | ``"all"``; ``optimizer``: ``"sgd"`` (momentum) |
    ``"adam"``; ``bn_mode``: ``"batch"`` | ``"source"`` (see :func:`set_bn_mode`); ``episodic``: reset before every
    call.
    """

    name = "base"

    def __init__(self, model: nn.Module, *, adapt: str = "norm_affine", optimizer: str = "sgd", lr: float = 5e-5,
                 momentum: float = 0.9, weight_decay: float = 0.0, bn_mode: str = "batch", episodic: bool = False):
        if adapt not in ADAPT_CHOICES:
            raise ValueError(f"adapt must be one of {ADAPT_CHOICES}, got {adapt!r}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if bn_mode not in BN_MODES:
            raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.model = model
        self.adapt, self.optimizer_name, self.lr = adapt, optimizer, lr
        self.momentum, self.weight_decay = momentum, weight_decay
        self.bn_mode, self.episodic = bn_mode, episodic
        self.configure_model()
        self.param_names, self.params = self.collect_params()
        self.optimizer = self.setup_optimizer()
        self._initial_model = copy.deepcopy(model.state_dict())
        self._initial_optimizer = copy.deepcopy(self.optimizer.state_dict()) if self.optimizer else None

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def configure_model(self) -> None:
        """Eval mode (dropout off), gradients only for the adapted set, BN layers per ``bn_mode``."""
        self.model.eval()
        self.model.requires_grad_(False)
        for _, p in adaptable_parameters(self.model, self.adapt):
            p.requires_grad_(True)
        set_bn_mode(self.model, self.bn_mode)

    def collect_params(self) -> tuple[list[str], list[nn.Parameter]]:
        named = adaptable_parameters(self.model, self.adapt)
        return [n for n, _ in named], [p for _, p in named]

    def setup_optimizer(self) -> torch.optim.Optimizer | None:
        if not self.params:
            return None
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.params, lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay)
        return torch.optim.SGD(self.params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)

    def reset(self) -> None:
        """Model and optimiser back to their state when the adapter was built (bit-identical)."""
        self.model.load_state_dict(self._initial_model)
        if self.optimizer is not None and self._initial_optimizer is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self._initial_optimizer))
        self.configure_model()

    def forward_and_adapt(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.episodic:
            self.reset()
        return self.forward_and_adapt(_as_batch(x, self.device))

    def adapt_and_predict(self, video: torch.Tensor, audio: torch.Tensor | None = None) -> tuple[int, dict[str, Any]]:
        """Adapt on one clip and predict its label (``audio`` is ignored by the video-only adapters)."""
        logits = self(video)
        return int(logits.mean(dim=0).argmax()), {"steps": self.steps_per_call}

    steps_per_call = 1

    def _step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class SourceOnly(TTAMethod):
    """The source model without adaptation (eval mode, source BN statistics)."""

    name = "source"
    steps_per_call = 0

    def __init__(self, model: nn.Module, **_: Any):
        super().__init__(model, bn_mode="source")

    def configure_model(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)

    def collect_params(self) -> tuple[list[str], list[nn.Parameter]]:
        return [], []

    @torch.no_grad()
    def forward_and_adapt(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Tent(TTAMethod):
    """TENT (Wang et al., ICLR 2021; DequanWang/tent): entropy minimisation on norm affine parameters with test-batch
    BN statistics, Adam lr 1e-3, ``steps`` (1) updates per batch; returns the logits of the last forward pass
    (computed before its update, as the official ``forward_and_adapt``)."""

    name = "tent"

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, steps: int = 1, episodic: bool = False,
                 optimizer: str = "adam", adapt: str = "norm_affine", bn_mode: str = "batch", momentum: float = 0.9):
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps_per_call = steps
        super().__init__(model, adapt=adapt, optimizer=optimizer, lr=lr, momentum=momentum, bn_mode=bn_mode,
                         episodic=episodic)

    @torch.enable_grad()
    def forward_and_adapt(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps_per_call):
            logits = self.model(x)
            self._step(softmax_entropy(logits).mean())
        return logits.detach()


class _StatsHook:
    """Forward-pre hook recording the per-channel mean and variance of a norm layer's input (BN: channels on dim 1;
    LayerNorm/GroupNorm-free: last dim)."""

    def __init__(self, module: nn.Module):
        self.channel_dim = 1 if isinstance(module, nn.modules.batchnorm._BatchNorm) else -1
        self.mean: torch.Tensor | None = None
        self.var: torch.Tensor | None = None
        self.handle = module.register_forward_pre_hook(self.hook)

    def hook(self, module: nn.Module, inputs: tuple) -> None:
        x = inputs[0]
        c = self.channel_dim % x.dim()
        dims = [d for d in range(x.dim()) if d != c]
        self.mean = x.mean(dim=dims)
        self.var = x.var(dim=dims, unbiased=False)

    def remove(self) -> None:
        self.handle.remove()


def default_alignment_layers(model: nn.Module) -> list[str]:
    """The second half of the model's norm layers in module order (ViTTA aligns ``layer3`` and ``layer4`` of a
    4-stage ResNet: the deeper half) [reconstruction]."""
    names = [n for n, _ in norm_modules(model)]
    return names[len(names) // 2:]


@torch.no_grad()
def compute_source_statistics(model: nn.Module, clips: torch.Tensor, layers: Sequence[str] | None = None, *,
                              batch_size: int = 32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and variance of the inputs of ``layers`` (norm layer names) over source ``clips`` (eval mode), pooled
    over every clip and position (ViTTA's pre-computed source statistics)."""
    layers = list(layers) if layers is not None else default_alignment_layers(model)
    mods = dict(model.named_modules())
    missing = [n for n in layers if n not in mods]
    if missing:
        raise ValueError(f"unknown layers {missing}; norm layers: {[n for n, _ in norm_modules(model)]}")
    hooks = {n: _StatsHook(mods[n]) for n in layers}
    sums: dict[str, list] = {n: [0.0, 0.0, 0] for n in layers}
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, clips.shape[0], batch_size):
            xb = clips[i:i + batch_size].to(device)
            model(xb)
            for n, h in hooks.items():
                # count positions per channel so the pooled moments are exact
                k = xb.shape[0]
                sums[n][0] = sums[n][0] + h.mean * k
                sums[n][1] = sums[n][1] + (h.var + h.mean ** 2) * k
                sums[n][2] += k
    finally:
        for h in hooks.values():
            h.remove()
        model.train(was)
    out = {}
    for n, (s1, s2, k) in sums.items():
        mean = s1 / k
        out[n] = (mean.detach().clone(), (s2 / k - mean ** 2).clamp_min(0).detach().clone())
    return out


def bn_source_statistics(model: nn.Module, layers: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Source statistics read from BN running buffers (what the layers learned on the source data)."""
    mods = dict(model.named_modules())
    out = {}
    for n in layers:
        m = mods.get(n)
        if not isinstance(m, nn.modules.batchnorm._BatchNorm) or m.running_mean is None:
            raise ValueError(f"layer {n!r} has no BN running statistics; pass source_stats= "
                             "(compute_source_statistics on source clips)")
        out[n] = (m.running_mean.detach().clone(), m.running_var.detach().clone())
    return out


class ViTTA(TTAMethod):
    """ViTTA (Lin et al., CVPR 2023; wlin-at/ViTTA): align EMA test statistics of chosen norm layers' inputs to the
    source statistics (L1 on mean and variance) + ``lambda_consistency`` x prediction consistency over ``n_views``
    temporally augmented views; one update per clip; SGD lr 5e-5 momentum 0.9; ``adapt="all"`` by default.

    ``layers``: norm layer names to align (default: the deeper half); ``source_stats``: ``{layer: (mean, var)}``
    (default: the BN running buffers); ``bn_mode``: how the layers normalise during adaptation (default
    ``"source"``: eval mode) [reconstruction]. The prediction is the mean softmax of the views from the adaptation
    forward pass."""

    name = "vitta"

    def __init__(self, model: nn.Module, *, layers: Sequence[str] | None = None,
                 source_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
                 ema_momentum: float = 0.1, lambda_consistency: float = 0.1, n_views: int = 2, lr: float = 5e-5,
                 momentum: float = 0.9, optimizer: str = "sgd", adapt: str = "all", bn_mode: str = "source",
                 episodic: bool = False, view_seed: int = 0):
        if not 0 < ema_momentum <= 1:
            raise ValueError(f"ema_momentum must be in (0, 1], got {ema_momentum}")
        self.layers = list(layers) if layers is not None else default_alignment_layers(model)
        if not self.layers:
            raise ValueError("ViTTA needs at least one norm layer to align; the model has none")
        self.source_stats = {n: (m.clone(), v.clone()) for n, (m, v) in
                             (source_stats or bn_source_statistics(model, self.layers)).items()}
        self.ema_momentum, self.lambda_consistency, self.n_views = ema_momentum, lambda_consistency, n_views
        self.view_seed = view_seed
        super().__init__(model, adapt=adapt, optimizer=optimizer, lr=lr, momentum=momentum, bn_mode=bn_mode,
                         episodic=episodic)
        mods = dict(model.named_modules())
        self._hooks = {n: _StatsHook(mods[n]) for n in self.layers}
        self._reset_state()

    def _reset_state(self) -> None:
        self.ema: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.generator = torch.Generator().manual_seed(self.view_seed)

    def reset(self) -> None:
        super().reset()
        self._reset_state()

    def remove_hooks(self) -> None:
        for h in self._hooks.values():
            h.remove()

    def alignment_loss(self) -> torch.Tensor:
        """L1 between the (updated) EMA test statistics and the source statistics, summed over the layers."""
        m = self.ema_momentum
        total = torch.zeros((), device=self.device)
        new_ema = {}
        for n, h in self._hooks.items():
            mean, var = h.mean, h.var
            if n in self.ema:
                mean = m * mean + (1 - m) * self.ema[n][0]
                var = m * var + (1 - m) * self.ema[n][1]
            src_m, src_v = (t.to(mean.device) for t in self.source_stats[n])
            total = total + (mean - src_m).abs().mean() + (var - src_v).abs().mean()
            new_ema[n] = (mean.detach(), var.detach())
        self.ema = new_ema
        return total

    @torch.enable_grad()
    def forward_and_adapt(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for clip in x:
            views = temporal_views(clip, self.n_views, self.generator)
            logits = self.model(views)
            loss = self.alignment_loss()
            if self.lambda_consistency and self.n_views > 1:
                loss = loss + self.lambda_consistency * prediction_consistency(logits)
            self._step(loss)
            outs.append(logits.detach().softmax(dim=1).mean(dim=0).clamp_min(1e-12).log())
        return torch.stack(outs)


# ------------------------------------------------------------------------------------------------ audio-assisted
class AudioAssistedTTA(TTAMethod):
    """Audio-Assisted TTA (Zeng et al., arXiv 2506.12481; spec 2.4 [reconstruction]).

    ``video_model``: the clip classifier adapted in place; ``audio_model``: a frozen classifier over
    ``mapping.audio_labels`` taking waveforms; ``mapping``: :class:`LabelMapping` (A x V).
    Pseudo-label: ``q = normalise(M^T p_audio)`` (``pseudo_label="audio_x_video"``: ``normalise(q * p_video)``,
    an option); accepted when ``max q >= theta_audio``; else ``fallback="video_confident"`` takes the video model's
    own argmax when its max-prob >= ``theta_video``, ``"skip"`` adapts nothing. Loss per step over ``n_views``
    temporally augmented views: CE(z, pseudo-label) (``soft_labels``: soft CE with q) + ``entropy_weight`` x entropy
    + ``consistency_weight`` x ViTTA consistency. Cycle: :func:`flexible_cycle` (``fixed_steps`` for the ablations).
    Online (no reset between clips) unless ``episodic``. Defaults: Adam lr 1e-2 and ``bn_mode="source"`` (BN in
    eval mode, only the affine parameters move): the spec's single-clip batch statistics (``bn_mode="batch"``)
    collapse our from-scratch models to one class, and lr 1e-3 barely adapts (measured; docs/methods/audio-tta.md).
    """

    name = "audio-tta"

    def __init__(self, video_model: nn.Module, audio_model: nn.Module, mapping: LabelMapping,
                 theta_audio: float = 0.5, k_max: int = 5, eps: float = 1e-3, adapt: str = "norm_affine",
                 fallback: str = "video_confident", episodic: bool = False, *, theta_video: float = 0.9,
                 optimizer: str = "adam", lr: float = 1e-2, momentum: float = 0.9, n_views: int = 2,
                 consistency_weight: float = 0.1, entropy_weight: float = 0.0, soft_labels: bool = False,
                 fixed_steps: int | None = None, bn_mode: str = "source", pseudo_label: str = "audio",
                 view_seed: int = 0):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if pseudo_label not in PSEUDO_LABELS:
            raise ValueError(f"pseudo_label must be one of {PSEUDO_LABELS}, got {pseudo_label!r}")
        if not 0 <= theta_audio <= 1 or not 0 <= theta_video <= 1:
            raise ValueError(f"theta_audio and theta_video must lie in [0, 1], got {theta_audio}, {theta_video}")
        if k_max < 1 or (fixed_steps is not None and fixed_steps < 1):
            raise ValueError(f"k_max and fixed_steps must be >= 1, got {k_max}, {fixed_steps}")
        if n_views < 1:
            raise ValueError(f"n_views must be >= 1, got {n_views}")
        self.audio_model = audio_model.eval().requires_grad_(False)
        self.mapping = mapping
        self.theta_audio, self.theta_video, self.k_max, self.eps = theta_audio, theta_video, k_max, eps
        self.fallback, self.fixed_steps, self.pseudo_label = fallback, fixed_steps, pseudo_label
        self.n_views, self.consistency_weight, self.entropy_weight = n_views, consistency_weight, entropy_weight
        self.soft_labels, self.view_seed = soft_labels, view_seed
        self.generator = torch.Generator().manual_seed(view_seed)
        super().__init__(video_model, adapt=adapt, optimizer=optimizer, lr=lr, momentum=momentum, bn_mode=bn_mode,
                         episodic=episodic)

    def reset(self) -> None:
        super().reset()
        self.generator = torch.Generator().manual_seed(self.view_seed)

    @torch.no_grad()
    def audio_distribution(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(p_audio, q)`` for one waveform ``(n,)`` or ``(1, n)``."""
        wave = audio if audio.dim() == 2 else audio[None]
        dev = next(self.audio_model.parameters()).device
        p_audio = self.audio_model(wave.to(dev)).float().softmax(dim=1)[0].cpu()
        return p_audio, self.mapping.project(p_audio)

    @torch.no_grad()
    def _video_probs(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float().softmax(dim=1)[0].cpu()

    def pseudo_label_for(self, x: torch.Tensor, audio: torch.Tensor | None) -> dict[str, Any]:
        """The pseudo-label decision for one clip: label (or None), its source and the audio confidence."""
        info: dict[str, Any] = {"pseudo_label": None, "accepted": False, "source": None}
        q = None
        p_video = None
        if audio is not None:
            p_audio, q = self.audio_distribution(audio)
            info["audio_label"] = int(p_audio.argmax())
            if self.pseudo_label == "audio_x_video":
                p_video = self._video_probs(x)
                joint = q * p_video
                q = joint / joint.sum() if joint.sum() > 1e-12 else q
            info["q_max"] = float(q.max())
            if float(q.max()) >= self.theta_audio:
                info.update(pseudo_label=int(q.argmax()), accepted=True, source="audio")
                info["q"] = q
                return info
        if self.fallback == "video_confident":
            p_video = self._video_probs(x) if p_video is None else p_video
            if float(p_video.max()) >= self.theta_video:
                info.update(pseudo_label=int(p_video.argmax()), source="video")
        return info

    def _loss(self, logits: torch.Tensor, label: int, q: torch.Tensor | None) -> torch.Tensor:
        if self.soft_labels and q is not None:
            loss = -(q.to(logits.device)[None] * logits.log_softmax(dim=1)).sum(dim=1).mean()
        else:
            loss = F.cross_entropy(logits, torch.full((logits.shape[0],), label, device=logits.device))
        if self.entropy_weight:
            loss = loss + self.entropy_weight * softmax_entropy(logits).mean()
        if self.consistency_weight and logits.shape[0] > 1:
            loss = loss + self.consistency_weight * prediction_consistency(logits)
        return loss

    def adapt_and_predict(self, video: torch.Tensor, audio: torch.Tensor | None = None) -> tuple[int, dict[str, Any]]:
        """Pseudo-label, flexible cycle, then predict; ``info``: steps, pseudo_label, accepted (audio label used),
        source ("audio" | "video" | None), stop (``STOP_REASONS``), losses, q_max, audio_label."""
        if self.episodic:
            self.reset()
        x = _as_batch(video, self.device)
        if x.shape[0] != 1:
            raise ValueError(f"adapt_and_predict takes one clip, got a batch of {x.shape[0]}")
        info = self.pseudo_label_for(x, audio)
        label = info["pseudo_label"]
        q = info.pop("q", None)
        if label is None:
            info.update(steps=0, stop="skipped", losses=[])
        else:
            def step(k: int) -> tuple[float, bool]:
                with torch.enable_grad():
                    views = temporal_views(x, self.n_views, self.generator)
                    logits = self.model(views)
                    loss = self._loss(logits, label, q if info["source"] == "audio" else None)
                    self._step(loss)
                return float(loss.detach()), bool((logits.detach().argmax(dim=1) == label).all())

            res = flexible_cycle(step, k_max=self.k_max, eps=self.eps, fixed_steps=self.fixed_steps)
            info.update(steps=res.steps, stop=res.stop, losses=res.losses)
        with torch.no_grad():
            pred = int(self.model(x).argmax(dim=1)[0])
        return pred, info

    def forward_and_adapt(self, x: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        """Adapt on each clip of ``x`` in turn (with its ``audio`` row) and return one-hot logits of the
        predictions (the generic interface; use :meth:`adapt_and_predict` for the info)."""
        preds = []
        for i in range(x.shape[0]):
            label, _ = self.adapt_and_predict(x[i], None if audio is None else audio[i])
            preds.append(label)
        n = self.mapping.shape[1]
        return F.one_hot(torch.tensor(preds), n).float()

    def __call__(self, x: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_and_adapt(_as_batch(x, self.device), audio)


def audio_pl_fixed(video_model: nn.Module, audio_model: nn.Module, mapping: LabelMapping, steps: int,
                   **kwargs: Any) -> AudioAssistedTTA:
    """Audio pseudo-labels with a fixed number of steps per clip (the ``audio_pl_fixed1`` / ``audio_pl_fixedK``
    ablations of the flexible cycle)."""
    kwargs.setdefault("k_max", steps)
    return AudioAssistedTTA(video_model, audio_model, mapping, fixed_steps=steps, **kwargs)


def audio_pl_fixed1(video_model: nn.Module, audio_model: nn.Module, mapping: LabelMapping,
                    **kwargs: Any) -> AudioAssistedTTA:
    return audio_pl_fixed(video_model, audio_model, mapping, 1, **kwargs)


def audio_pl_fixedK(video_model: nn.Module, audio_model: nn.Module, mapping: LabelMapping, k: int = 5,  # noqa: N802
                    **kwargs: Any) -> AudioAssistedTTA:
    return audio_pl_fixed(video_model, audio_model, mapping, k, **kwargs)

"""CO-PFL: contribution-oriented personalised federated learning (spec ``federated.md`` section 4).

"CO-PFL: Contribution-Oriented Personalized Federated Learning for Heterogeneous Networks" (arXiv 2510.20219)
has **no public code**; its three components are known only from the abstract and summaries (spec 4.2). Every
detail below is the spec's reconstruction (4.3), each choice a flag:

- **COWA** (contribution-oriented weighted aggregation): client n's score
  ``Gamma_n = a * Gamma_grad_n + (1 - a) * Gamma_data_n`` where ``Gamma_grad_n = arccos(cos(Delta_n, mean of the
  others' updates)) / pi`` (:func:`gradient_scores`) and ``Gamma_data_n`` = mean over the local training data of
  KL(p_global || p_local) (:func:`prediction_deviation`), min-max normalised over the round's clients
  (:func:`minmax_normalise`); weights ``softmax(Gamma / tau)`` or ``Gamma / sum Gamma`` (:func:`cowa_weights`);
  ``weights="size"`` replaces COWA by data-size weights (ablation).
- **PWPM** (parameter-wise personalisation mask): each client keeps the ``floor(p * D)`` coordinates where its
  model differs most from the global one (``mask_rule="magnitude"``; or sign disagreement first,
  ``"sign_disagreement"``) personal (:func:`personal_mask`); downloads overwrite only the shared coordinates;
  the server averages each coordinate over the clients sharing it (:func:`masked_aggregate`).
- **MAMO** (mask-aware momentum): one persistent momentum buffer per client, ``beta_shared`` on shared and
  ``beta_personal`` on personal coordinates; at each download the shared part is reset to zero
  (``mamo_shared="reset"``) or set to the server's momentum (``"server"``, the COWA average of the clients'
  shared momentum) (:func:`mamo_reset`, :func:`mamo_betas`).

``COPFL`` is the server strategy, ``COPFLClient`` the client; the hyper-parameters travel in the fit config, so
the client needs only its data and model (as in a Flower ClientApp).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms.personal import (
    PersonalClient,
    _float_entries,
    get_state_vector,
    set_state_vector,
)
from polymodal.federated.core import FitResult, score_test_split

__all__ = ["COPFL", "COPFLClient", "gradient_scores", "cowa_weights", "minmax_normalise", "prediction_deviation",
           "contribution_scores", "personal_mask", "masked_aggregate", "mamo_reset", "mamo_betas",
           "WEIGHT_RULES", "MASK_RULES", "MAMO_SHARED", "UPLOAD_MASKS"]

WEIGHT_RULES = ("softmax", "proportional", "size")
MASK_RULES = ("magnitude", "sign_disagreement")
MAMO_SHARED = ("reset", "server")
UPLOAD_MASKS = ("new", "download")
#: the extra upload naming the client's personal coordinates (int32 indices into the state vector)
PERSONAL_IDX = "personal_idx"
#: the extra upload with the client's momentum on its shared coordinates (``mamo_shared="server"``)
MOMENTUM = "momentum"


def _choice(value: str, allowed: Sequence[str], field: str) -> str:
    if value not in allowed:
        raise ConfigError(f"field '{field}': {value!r} is not one of {', '.join(allowed)}")
    return value


# ---------------------------------------------------------------------------------------------- pure math
def gradient_scores(deltas: torch.Tensor) -> torch.Tensor:
    """Gamma_grad (spec 4.3): for each row n of ``deltas`` (n clients x D), the angle between Delta_n and the mean
    of the *other* rows, divided by pi: 0 = parallel to the others, 1 = opposite, 0.5 = orthogonal.

    A zero update (or a zero mean of the others) has no direction: cosine 0, score 0.5. With one client there
    are no others: 0.5 [reconstruction]."""
    if deltas.ndim != 2 or deltas.shape[0] == 0:
        raise ConfigError(f"gradient_scores: expected an (n_clients, D) matrix, got shape {tuple(deltas.shape)}")
    d = deltas.double()
    n = d.shape[0]
    if n == 1:
        return torch.full((1,), 0.5, dtype=torch.float64)
    others = (d.sum(0, keepdim=True) - d) / (n - 1)
    norms = d.norm(dim=1) * others.norm(dim=1)
    cos = torch.where(norms > 0, (d * others).sum(1) / norms.clamp_min(1e-300), torch.zeros_like(norms))
    return torch.arccos(cos.clamp(-1.0, 1.0)) / math.pi


def minmax_normalise(values: torch.Tensor) -> torch.Tensor:
    """``(v - min) / (max - min)`` over the round's clients; all equal (or one client): 0.5 each."""
    v = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    if v.numel() == 0:
        return v
    lo, hi = v.min(), v.max()
    if not bool(hi > lo):
        return torch.full_like(v, 0.5)
    return (v - lo) / (hi - lo)


def prediction_deviation(global_logits: torch.Tensor, local_logits: torch.Tensor) -> float:
    """Gamma_data before normalisation (spec 4.3): mean over samples of KL(p_global || p_local), from logits."""
    if global_logits.shape != local_logits.shape or global_logits.ndim != 2:
        raise ConfigError(f"prediction_deviation: logits must be two equal (N, C) matrices, got "
                          f"{tuple(global_logits.shape)} and {tuple(local_logits.shape)}")
    lg = torch.log_softmax(global_logits.double(), 1)
    ll = torch.log_softmax(local_logits.double(), 1)
    return float((lg.exp() * (lg - ll)).sum(1).mean())


def contribution_scores(deltas: torch.Tensor, data_raw: torch.Tensor, alpha_mix: float = 0.5) -> torch.Tensor:
    """Gamma_n = a * Gamma_grad_n + (1 - a) * minmax(Gamma_data_n) (spec 4.3; ``a`` = ``alpha_mix``)."""
    if not 0.0 <= alpha_mix <= 1.0:
        raise ConfigError(f"field 'alpha_mix': must be in [0, 1], got {alpha_mix}")
    data = minmax_normalise(data_raw)
    if data.numel() != deltas.shape[0]:
        raise ConfigError(f"contribution_scores: {data.numel()} data scores for {deltas.shape[0]} updates")
    return alpha_mix * gradient_scores(deltas) + (1.0 - alpha_mix) * data


def cowa_weights(gamma: torch.Tensor, tau: float = 0.5, weights: str = "softmax",
                 sizes: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
    """Aggregation weights from the contribution scores (spec 4.3), summing to 1.

    ``"softmax"``: softmax(Gamma / tau); ``"proportional"``: Gamma / sum Gamma (uniform when all are 0);
    ``"size"``: the data-size weights n_k / sum n (the ablation that switches COWA off; ``sizes`` required)."""
    _choice(weights, WEIGHT_RULES, "weights")
    g = torch.as_tensor(gamma, dtype=torch.float64).reshape(-1)
    if g.numel() == 0:
        raise ConfigError("cowa_weights: no scores")
    if weights == "size":
        if sizes is None:
            raise ConfigError("cowa_weights: weights='size' needs the clients' sample counts (sizes)")
        s = torch.as_tensor(sizes, dtype=torch.float64).reshape(-1)
        if s.numel() != g.numel() or bool((s < 0).any()) or not bool(s.sum() > 0):
            raise ConfigError(f"cowa_weights: sizes must be {g.numel()} non-negative counts with a positive sum")
        return s / s.sum()
    if not bool(torch.isfinite(g).all()):
        raise ConfigError("cowa_weights: scores must be finite")
    if weights == "softmax":
        if not tau > 0:
            raise ConfigError(f"field 'tau': must be > 0, got {tau}")
        return torch.softmax(g / float(tau), 0)
    if bool((g < 0).any()):
        raise ConfigError("cowa_weights: weights='proportional' needs non-negative scores")
    total = g.sum()
    return g / total if bool(total > 0) else torch.full_like(g, 1.0 / g.numel())


def personal_mask(local: torch.Tensor, global_: torch.Tensor, frac: float, rule: str = "magnitude") -> torch.Tensor:
    """PWPM (spec 4.3): a bool mask over the D coordinates, True (personal) on exactly ``floor(frac * D)``.

    ``"magnitude"``: the largest |theta_local - theta_global|. ``"sign_disagreement"``: coordinates where the two
    models' parameters have opposite signs come first, ranked by |difference|, then the rest by |difference|
    [reconstruction]. Ties go to the lower index (stable sort), so the mask is deterministic."""
    _choice(rule, MASK_RULES, "mask_rule")
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(f"field 'personal_frac': must be in [0, 1], got {frac}")
    if local.shape != global_.shape or local.ndim != 1:
        raise ConfigError(f"personal_mask: two equal 1-D vectors needed, got {tuple(local.shape)} and "
                          f"{tuple(global_.shape)}")
    d = local.numel()
    k = int(math.floor(frac * d))
    mask = torch.zeros(d, dtype=torch.bool)
    if k == 0:
        return mask
    diff = (local.double() - global_.double()).abs()
    score = diff
    if rule == "sign_disagreement":
        disagree = torch.sign(local) * torch.sign(global_) < 0
        score = diff + disagree.double() * (float(diff.max()) + 1.0)
    order = torch.argsort(score, descending=True, stable=True)
    mask[order[:k]] = True
    return mask


def masked_aggregate(params: torch.Tensor, deltas: torch.Tensor, personal: torch.Tensor,
                     weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate renormalised aggregation of the shared part (spec 4.3):

    ``theta_g[j] += sum_n w_n (1 - M_n[j]) Delta_n[j] / sum_n w_n (1 - M_n[j])``, skipped where the denominator is
    0 (no client shares coordinate j). Returns ``(new params, bool vector of the coordinates that changed)``."""
    if deltas.ndim != 2 or personal.shape != deltas.shape or deltas.shape[1] != params.numel():
        raise ConfigError(f"masked_aggregate: deltas {tuple(deltas.shape)} and masks {tuple(personal.shape)} must "
                          f"both be (n_clients, {params.numel()})")
    w = torch.as_tensor(weights, dtype=torch.float64).reshape(-1, 1) * (~personal.bool()).double()
    den = w.sum(0)
    num = (w * deltas.double()).sum(0)
    covered = den > 0
    step = torch.where(covered, num / den.clamp_min(1e-300), torch.zeros_like(num))
    return (params.double() + step).to(params.dtype), covered


def mamo_reset(momentum: torch.Tensor, personal: torch.Tensor, mode: str = "reset",
               server_momentum: torch.Tensor | None = None) -> torch.Tensor:
    """MAMO at download (spec 4.3): the shared coordinates of the client's momentum buffer are set to 0
    (``"reset"``) or to the server's momentum (``"server"``); the personal coordinates keep theirs."""
    _choice(mode, MAMO_SHARED, "mamo_shared")
    shared = ~personal.bool()
    if mode == "reset":
        return torch.where(shared, torch.zeros_like(momentum), momentum)
    if server_momentum is None or server_momentum.shape != momentum.shape:
        raise ConfigError("mamo_shared='server' needs the server momentum, a vector like the client's")
    return torch.where(shared, server_momentum.to(momentum.dtype), momentum)


def mamo_betas(personal: torch.Tensor, beta_shared: float, beta_personal: float) -> torch.Tensor:
    """Per-coordinate momentum factor: ``beta_personal`` where personal, ``beta_shared`` elsewhere."""
    for name, b in (("beta_shared", beta_shared), ("beta_personal", beta_personal)):
        if not 0.0 <= b < 1.0:
            raise ConfigError(f"field '{name}': must be in [0, 1), got {b}")
    return torch.where(personal.bool(), torch.tensor(float(beta_personal)), torch.tensor(float(beta_shared)))


# ---------------------------------------------------------------------------------------------- client
class COPFLClient(PersonalClient):
    """A CO-PFL client: personal model theta_n, personal mask M_n and momentum buffer m_n (its ``state_dict``).

    ``fit(download, config, rng)``: ``download`` is the global state vector theta_g (followed by the server
    momentum when ``mamo_shared="server"``). The client writes theta_g into its shared coordinates (PWPM
    download rule), resets / sets the shared momentum (MAMO), trains ``local_epochs`` of SGD with per-coordinate
    momentum, computes Gamma_data on its training data and its new mask, and uploads ``(1 - M) * Delta`` with
    the personal indices (``arrays["personal_idx"]``) and ``metrics["gamma_data"]``. ``evaluate`` scores
    ``M * theta_n + (1 - M) * theta_g`` on the client's own test split without changing its state."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, init_seed: int = 0,
                 device: str = "cpu", eval_batch: int = 2048):
        super().__init__(cid, model_fn, x, y, x_test=x_test, y_test=y_test, share="all", init_seed=init_seed,
                         device=device)
        self._model_fn = model_fn
        self._scratch: nn.Module | None = None
        self.eval_batch = int(eval_batch)
        self.dim = int(self.mask.numel())
        self.personal = torch.zeros(self.dim, dtype=torch.bool)
        self.momentum = torch.zeros(self.dim, dtype=torch.float32)
        # each parameter's slice of the state vector (BN running statistics are state but get no momentum)
        offsets, i = {}, 0
        for k, v in _float_entries(self.model):
            offsets[k] = (i, i + v.numel())
            i += v.numel()
        self._param_slices = {n: offsets[n] for n, _ in self.model.named_parameters()}

    # -- personal state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(), "copfl.personal": self.personal.to(torch.uint8).clone(),
                "copfl.momentum": self.momentum.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        if "copfl.personal" in state:
            self.personal = torch.as_tensor(state["copfl.personal"]).reshape(-1).bool().clone()
            self.momentum = torch.as_tensor(state["copfl.momentum"]).reshape(-1).float().clone()

    # -- helpers ----------------------------------------------------------------------------------------------
    @property
    def scratch(self) -> nn.Module:
        if self._scratch is None:
            self._scratch = self._model_fn().to(self.device)
        return self._scratch

    def _logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return torch.cat([model(x[i:i + self.eval_batch].to(self.device)).cpu()
                              for i in range(0, len(x), self.eval_batch)])

    def _train_mamo(self, config: dict[str, Any], rng: np.random.Generator, betas: torch.Tensor) -> tuple[float, int]:
        """Local SGD with one momentum factor per coordinate (``buf = beta * buf + g; theta -= lr * buf``, the
        torch.optim.SGD rule without dampening), starting from the client's momentum buffer."""
        model = self.model
        model.train()
        lr, wd = float(config.get("lr", 0.01)), float(config.get("weight_decay", 0.0))
        bs = int(config.get("batch_size", 32))
        params = list(model.named_parameters())
        bufs = {n: self.momentum[a:b].view_as(p).clone().to(self.device) for n, p in params
                for a, b in [self._param_slices[n]]}
        beta = {n: betas[a:b].view_as(p).to(self.device) for n, p in params for a, b in [self._param_slices[n]]}
        total, steps = 0.0, 0
        for _ in range(int(config.get("local_epochs", 1))):
            for xb, yb in self.batches(rng, bs):
                model.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model.head(model.features(xb)), yb)
                loss.backward()
                with torch.no_grad():
                    for n, p in params:
                        if p.grad is None:
                            continue
                        g = p.grad if wd == 0 else p.grad + wd * p
                        bufs[n].mul_(beta[n]).add_(g)
                        p.sub_(lr * bufs[n])
                total += float(loss.detach())
                steps += 1
        for n, _p in params:
            a, b = self._param_slices[n]
            self.momentum[a:b] = bufs[n].reshape(-1).cpu()
        return total / max(steps, 1), steps

    # -- one round --------------------------------------------------------------------------------------------
    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        pwpm, mamo = bool(config.get("pwpm", True)), bool(config.get("mamo", True))
        mode = _choice(str(config.get("mamo_shared", "reset")), MAMO_SHARED, "mamo_shared")
        upload_mask = _choice(str(config.get("upload_mask", "new")), UPLOAD_MASKS, "upload_mask")
        d = self.dim
        server_m = None
        if download.numel() == 2 * d and mode == "server":
            theta_g, server_m = download[:d].float(), download[d:].float()
        elif download.numel() == d:
            theta_g = download.float()
        else:
            raise ConfigError(f"client {self.cid}: download has {download.numel()} entries, expected {d} "
                              f"(or {2 * d} with mamo_shared='server')")
        if not pwpm:
            self.personal = torch.zeros(d, dtype=torch.bool)
        # PWPM download rule: theta_n <- M * theta_n + (1 - M) * theta_g
        before = torch.where(self.personal, get_state_vector(self.model), theta_g)
        set_state_vector(self.model, before)
        if mamo:
            if mode == "server" and server_m is None:
                raise ConfigError(f"client {self.cid}: mamo_shared='server' but the download has no server momentum")
            self.momentum = mamo_reset(self.momentum, self.personal, mode, server_m)
            betas = mamo_betas(self.personal, float(config.get("beta_shared", 0.9)),
                               float(config.get("beta_personal", 0.9)))
        else:  # plain SGD momentum restarted every round (what the baselines use)
            self.momentum = torch.zeros(d, dtype=torch.float32)
            betas = mamo_betas(torch.zeros(d, dtype=torch.bool), float(config.get("beta_shared", 0.9)), 0.0)
        loss, steps = self._train_mamo(config, rng, betas)
        after = get_state_vector(self.model)
        delta = after - before
        # Gamma_data: mean KL(p_global || p_local) over the local training data (optionally + accuracy gain)
        set_state_vector(self.scratch, theta_g)
        lg, ll = self._logits(self.scratch, self.x), self._logits(self.model, self.x)
        gamma_data = prediction_deviation(lg, ll)
        gain = float((ll.argmax(1) == self.y).double().mean() - (lg.argmax(1) == self.y).double().mean())
        if bool(config.get("accuracy_gain", False)):
            gamma_data += gain
        old = self.personal
        new = personal_mask(after, theta_g, float(config.get("personal_frac", 0.2)),
                            str(config.get("mask_rule", "magnitude"))) if pwpm else torch.zeros(d, dtype=torch.bool)
        self.personal = new
        sent = new if upload_mask == "new" else old
        upload = torch.where(sent, torch.zeros_like(delta), delta)
        arrays = {PERSONAL_IDX: torch.nonzero(sent).reshape(-1).to(torch.int32)}
        if mamo and mode == "server":
            arrays[MOMENTUM] = torch.where(sent, torch.zeros_like(self.momentum), self.momentum)
        return FitResult(upload, self.num_examples, {"loss": loss, "steps": float(steps), "gamma_data": gamma_data,
                                                      "accuracy_gain": gain}, arrays)

    def personalised_vector(self, params: torch.Tensor) -> torch.Tensor:
        """``M * theta_n + (1 - M) * theta_g``: the model this client uses (and is evaluated with)."""
        return torch.where(self.personal, get_state_vector(self.model), params[:self.dim].float())

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        if self.x_test is None:
            return None
        set_state_vector(self.scratch, self.personalised_vector(params))
        return score_test_split(self, lambda x: self._logits(self.scratch, x).argmax(1))


# ---------------------------------------------------------------------------------------------- server
class COPFL:
    """CO-PFL server strategy (spec 4.3 / 4.5). Flags (all [reconstruction]):

    ``alpha_mix`` a (gradient vs data score), ``tau`` (softmax temperature), ``personal_frac`` p (share of
    personal coordinates), ``weights`` ("softmax" | "proportional" | "size": data-size weights, COWA off),
    ``mask_rule`` ("magnitude" | "sign_disagreement"), ``mamo_shared`` ("reset" | "server"), ``beta_shared`` /
    ``beta_personal``, ``pwpm`` / ``mamo`` (False switches the component off: no personal coordinates / plain
    momentum restarted every round), ``accuracy_gain`` (add the local-over-global training accuracy gain to
    Gamma_data), ``upload_mask`` ("new": the mask computed after training, the spec's order; "download": the
    mask the round trained with), and the local training ``lr``, ``local_epochs``, ``batch_size``."""

    def __init__(self, alpha_mix: float = 0.5, tau: float = 0.5, personal_frac: float = 0.2,
                 weights: Literal["softmax", "proportional", "size"] = "softmax",
                 mask_rule: Literal["magnitude", "sign_disagreement"] = "magnitude",
                 mamo_shared: Literal["reset", "server"] = "reset", beta_shared: float = 0.9,
                 beta_personal: float = 0.9, *, pwpm: bool = True, mamo: bool = True, accuracy_gain: bool = False,
                 upload_mask: Literal["new", "download"] = "new", lr: float = 0.01, local_epochs: int = 1,
                 batch_size: int = 32, weight_decay: float = 0.0, name: str = "co-pfl"):
        _choice(weights, WEIGHT_RULES, "weights")
        _choice(mask_rule, MASK_RULES, "mask_rule")
        _choice(mamo_shared, MAMO_SHARED, "mamo_shared")
        _choice(upload_mask, UPLOAD_MASKS, "upload_mask")
        if not 0.0 <= alpha_mix <= 1.0:
            raise ConfigError(f"field 'alpha_mix': must be in [0, 1], got {alpha_mix}")
        if not tau > 0:
            raise ConfigError(f"field 'tau': must be > 0, got {tau}")
        if not 0.0 <= personal_frac < 1.0:
            raise ConfigError(f"field 'personal_frac': must be in [0, 1), got {personal_frac}")
        mamo_betas(torch.zeros(1, dtype=torch.bool), beta_shared, beta_personal)  # validates both
        if not lr > 0:
            raise ConfigError(f"field 'lr': must be > 0, got {lr}")
        if local_epochs < 1 or batch_size < 1:
            raise ConfigError(f"fields 'local_epochs' and 'batch_size' must be >= 1, got {local_epochs}, {batch_size}")
        self.name = name
        self.alpha_mix, self.tau, self.weights = float(alpha_mix), float(tau), weights
        self.pwpm, self.mamo, self.mamo_shared = bool(pwpm), bool(mamo), mamo_shared
        self.config = {"lr": float(lr), "local_epochs": int(local_epochs), "batch_size": int(batch_size),
                       "weight_decay": float(weight_decay), "personal_frac": float(personal_frac),
                       "mask_rule": mask_rule, "mamo_shared": mamo_shared, "beta_shared": float(beta_shared),
                       "beta_personal": float(beta_personal), "pwpm": self.pwpm, "mamo": self.mamo,
                       "accuracy_gain": bool(accuracy_gain), "upload_mask": upload_mask}
        self.uses_server_momentum = self.mamo and mamo_shared == "server"
        # the "server" download carries the momentum too, so uploads are not download-shaped
        self.upload_like_download = not self.uses_server_momentum
        self.server_momentum: torch.Tensor | None = None

    def initialize(self, params: torch.Tensor) -> None:
        if self.uses_server_momentum and (self.server_momentum is None
                                          or self.server_momentum.numel() != params.numel()):
            self.server_momentum = torch.zeros(params.numel(), dtype=torch.float32)

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.uses_server_momentum:
            assert self.server_momentum is not None
            return torch.cat([params.float(), self.server_momentum]), dict(self.config)
        return params.clone(), dict(self.config)

    def aggregate_fit(self, rnd: int, params: torch.Tensor, results: list[tuple[int, FitResult]]
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        d = params.numel()
        ok = [(c, r) for c, r in results if r.vector.numel() == d and PERSONAL_IDX in r.arrays
              and "gamma_data" in r.metrics and (not self.uses_server_momentum or MOMENTUM in r.arrays)]
        metrics: dict[str, float] = {"malformed": float(len(results) - len(ok))}
        if not ok:
            return params, metrics
        deltas = torch.stack([r.vector.reshape(-1).float() for _, r in ok])
        personal = torch.zeros(len(ok), d, dtype=torch.bool)
        for i, (_, r) in enumerate(ok):
            idx = r.arrays[PERSONAL_IDX].reshape(-1).long()
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= d):
                raise ConfigError(f"client upload '{PERSONAL_IDX}' holds indices outside 0..{d - 1}")
            personal[i, idx] = True
        data_raw = torch.tensor([float(r.metrics["gamma_data"]) for _, r in ok], dtype=torch.float64)
        g_grad = gradient_scores(deltas)
        g_data = minmax_normalise(data_raw)
        gamma = self.alpha_mix * g_grad + (1.0 - self.alpha_mix) * g_data
        w = cowa_weights(gamma, self.tau, self.weights, sizes=[float(r.num_examples) for _, r in ok])
        new, covered = masked_aggregate(params, deltas, personal, w)
        if self.uses_server_momentum:
            assert self.server_momentum is not None
            moms = torch.stack([r.arrays[MOMENTUM].reshape(-1).float() for _, r in ok])
            base = torch.zeros_like(self.server_momentum)
            avg, cov = masked_aggregate(base, moms, personal, w)
            self.server_momentum = torch.where(cov, avg, self.server_momentum)
        metrics.update({
            "weight_max": float(w.max()), "weight_min": float(w.min()),
            "weight_entropy": float(-(w * w.clamp_min(1e-300).log()).sum() / math.log(max(len(ok), 2))),
            "gamma_grad_mean": float(g_grad.mean()), "gamma_data_raw_mean": float(data_raw.mean()),
            "personal_frac_mean": float(personal.double().mean()), "shared_coverage": float(covered.double().mean()),
        })
        return new, metrics

    def state_dict(self) -> dict[str, Any]:
        return {} if self.server_momentum is None else {"server_momentum": self.server_momentum.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "server_momentum" in state:
            self.server_momentum = state["server_momentum"].clone().float()

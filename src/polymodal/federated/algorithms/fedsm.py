"""FedSM: semantics-guided feature mixup for long-tailed federated learning (spec ``federated.md`` section 2).

Zhang et al., "FedSM: Robust Semantics-Guided Feature Mixup for Bias Reduction in Federated Learning with
Long-Tail Data", arXiv 2510.27240 (official code ``Twi-etn/FedSM``, internally ``CLIP2MIX``).

One round (spec 2.3): the online clients train the full model locally (SGD, no momentum / weight decay,
random-crop + flip augmentation on images) -> FedAvg of the full models weighted by sample counts -> in the
last ``crt_rounds`` rounds, classifier re-training (CRT) through the engine's ``post_round`` hook:

1. phase 1 (``exchange(None, ...)``): *every* client runs the FedAvg model (eval mode) on its data and
   uploads per-class feature means and counts; the server builds the global prototypes
   (:func:`global_prototypes`, spec 2.3 3b);
2. phase 2 (``exchange(online, ...)``): the round's online clients receive the prototypes and the semantic
   relevance S (:func:`semantic_relevance`, 3c), draw pseudo-features (:func:`make_pseudo_features`, 3d),
   train a *fresh* ``Linear(feat -> C)`` (:func:`train_linear_head`, 3e) and upload it; the server averages the
   heads by the online clients' sample counts (:func:`crt_average`, 3f).

The re-trained head is used for **evaluation only** (``evaluation`` hook): the backbone keeps training from the
plain FedAvg weights, so the global parameters after every round equal plain FedAvg's for the same seed. Hence
one training trajectory can evaluate several CRT *variants* side by side (FedSM, S = 1, top-S selection,
class-balanced re-training on real features, noisy S): each online client computes every variant's head in
one phase-2 reply (:func:`default_variants`).

Offline there are no CLIP weights: the CLIP knowledge-distillation term of local training (``clip_kd``) is not
available and S comes from the bundled MiniLM sentence encoder instead of CLIP's text encoder.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms.personal import get_state_vector, set_state_vector
from polymodal.federated.core import FitResult, client_data

__all__ = [
    "CRT_SELECTIONS",
    "DIAG_MEANS",
    "FedAvgFull",
    "FedSM",
    "FedSMClient",
    "augment_batch",
    "crt_average",
    "default_variants",
    "global_prototypes",
    "make_pseudo_features",
    "make_real_balanced_features",
    "semantic_relevance",
    "train_linear_head",
]

#: how a CRT variant builds its re-training set: the three pseudo-feature selections of
#: :func:`make_pseudo_features`, or ``"real"`` (class-balanced real features, the CReFF-style baseline)
CRT_SELECTIONS = ("probabilistic", "uniform", "deterministic", "real")
DIAG_MEANS = ("with_diag", "off_diag")
CLIP_UNAVAILABLE = ("clip_kd=True needs CLIP ViT-B/32 image and text encoders, whose weights are not available "
                    "offline (no model hub at run time); only clip_kd=False is supported (spec 2.3 step 1)")


# ---------------------------------------------------------------------------------------------- pure math
def semantic_relevance(class_names: Sequence[str], encoder: Any, diag_mean: str = "with_diag") -> np.ndarray:
    """Semantic relevance S (C x C) of the classes (spec 2.3 3c / 2.6).

    Text embeddings of the bare class names (``encoder.encode(list_of_str) -> (C, d)``, e.g.
    :class:`polymodal.text.SentenceEncoder`; CLIP's text encoder in the paper), L2-normalised; S = their cosine
    matrix; then each diagonal entry is replaced by its row's mean, lowering the chance of mixing a class with
    its own features. ``diag_mean="with_diag"`` [official code: ``np.mean(S, axis=1)`` before the fill]: the
    mean over the whole row including the original diagonal; ``"off_diag"``: the mean of the C - 1
    off-diagonal entries [reconstruction flag].
    """
    names = [str(n) for n in class_names]
    if len(names) < 2:
        raise ConfigError(f"semantic_relevance: needs at least 2 class names, got {names}")
    if diag_mean not in DIAG_MEANS:
        raise ConfigError(f"field 'diag_mean': {diag_mean!r} is not one of {', '.join(DIAG_MEANS)}")
    emb = np.asarray(encoder.encode(names), dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise ConfigError(f"semantic_relevance: the encoder returned shape {emb.shape} for {len(names)} names")
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ConfigError("semantic_relevance: a class name has a zero embedding")
    emb = emb / norms
    sim = emb @ emb.T
    c = len(names)
    if diag_mean == "with_diag":
        row_mean = sim.mean(axis=1)
    else:
        row_mean = (sim.sum(axis=1) - np.diag(sim)) / (c - 1)
    np.fill_diagonal(sim, row_mean)
    return sim.astype(np.float32)


def global_prototypes(means: np.ndarray | torch.Tensor, counts: np.ndarray | torch.Tensor) -> np.ndarray:
    """Global class prototypes (spec 2.3 3b; official ``cal_norm_mean``).

    ``means``: (K, C, F) per-client class feature means (un-normalised; any value where the count is 0);
    ``counts``: (K, C) per-client class counts. p_c = sum_k n_kc * mu_kc / ||mu_kc|| / sum_k n_kc: the
    count-weighted mean of the L2-normalised client means, **not** re-normalised. A class no client holds gets
    a zero row.
    """
    mu = np.asarray(means, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    if mu.ndim != 3 or n.shape != mu.shape[:2]:
        raise ConfigError(f"global_prototypes: means must be (K, C, F) and counts (K, C), got {mu.shape} and "
                          f"{n.shape}")
    if np.any(n < 0):
        raise ConfigError("global_prototypes: counts must be >= 0")
    norm = np.linalg.norm(mu, axis=2, keepdims=True)
    unit = mu / np.maximum(norm, 1e-12)  # F.normalize's eps
    total = n.sum(axis=0)
    summed = (n[:, :, None] * unit).sum(axis=0)
    out = np.where(total[:, None] > 0, summed / np.maximum(total, 1.0)[:, None], 0.0)
    return out.astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _select(weights: np.ndarray, m: int, rng: np.random.Generator, selection: str) -> np.ndarray:
    """``m`` indices into ``weights`` (one per sample) by the named rule; without replacement when possible."""
    n = len(weights)
    if selection == "deterministic":
        # top-m by relevance, ties in random order; fewer than m samples: cycle through the ranking
        order = np.lexsort((rng.random(n), -weights))
        return order[:m] if n >= m else np.resize(order, m)
    if selection == "uniform":
        p = None
    else:
        w = np.clip(weights, 0.0, None) + 1e-12  # negative relevance (noisy S) = (almost) never drawn
        p = w / w.sum()
    return rng.choice(n, size=m, replace=n < m, p=p)


def make_pseudo_features(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                         prototypes: np.ndarray | torch.Tensor, S: np.ndarray | None, M: int,
                         rng: np.random.Generator, low: float = 0.35, high: float = 0.95,
                         selection: str = "probabilistic", classes: Sequence[int] | None = None,
                         return_details: bool = False):
    """A class-balanced set of C * M pseudo-features (spec 2.3 3d; official ``MixupDataset_norm``).

    For each target class c (``classes``, default all rows of ``prototypes``): draw M of the client's features
    - ``"probabilistic"``: without replacement, with probability proportional to S[c, y_i] (the relevance of
      the sample's label to c; negative entries of a noisy S count as 0) [official code];
    - ``"uniform"``: uniformly without replacement (S = 1; the "without semantics" ablation);
    - ``"deterministic"``: the M samples with the highest S[c, y_i], ties in random order (the
      non-probabilistic selection the paper argues against) [reconstruction];
    with replacement when the client has fewer than M samples [reconstruction]. Each draw f_i gets
    lambda ~ U(low, high) rounded to 2 decimals and becomes lambda * p_c + (1 - lambda) * f_i / ||f_i||,
    labelled c. Returns ``(x (C*M, F) float32, y (C*M,) int64)``; with ``return_details`` also
    ``{"indices": (C, M), "lambdas": (C, M)}``.
    """
    f = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float64)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    P = np.asarray(prototypes.detach().cpu() if isinstance(prototypes, torch.Tensor) else prototypes,
                   dtype=np.float64)
    if f.ndim != 2 or len(f) == 0 or len(y) != len(f):
        raise ConfigError(f"make_pseudo_features: feats must be a non-empty (N, F) array with N labels, got "
                          f"{f.shape} and {y.shape}")
    if P.ndim != 2 or P.shape[1] != f.shape[1]:
        raise ConfigError(f"make_pseudo_features: prototypes must be (C, {f.shape[1]}), got {P.shape}")
    if selection not in CRT_SELECTIONS[:3]:
        raise ConfigError(f"field 'selection': {selection!r} is not one of {', '.join(CRT_SELECTIONS[:3])}")
    if int(M) < 1:
        raise ConfigError(f"field 'crt_feat_num': must be >= 1, got {M}")
    if not 0.0 <= low <= high <= 1.0:
        raise ConfigError(f"fields 'mix_low'/'mix_high': need 0 <= low <= high <= 1, got {low}, {high}")
    n_classes = P.shape[0]
    if selection != "uniform":
        if S is None:
            raise ConfigError(f"make_pseudo_features: selection {selection!r} needs the relevance matrix S")
        S = np.asarray(S, dtype=np.float64)
        if S.shape != (n_classes, n_classes):
            raise ConfigError(f"make_pseudo_features: S must be ({n_classes}, {n_classes}), got {S.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ConfigError(f"make_pseudo_features: labels must lie in 0..{n_classes - 1}")
    targets = list(range(n_classes)) if classes is None else [int(c) for c in classes]
    M = int(M)
    unit = _unit_rows(f)
    xs, idx_all, lam_all = [], [], []
    for c in targets:
        weights = np.ones(len(y)) if selection == "uniform" else S[c, y]
        idx = _select(weights, M, rng, selection)
        lam = np.round(rng.uniform(low, high, size=M), 2)
        xs.append(lam[:, None] * P[c][None, :] + (1.0 - lam[:, None]) * unit[idx])
        idx_all.append(idx)
        lam_all.append(lam)
    x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, f.shape[1]), np.float32)
    labels_out = np.repeat(np.asarray(targets, dtype=np.int64), M)
    if return_details:
        return x, labels_out, {"indices": np.asarray(idx_all), "lambdas": np.asarray(lam_all)}
    return x, labels_out


def make_real_balanced_features(feats: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor, M: int,
                                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The CReFF-style baseline's re-training set [reconstruction]: for each class the client holds, M of its
    *real* features of that class (without replacement when it has >= M, else with), raw as the model computes
    them (the space the head is evaluated in): classifier re-training on class-balanced real features, no
    prototypes, no mixup. A client only re-trains the classes it holds."""
    f = np.asarray(feats.detach().cpu() if isinstance(feats, torch.Tensor) else feats, dtype=np.float32)
    y = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    xs, ys = [], []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        pick = rng.choice(members, size=int(M), replace=len(members) < int(M))
        xs.append(f[pick])
        ys.append(np.full(int(M), c, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def train_linear_head(x: np.ndarray, y: np.ndarray, n_classes: int, *, epochs: int, lr: float = 0.01,
                      batch_size: int = 256, rng: np.random.Generator,
                      device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Train a **fresh** ``Linear(F -> n_classes)`` on ``(x, y)`` with plain SGD and cross-entropy (spec 2.3 3e;
    official ``local_crt``: lr 0.01, batch 256, shuffled every epoch). Initialised like ``nn.Linear``
    (U(-1/sqrt(F), 1/sqrt(F)) for weight and bias) from ``rng``. Returns ``(weight (C, F), bias (C,))`` on CPU."""
    feat = int(x.shape[1])
    bound = 1.0 / np.sqrt(feat)
    head = nn.Linear(feat, n_classes).to(device)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(rng.uniform(-bound, bound, (n_classes, feat)).astype(np.float32)))
        head.bias.copy_(torch.from_numpy(rng.uniform(-bound, bound, n_classes).astype(np.float32)))
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y, dtype=torch.int64, device=device)
    opt = torch.optim.SGD(head.parameters(), lr=lr)
    n = len(yt)
    for _ in range(int(epochs)):
        order = torch.as_tensor(rng.permutation(n), device=device)
        for i in range(0, n, batch_size):
            idx = order[i:i + batch_size]
            loss = nn.functional.cross_entropy(head(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return head.weight.detach().cpu().clone(), head.bias.detach().cpu().clone()


def crt_average(heads: torch.Tensor, online_sizes: Sequence[float], all_sizes: Sequence[float] | None = None,
                replicate_bug: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Server average of the re-trained heads (spec 2.3 3f); returns ``(averaged head, weights used)``.

    Default: weights = the online clients' sample counts, normalised (FedAvg). ``replicate_bug=True``
    reproduces the official code (spec 2.4): ``model_fusion(heads, sizes_of_all_clients)`` zips the k heads with
    the first k entries of the all-clients size list (clients 0..k-1, whoever was online) and divides by the
    sum over *all* clients, so the weights are ``all_sizes[:k] / sum(all_sizes)`` (they do not sum to 1).
    ``heads``: (k, H), rows in ascending client-id order; ``all_sizes`` in client-id order."""
    k = heads.shape[0]
    if k == 0 or len(online_sizes) != k:
        raise ConfigError(f"crt_average: {k} heads for {len(online_sizes)} sizes")
    if replicate_bug:
        if all_sizes is None or len(all_sizes) < k:
            raise ConfigError("crt_average: replicate_bug needs the sizes of all clients")
        w = torch.tensor([float(s) for s in all_sizes[:k]], dtype=torch.float64) / float(sum(all_sizes))
    else:
        w = torch.tensor([float(s) for s in online_sizes], dtype=torch.float64)
        w = w / w.sum()
    return (w[:, None] * heads.double()).sum(0).float(), w


def augment_batch(x: torch.Tensor, rng: np.random.Generator, pad: int, hflip: bool) -> torch.Tensor:
    """Random crop with zero padding ``pad`` (same output size) and, when ``hflip``, a horizontal flip with
    probability 1/2, per sample, as tensor ops (the official ``RandomCrop(32, 4)`` + ``RandomHorizontalFlip``;
    torchvision is not available). ``x``: (B, C, H, W); non-image input is returned unchanged."""
    if x.ndim != 4 or (pad <= 0 and not hflip):
        return x
    b, _, h, w = x.shape
    out = x
    if pad > 0:
        padded = nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.as_tensor(rng.integers(0, 2 * pad + 1, b))
        ox = torch.as_tensor(rng.integers(0, 2 * pad + 1, b))
        rows = (oy[:, None] + torch.arange(h)[None, :]).to(x.device)  # (B, H)
        cols = (ox[:, None] + torch.arange(w)[None, :]).to(x.device)  # (B, W)
        bi = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if hflip:
        flip = torch.as_tensor(rng.random(b) < 0.5, device=x.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out.contiguous()


def default_variants(noise_sigmas: Sequence[float] = (), *, uniform: bool = True, deterministic: bool = True,
                     creff: bool = True) -> dict[str, dict[str, Any]]:
    """The CRT variants one FedSM trajectory evaluates: ``{row name: {"selection": ..., "noise": sigma}}``.

    ``fedsm`` (probabilistic selection with S), ``fedsm-uniform`` (S = 1), ``fedsm-deterministic`` (top-S),
    ``creff`` (class-balanced real features), and per sigma in ``noise_sigmas`` the robustness pair
    ``fedsm-noise<sigma>`` / ``fedsm-deterministic-noise<sigma>`` with S + N(0, sigma^2) [reconstruction]."""
    out: dict[str, dict[str, Any]] = {"fedsm": {"selection": "probabilistic", "noise": 0.0}}
    if uniform:
        out["fedsm-uniform"] = {"selection": "uniform", "noise": 0.0}
    if deterministic:
        out["fedsm-deterministic"] = {"selection": "deterministic", "noise": 0.0}
    if creff:
        out["creff"] = {"selection": "real", "noise": 0.0}
    for s in noise_sigmas:
        out[f"fedsm-noise{s:g}"] = {"selection": "probabilistic", "noise": float(s)}
        out[f"fedsm-deterministic-noise{s:g}"] = {"selection": "deterministic", "noise": float(s)}
    return out


# ---------------------------------------------------------------------------------------------- client
class FedSMClient:
    """A FedSM client: full-model download, local SGD, and the CRT phases (spec 2.3).

    ``config["mode"]`` (set by the strategy):

    - ``"train"``: write the downloaded state vector (parameters + BN statistics) into the model, train
      ``local_epochs`` of SGD (``lr``, ``batch_size``; no momentum / weight decay; optional FedProx term
      ``prox_mu``; augmentation ``augment`` with ``crop_pad`` / ``hflip`` on image input only), upload the
      state vector;
    - ``"prototypes"``: eval-mode features of the own data (no augmentation) -> ``arrays["means"]`` (C, F) and
      ``arrays["counts"]`` (C,); the vector is empty;
    - ``"crt"``: the download is ``[state | prototypes (C*F) | present (C) | S stack (n_s*C*C)]``; for each
      variant named in ``config["variants"]`` build its re-training set and train a fresh head; upload the
      heads concatenated (each ``weight.flatten() ++ bias``), with per-variant seconds in the metrics.

    The model is not personal (every download overwrites all of it), so there is no ``state_dict``; features of
    the last downloaded state are cached in memory (phase 1 and phase 2 of a round use the same model).
    """

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 n_classes: int, device: str = "cpu"):
        client_data(self, cid, x, y)
        self.n_classes = int(n_classes)
        self.device = device
        self.model = model_fn().to(device)
        self._has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        self.n_state = int(get_state_vector(self.model).numel())
        self._feat_cache: tuple[bytes, torch.Tensor] | None = None

    # -- phases ----------------------------------------------------------------------------------------------
    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        mode = config.get("mode", "train")
        if mode == "train":
            return self._train(download, config, rng)
        if mode == "prototypes":
            feats = self.features(download[:self.n_state])
            means = torch.zeros(self.n_classes, feats.shape[1])
            counts = torch.bincount(self.y, minlength=self.n_classes)
            means.index_add_(0, self.y, feats)
            means = means / counts.clamp(min=1)[:, None].float()
            return FitResult(torch.zeros(0), self.num_examples, {}, {"means": means, "counts": counts})
        if mode == "crt":
            return self._crt(download, config, rng)
        raise ConfigError(f"client {self.cid}: unknown mode {mode!r} (train, prototypes, crt)")

    def _train(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        model = self.model
        set_state_vector(model, download)
        model.train()
        lr, bs = float(config.get("lr", 0.1)), int(config.get("batch_size", 32))
        mu = float(config.get("prox_mu", 0.0))
        pad = int(config.get("crop_pad", 0)) if config.get("augment", False) else 0
        flip = bool(config.get("hflip", False)) and bool(config.get("augment", False))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        anchor = [p.detach().clone() for p in model.parameters()] if mu else None
        total, steps = 0.0, 0
        for _ in range(int(config.get("local_epochs", 1))):
            order = rng.permutation(self.num_examples)
            for i in range(0, self.num_examples, bs):
                idx = order[i:i + bs]
                if len(idx) < 2 and self._has_bn:  # BatchNorm cannot train on one sample
                    continue
                xb, yb = self.x[idx].to(self.device), self.y[idx].to(self.device)
                xb = augment_batch(xb, rng, pad, flip)
                loss = nn.functional.cross_entropy(model(xb), yb)
                if anchor is not None:
                    loss = loss + 0.5 * mu * sum((p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor,
                                                                                       strict=True))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
        self._feat_cache = None
        return FitResult(get_state_vector(model), self.num_examples, {"loss": total / max(steps, 1)})

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """Eval-mode features (no augmentation) of the own training data under ``state``, cached per state."""
        key = hashlib.blake2b(state.detach().cpu().float().numpy().tobytes(), digest_size=16).digest()
        if self._feat_cache is not None and self._feat_cache[0] == key:
            return self._feat_cache[1]
        set_state_vector(self.model, state)
        self.model.eval()
        with torch.no_grad():
            feats = torch.cat([self.model.features(self.x[i:i + 1024].to(self.device)).float().cpu()
                               for i in range(0, self.num_examples, 1024)])
        self._feat_cache = (key, feats)
        return feats

    def _crt(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        c, f_dim, n_s = int(config["n_classes"]), int(config["feat_dim"]), int(config.get("n_s", 0))
        expected = self.n_state + c * f_dim + c + n_s * c * c
        if download.numel() != expected:
            raise ConfigError(f"client {self.cid}: CRT download has {download.numel()} values, expected {expected}")
        t0 = time.perf_counter()
        feats = self.features(download[:self.n_state])
        if feats.shape[1] != f_dim:
            raise ConfigError(f"client {self.cid}: features have {feats.shape[1]} dims, the server says {f_dim}")
        off = self.n_state
        protos = download[off:off + c * f_dim].reshape(c, f_dim).numpy()
        off += c * f_dim
        present = np.flatnonzero(download[off:off + c].numpy() > 0.5)
        off += c
        stack = download[off:].reshape(n_s, c, c).numpy() if n_s else np.zeros((0, c, c))
        feats_np, labels_np = feats.numpy(), self.y.numpy()
        metrics = {"feature_seconds": time.perf_counter() - t0}
        base = int(rng.integers(2**63))
        heads = []
        for name, selection, s_idx in zip(config["variants"], config["selections"], config["s_index"],
                                          strict=True):
            t1 = time.perf_counter()
            vrng = np.random.default_rng([base, zlib.crc32(str(name).encode())])
            M = int(config["crt_feat_num"])
            if selection == "real":
                x, y = make_real_balanced_features(feats_np, labels_np, M, vrng)
            else:
                S = stack[int(s_idx)] if int(s_idx) >= 0 else None
                x, y = make_pseudo_features(feats_np, labels_np, protos, S, M, vrng,
                                            float(config["mix_low"]), float(config["mix_high"]), selection,
                                            classes=present)
            w, b = train_linear_head(x, y, c, epochs=int(config["crt_epochs"]), lr=float(config["crt_lr"]),
                                     batch_size=int(config["crt_batch_size"]), rng=vrng, device=self.device)
            heads.append(torch.cat([w.reshape(-1), b]))
            metrics[f"crt_seconds/{name}"] = time.perf_counter() - t1
        return FitResult(torch.cat(heads), self.num_examples, metrics)


# ---------------------------------------------------------------------------------------------- server
class FedAvgFull:
    """FedAvg of full state vectors (parameters and BN running statistics) weighted by sample counts, for
    :class:`FedSMClient` (spec 1.4 / 2.3 step 2); ``prox_mu > 0`` makes it FedProx (Li et al. 2020, mu 0.01
    [reconstruction]). ``config``: what clients train with (``lr``, ``local_epochs``, ``batch_size``,
    ``augment``, ``crop_pad``, ``hflip``)."""

    #: CRT phases upload heads / prototypes, not a model: the engine only checks finiteness
    upload_like_download = False

    def __init__(self, *, lr: float = 0.1, local_epochs: int = 10, batch_size: int = 32, prox_mu: float = 0.0,
                 augment: bool = True, crop_pad: int = 4, hflip: bool = True, name: str | None = None):
        if lr <= 0:
            raise ConfigError(f"field 'lr': must be > 0, got {lr}")
        if local_epochs < 1 or batch_size < 1:
            raise ConfigError(f"fields 'local_epochs' / 'batch_size': must be >= 1, got {local_epochs}, "
                              f"{batch_size}")
        if prox_mu < 0 or crop_pad < 0:
            raise ConfigError(f"fields 'prox_mu' / 'crop_pad': must be >= 0, got {prox_mu}, {crop_pad}")
        self.name = name or ("fedprox" if prox_mu else "fedavg")
        self.config: dict[str, Any] = {"mode": "train", "lr": float(lr), "local_epochs": int(local_epochs),
                                       "batch_size": int(batch_size), "prox_mu": float(prox_mu),
                                       "augment": bool(augment), "crop_pad": int(crop_pad), "hflip": bool(hflip)}
        self._online: list[tuple[int, int]] = []
        self._n_params = 0

    def initialize(self, params: torch.Tensor) -> None:
        self._n_params = int(params.numel())

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return params, dict(self.config)

    def aggregate_fit(self, rnd, params, results):
        good = [(c, r) for c, r in results if r.vector.numel() == params.numel()]
        self._online = [(c, int(r.num_examples)) for c, r in good]
        metrics = {"bad_shape": float(len(results) - len(good))} if len(good) < len(results) else {}
        if not good:
            return params, metrics
        w = torch.tensor([float(r.num_examples) for _, r in good], dtype=torch.float64)
        vecs = torch.stack([r.vector.double() for _, r in good])
        return ((w[:, None] * vecs).sum(0) / w.sum()).float(), metrics

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class FedSM(FedAvgFull):
    """FedSM server (spec 2.6): FedAvg of full models + classifier re-training in the last ``crt_rounds`` rounds,
    used for evaluation only.

    ``relevance``: the C x C semantic relevance S (else computed from ``class_names`` with ``encoder``, default
    the bundled MiniLM, by :func:`semantic_relevance` with ``diag_mean``). ``n_classes`` / ``feat_dim`` locate
    the classifier: the last ``C * F + C`` entries of the state vector are ``head.weight`` and ``head.bias``.
    ``variants``: ``{name: {"selection": one of CRT_SELECTIONS, "noise": sigma}}`` (default: ``{"fedsm":
    selection}``), all computed on the same trajectory; noisy S = S + N(0, sigma^2), drawn once per run from
    ``seed``. ``crt_every``: run the CRT only in rounds whose evaluation is due (the head is evaluation-only
    and trained fresh each time, so skipping the other rounds changes no reported number; set it to the
    federation's ``eval_every``). ``replicate_crt_weight_bug``: average the heads with the official code's
    weights (spec 2.4, :func:`crt_average`). ``clients_per_round``: the paper's 8 of 20 online clients, kept
    for reference: the engine samples the clients (give the same number to the Simulator / Federation); the
    CRT's phase 2 goes to whichever clients' results reached ``aggregate_fit``.
    """

    def __init__(self, rounds: int = 200, clients_per_round: int = 8, crt_rounds: int = 90, crt_feat_num: int = 100,
                 mix_low: float = 0.35, mix_high: float = 0.95, crt_epochs: int = 60,
                 selection: str = "probabilistic", diag_mean: str = "with_diag", clip_kd: bool = False, *,
                 n_classes: int, feat_dim: int, relevance: np.ndarray | None = None,
                 class_names: Sequence[str] | None = None, encoder: Any = None,
                 variants: Mapping[str, Mapping[str, Any]] | None = None, crt_lr: float = 0.01,
                 crt_batch_size: int = 256, crt_every: int = 1, replicate_crt_weight_bug: bool = False,
                 seed: int = 0, **train: Any):
        if clip_kd:
            raise ConfigError(f"field 'clip_kd': {CLIP_UNAVAILABLE}")
        super().__init__(**train)
        self.name = "fedsm"
        if rounds < 1 or not 0 <= crt_rounds <= rounds:
            raise ConfigError(f"field 'crt_rounds': must be in 0..rounds ({rounds}), got {crt_rounds}")
        if clients_per_round < 1:
            raise ConfigError(f"field 'clients_per_round': must be >= 1, got {clients_per_round}")
        if crt_feat_num < 1 or crt_epochs < 1 or crt_batch_size < 1 or crt_every < 1:
            raise ConfigError("fields 'crt_feat_num', 'crt_epochs', 'crt_batch_size', 'crt_every' must be >= 1")
        if crt_lr <= 0:
            raise ConfigError(f"field 'crt_lr': must be > 0, got {crt_lr}")
        if not 0.0 <= mix_low <= mix_high <= 1.0:
            raise ConfigError(f"fields 'mix_low' / 'mix_high': need 0 <= mix_low <= mix_high <= 1, got {mix_low}, "
                              f"{mix_high}")
        if selection not in CRT_SELECTIONS[:3]:
            raise ConfigError(f"field 'selection': {selection!r} is not one of {', '.join(CRT_SELECTIONS[:3])}")
        if diag_mean not in DIAG_MEANS:
            raise ConfigError(f"field 'diag_mean': {diag_mean!r} is not one of {', '.join(DIAG_MEANS)}")
        self.rounds, self.clients_per_round, self.crt_rounds = int(rounds), int(clients_per_round), int(crt_rounds)
        self.n_classes, self.feat_dim = int(n_classes), int(feat_dim)
        self.head_numel = self.n_classes * self.feat_dim + self.n_classes
        self.crt_every, self.replicate_crt_weight_bug = int(crt_every), bool(replicate_crt_weight_bug)
        self.variants = {str(k): {"selection": str(v.get("selection", "probabilistic")),
                                  "noise": float(v.get("noise", 0.0))}
                         for k, v in (variants if variants is not None else {"fedsm": {"selection": selection}}
                                      ).items()}
        for name, v in self.variants.items():
            if v["selection"] not in CRT_SELECTIONS:
                raise ConfigError(f"variant {name!r}: selection {v['selection']!r} is not one of "
                                  f"{', '.join(CRT_SELECTIONS)}")
            if v["noise"] < 0:
                raise ConfigError(f"variant {name!r}: noise sigma must be >= 0, got {v['noise']}")
        needs_s = any(v["selection"] in ("probabilistic", "deterministic") for v in self.variants.values())
        if relevance is None and needs_s:
            if class_names is None:
                raise ConfigError("FedSM: give the relevance matrix S (relevance=) or the class names "
                                  "(class_names=) to compute it from")
            if encoder is None:
                from polymodal.text import SentenceEncoder

                encoder = SentenceEncoder()
            relevance = semantic_relevance(class_names, encoder, diag_mean)
        self.relevance = None if relevance is None else np.asarray(relevance, dtype=np.float32)
        if self.relevance is not None and self.relevance.shape != (self.n_classes, self.n_classes):
            raise ConfigError(f"FedSM: relevance must be ({self.n_classes}, {self.n_classes}), got "
                              f"{self.relevance.shape}")
        # the S matrices the variants use: index 0 = S, then one noisy S per sigma (shared by the probabilistic
        # and deterministic variant of that sigma, so their comparison is paired)
        self._s_stack: list[np.ndarray] = []
        self._s_index: dict[str, int] = {}
        by_sigma: dict[float, int] = {}
        for name, v in self.variants.items():
            if v["selection"] in ("uniform", "real"):
                self._s_index[name] = -1
                continue
            sigma = v["noise"]
            if sigma not in by_sigma:
                S = self.relevance
                if sigma > 0:
                    noise_rng = np.random.default_rng([int(seed), 0x5E, int(round(sigma * 1e6))])
                    S = S + noise_rng.normal(0.0, sigma, S.shape).astype(np.float32)
                by_sigma[sigma] = len(self._s_stack)
                self._s_stack.append(np.asarray(S, dtype=np.float32))
            self._s_index[name] = by_sigma[sigma]
        self.crt_config: dict[str, Any] = {
            "mode": "crt", "n_classes": self.n_classes, "feat_dim": self.feat_dim, "n_s": len(self._s_stack),
            "variants": list(self.variants), "selections": [v["selection"] for v in self.variants.values()],
            "s_index": [self._s_index[n] for n in self.variants], "crt_feat_num": int(crt_feat_num),
            "mix_low": float(mix_low), "mix_high": float(mix_high), "crt_epochs": int(crt_epochs),
            "crt_lr": float(crt_lr), "crt_batch_size": int(crt_batch_size)}
        self.heads: dict[str, torch.Tensor] = {}
        #: inspection of the last CRT: per variant the clients' heads (k, H), their ids and the weights used
        self.last_client_heads: dict[str, torch.Tensor] = {}
        self.last_crt_clients: list[int] = []
        self.last_crt_weights: torch.Tensor | None = None

    @property
    def relevance_matrices(self) -> list[np.ndarray]:
        """S, then the noisy S of each sigma, as sent to the clients."""
        return list(self._s_stack)

    def initialize(self, params: torch.Tensor) -> None:
        super().initialize(params)
        if params.numel() <= self.head_numel:
            raise ConfigError(f"FedSM: the state vector ({params.numel()}) is not larger than the head "
                              f"({self.n_classes} x {self.feat_dim} + {self.n_classes})")

    def crt_due(self, rnd: int) -> bool:
        """CRT runs in the last ``crt_rounds`` rounds (0-based ``rnd >= rounds - crt_rounds``) when evaluation is
        due (every ``crt_every`` rounds and the last round)."""
        if not self.variants or self.crt_rounds == 0 or rnd < self.rounds - self.crt_rounds:
            return False
        return (rnd + 1) % self.crt_every == 0 or rnd == self.rounds - 1

    def post_round(self, rnd: int, params: torch.Tensor, exchange: Callable) -> tuple[torch.Tensor, dict[str, float]]:
        """Classifier re-training (spec 2.3 step 3); returns ``params`` unchanged (the CRT head never feeds back)."""
        self.heads = {}
        if not self.crt_due(rnd) or not self._online:
            return params, {}
        t0 = time.perf_counter()
        # phase 1: every client's per-class feature means and counts under the FedAvg model
        replies = exchange(None, params, {"mode": "prototypes"})
        ok = {c: r for c, r in replies.items() if "means" in r.arrays and "counts" in r.arrays}
        if not ok:
            return params, {"crt/prototype_clients": 0.0}
        cids = sorted(ok)
        means = torch.stack([ok[c].arrays["means"].float() for c in cids]).numpy()
        counts = torch.stack([ok[c].arrays["counts"].float() for c in cids]).numpy()
        protos = global_prototypes(means, counts)
        present = (counts.sum(0) > 0).astype(np.float32)
        all_sizes = [int(ok[c].num_examples) for c in cids]
        t_proto = time.perf_counter() - t0
        # phase 2: the online clients re-train fresh heads on their pseudo-feature sets
        stack = np.stack(self._s_stack).reshape(-1) if self._s_stack else np.zeros(0, np.float32)
        download = torch.cat([params.float(), torch.from_numpy(protos.reshape(-1)), torch.from_numpy(present),
                              torch.from_numpy(stack.astype(np.float32))])
        online = [c for c, _ in self._online]
        crt = exchange(online, download, dict(self.crt_config))
        h = self.head_numel
        good = {c: r for c, r in crt.items() if r.vector.numel() == h * len(self.variants)}
        metrics = {"crt/prototype_clients": float(len(ok)), "crt/clients": float(len(good)),
                   "crt/prototype_seconds": t_proto}
        if not good:
            return params, metrics
        t2 = time.perf_counter()
        order = sorted(good)
        sizes = [good[c].num_examples for c in order]
        stacked = torch.stack([good[c].vector.float() for c in order]).reshape(len(order), len(self.variants), h)
        self.last_client_heads, self.last_crt_clients = {}, order
        for j, name in enumerate(self.variants):
            self.last_client_heads[name] = stacked[:, j, :].clone()
            self.heads[name], self.last_crt_weights = crt_average(stacked[:, j, :], sizes, all_sizes,
                                                                  self.replicate_crt_weight_bug)
            metrics[f"crt/seconds/{name}"] = float(sum(good[c].metrics.get(f"crt_seconds/{name}", 0.0)
                                                       for c in order))
        metrics["crt/feature_seconds"] = float(sum(good[c].metrics.get("feature_seconds", 0.0) for c in order))
        metrics["crt/server_seconds"] = time.perf_counter() - t2
        metrics["crt/seconds"] = time.perf_counter() - t0
        return params, metrics

    def with_head(self, params: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """``params`` with the classifier (the last ``C * F + C`` entries) replaced by ``head``."""
        out = params.clone()
        out[-self.head_numel:] = head.to(out.dtype)
        return out

    def evaluation(self, rnd: int, params: torch.Tensor, evaluate: Callable | None) -> dict[str, float]:
        """The plain FedAvg model's metrics, and per variant ``<variant>/<metric>`` of the backbone with that
        variant's re-trained head; before the CRT window (or when no head reached the server) the variant
        reports the plain model, as the official code evaluates ``fedavg_params`` there."""
        if evaluate is None:
            return {}
        base = dict(evaluate(params))
        out = dict(base)
        for name in self.variants:
            head = self.heads.get(name)
            m = base if head is None else dict(evaluate(self.with_head(params, head)))
            out.update({f"{name}/{k}": v for k, v in m.items()})
            out[f"{name}/crt"] = float(head is not None)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"heads": {k: v.clone() for k, v in self.heads.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.heads = {k: v.clone() for k, v in state.get("heads", {}).items()}

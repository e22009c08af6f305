"""FedPall: prototype-based adversarial and collaborative learning under feature drift (spec ``federated.md`` 3).

Zhang, Liang, Yuan, Yang, Li, Hu, "FedPall: Prototype-based Adversarial and Collaborative Learning for Federated
Learning with Feature Drift", ICCV 2025, arXiv 2507.04781; official code ``zhy665/FedPall`` (``exps/update.py``
``update_weights_ours``, ``exps/federated_main.py`` ``ours``, ``exps/utils.py`` ``get_mean`` /
``generate_random_tensor``).

One client per domain; each keeps a **personal feature extractor** (never averaged) and a head. One round
(spec 3.4):

1. Clients download the global classifier G and the discriminator D (and the global prototypes) packed in one
   vector (:class:`PackLayout`). The head's non-BatchNorm entries become ``(1 - m) own + m G`` (``m =
   head_momentum = 1``: replaced); its BatchNorm affine parameters and running statistics stay local.
2. Local SGD (lr 0.01, no momentum, batch 64) on ``CE + beta * L_adv + mu * L_proto``:
   :func:`adversarial_kl` = KL(Uniform(K) || softmax(D(r))) through a *frozen* D (gradients reach only the
   extractor: client features become client-agnostic) and :func:`proto_infonce` against the global prototypes
   (from round 2, temperature ``proto_temperature = 3``).
3. Clients re-extract the features of their whole training set and upload them with their labels in
   ``FitResult.arrays`` - features, never raw inputs (privacy caveat: features do leave the client).
4. Server (:class:`FedPall`): prototypes = count-weighted mean of normalised client class means; per client one
   ``lambda = round(0.8 + 0.2 U, 2)`` and one binary mask keeping 90% of the feature dimensions; mixed =
   ``(lambda r + (1 - lambda) P_y) * mask``; G is trained on the mixed features with the class labels (CE) for
   ``server_epochs``, then D with the client ids; SGD lr 0.01, momentum 0.9, weight decay 1e-5, batch 64.

Evaluation (:meth:`FedPallClient.evaluate`): the client's own model (extractor + head, as trained this round) on
its own domain's test split, as the official code tests right after local training.

Official-code quirks not copied by default (spec 3.5), each behind a flag: the InfoNCE denominator with
unnormalised prototypes (``replicate_proto_norm_quirk``), feature extraction in train mode
(``extract_in_train_mode``). Kept as in the code: the frozen D's BatchNorm normalises with the client's batch
statistics (the code deep-copies D while it is in train mode; ``disc_batch_stats=False`` uses its running
statistics instead - in our runs that made the adversarial term much stronger and hurt accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms.fedproto import (
    average_prototypes,
    class_means,
    pack_prototypes,
    unpack_prototypes,
)
from polymodal.federated.algorithms.personal import (
    PersonalModelState,
    get_state_vector,
    set_state_vector,
    state_mask,
)
from polymodal.federated.core import FitResult, client_data, predict_labels, score_test_split
from polymodal.federated.models import MLPHead

__all__ = ["Discriminator", "PackLayout", "FedPallClient", "FedPall", "adversarial_kl", "proto_infonce",
           "mixing_lambda", "feature_mask", "mix_features", "fedpall_preset", "FEDPALL_PRESETS", "LOSS_COMPONENTS"]

#: ``loss_component`` of the official ablation: which terms are on besides CE (``(proto, adv)``)
LOSS_COMPONENTS = {1: (False, False), 2: (True, False), 3: (False, True), 4: (True, True)}

#: per-dataset settings of the official code (``fed_main``) [official code]; Office / PACS batch 32 [spec 3.4]
FEDPALL_PRESETS: dict[str, dict[str, Any]] = {
    "digits": {"beta_adv": 0.3, "mu_proto": 0.7, "local_epochs": 5, "server_epochs": 1, "batch_size": 64},
    "office": {"beta_adv": 0.1, "mu_proto": 0.1, "local_epochs": 10, "server_epochs": 3, "batch_size": 32},
    "pacs": {"beta_adv": 0.1, "mu_proto": 0.1, "local_epochs": 10, "server_epochs": 3, "batch_size": 32},
}


def fedpall_preset(name: str) -> dict[str, Any]:
    """The official per-dataset hyper-parameters (``digits``, ``office``, ``pacs``)."""
    if name not in FEDPALL_PRESETS:
        raise ConfigError(f"field 'preset': {name!r} is not one of {', '.join(FEDPALL_PRESETS)}")
    return dict(FEDPALL_PRESETS[name])


# ---------------------------------------------------------------------------------------------- networks
class Discriminator(nn.Sequential):
    """D (spec 3.3): feat -> hidden -> hidden -> K client logits; each hidden layer Linear (no bias) + BN + ReLU,
    the output Linear without bias (official ``Discriminator``)."""

    def __init__(self, feat_dim: int, n_clients: int, hidden: int = 512):
        super().__init__(nn.Linear(feat_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, n_clients, bias=False))


# ---------------------------------------------------------------------------------------------- loss terms
def adversarial_kl(d_logits: torch.Tensor) -> torch.Tensor:
    """``KL(Uniform(K) || softmax(D(r)))``, batch mean (``nn.KLDivLoss(reduction="batchmean")`` on D's
    log-probabilities against the uniform target, spec 3.4): 0 exactly when D outputs the uniform distribution,
    positive otherwise."""
    k = d_logits.shape[1]
    logp = torch.log_softmax(d_logits, dim=1)
    return (((1.0 / k) * (np.log(1.0 / k) - logp)).sum(1)).mean()


def proto_infonce(features: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor, valid: torch.Tensor,
                  temperature: float = 3.0, *, replicate_quirk: bool = False) -> torch.Tensor:
    """Prototype InfoNCE (spec 3.4): ``-log(exp(<r^, P^_y>/tau) / sum_c exp(<r^, P^_c>/tau))``, ``r^ = r/||r||``,
    over the valid classes, mean over the samples whose class has a prototype (0 when none has).

    ``replicate_quirk``: the official code's denominator uses the *unnormalised* prototypes (their norm is at most
    1, being means of unit vectors)."""
    keep = valid[labels]
    if not bool(keep.any()):
        return features.sum() * 0.0
    r = nn.functional.normalize(features[keep], dim=1)
    y = labels[keep]
    p = protos.to(r.dtype)
    p_hat = nn.functional.normalize(p, dim=1)
    pos = (r * p_hat[y]).sum(1) / temperature
    logits = (r @ (p if replicate_quirk else p_hat).T) / temperature
    logits = logits.masked_fill(~valid[None, :].to(r.device), float("-inf"))
    return (torch.logsumexp(logits, dim=1) - pos).mean()


# ---------------------------------------------------------------------------------------------- server mixing
def mixing_lambda(rng: np.random.Generator, low: float = 0.8, width: float = 0.2) -> float:
    """``round(low + width * U(0, 1), 2)`` (``uniform_left`` / ``uniform_right`` of the code): in [0.8, 1.0]."""
    return float(np.round(low + width * rng.random(), 2))


def feature_mask(dim: int, keep: float, rng: np.random.Generator, mode: str = "exact") -> torch.Tensor:
    """A 0/1 mask over ``dim`` feature dimensions: exactly ``round(keep * dim)`` ones at random positions
    (``"exact"``, [reconstruction]; the code's ``int()`` truncates) or i.i.d. Bernoulli(``keep``)."""
    if mode == "exact":
        mask = np.zeros(dim, dtype=np.float32)
        mask[rng.permutation(dim)[: int(round(keep * dim))]] = 1.0
    elif mode == "bernoulli":
        mask = (rng.random(dim) < keep).astype(np.float32)
    else:
        raise ConfigError(f"field 'mask_mode': {mode!r} is not 'exact' or 'bernoulli'")
    return torch.from_numpy(mask)


def mix_features(features: torch.Tensor, labels: torch.Tensor, protos: torch.Tensor, lam: float,
                 mask: torch.Tensor) -> torch.Tensor:
    """``(lam * r + (1 - lam) * P_y) * mask`` (spec 3.4 step 5)."""
    return (lam * features + (1.0 - lam) * protos[labels.long()].to(features.dtype)) * mask.to(features.dtype)


# ---------------------------------------------------------------------------------------------- packing
@dataclass(frozen=True)
class PackLayout:
    """The download ``[G state | D state | prototypes (C x d) | valid flags (C)]``; G and D as state vectors
    (parameters and BN running statistics, :func:`~polymodal.federated.algorithms.personal.get_state_vector`)."""

    g_size: int
    d_size: int
    n_classes: int
    feat_dim: int

    @property
    def total(self) -> int:
        return self.g_size + self.d_size + self.n_classes * self.feat_dim + self.n_classes

    def pack(self, g: torch.Tensor, d: torch.Tensor, protos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.cat([g.float(), d.float(), pack_prototypes(protos, valid)])

    def unpack(self, vec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if vec.numel() != self.total:
            raise ConfigError(f"FedPall vector has {vec.numel()} entries, the layout {self} needs {self.total}")
        g, d = vec[: self.g_size], vec[self.g_size: self.g_size + self.d_size]
        protos, valid = unpack_prototypes(vec[self.g_size + self.d_size:], self.n_classes, self.feat_dim)
        return g, d, protos, valid

    def as_list(self) -> list[int]:
        return [self.g_size, self.d_size, self.n_classes, self.feat_dim]


# ---------------------------------------------------------------------------------------------- client
class FedPallClient(PersonalModelState):
    """A FedPall client: a persistent personal model (``model.features`` = extractor, ``model.head`` = an
    :class:`~polymodal.federated.models.MLPHead` shaped like G) and its own data.

    :meth:`fit` reads from ``config`` (set by :class:`FedPall`): ``layout``, ``n_clients``, ``disc_hidden``,
    ``lr``, ``local_epochs``, ``batch_size``, ``beta_adv``, ``mu_proto``, ``proto_temperature``,
    ``head_momentum``, ``loss_component``, ``cls_component``, ``replicate_proto_norm_quirk``,
    ``extract_in_train_mode``, ``disc_batch_stats``. It uploads ``arrays = {"features", "labels"}`` and an empty
    vector: the server never sees inputs or extractor weights."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, init_seed: int = 0,
                 device: str = "cpu"):
        client_data(self, cid, x, y, x_test, y_test)
        self.device = device
        torch.manual_seed(init_seed)  # every client starts from the same model, as the code's deep copies
        self.model = model_fn().to(device)
        if not hasattr(self.model, "features") or not hasattr(self.model, "head"):
            raise ConfigError("FedPall needs a model with .features(x) and .head (a FeatureClassifier)")
        self.head_mask = state_mask(self.model.head, "no_bn")  # the head entries G overwrites
        self._disc: Discriminator | None = None
        self.last_losses: dict[str, float] = {}

    # -- pieces of a round ------------------------------------------------------------------------------------
    def receive_head(self, g_state: torch.Tensor, momentum: float = 1.0) -> None:
        """Head non-BN entries <- ``(1 - m) own + m G``; BN affine parameters and running statistics untouched."""
        own = get_state_vector(self.model.head)
        if g_state.numel() != own.numel():
            raise ConfigError(f"G has {g_state.numel()} state entries, the client's head {own.numel()}: give the "
                              "clients an MLPHead shaped like the server's G")
        new = own.clone()
        m = self.head_mask
        new[m] = (1.0 - momentum) * own[m] + momentum * g_state.float()[m]
        set_state_vector(self.model.head, new)

    def discriminator(self, d_state: torch.Tensor, n_clients: int, hidden: int, batch_stats: bool = True
                      ) -> Discriminator:
        """The downloaded D as a frozen module (no parameter requires a gradient). ``batch_stats``: its BatchNorm
        normalises with the client's batch statistics, as the code's deep copy of a D left in train mode does
        [official code]; False: D's running statistics (eval mode)."""
        feat_dim = int(self.model.feat_dim)
        if self._disc is None or self._disc[-1].out_features != n_clients or self._disc[0].out_features != hidden:
            self._disc = Discriminator(feat_dim, n_clients, hidden).to(self.device)
        set_state_vector(self._disc, d_state)
        for p in self._disc.parameters():
            p.requires_grad_(False)
        self._disc.train(batch_stats)
        return self._disc

    def _batches(self, rng: np.random.Generator, batch_size: int):
        order = rng.permutation(self.num_examples)
        for i in range(0, self.num_examples, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on one sample
                continue
            yield self.x[idx].to(self.device), self.y[idx].to(self.device)

    def train_local(self, config: dict[str, Any], rng: np.random.Generator, disc: nn.Module | None,
                    protos: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        """Local SGD on ``CE + beta * L_adv + mu * L_proto`` (terms per ``loss_component``); returns mean losses."""
        use_proto, use_adv = LOSS_COMPONENTS[int(config.get("loss_component", 4))]
        beta, mu = float(config.get("beta_adv", 0.3)), float(config.get("mu_proto", 0.7))
        tau = float(config.get("proto_temperature", 3.0))
        quirk = bool(config.get("replicate_proto_norm_quirk", False))
        use_proto = use_proto and mu != 0 and bool(valid.any())
        use_adv = use_adv and beta != 0 and disc is not None
        protos, valid = protos.to(self.device), valid.to(self.device)
        model = self.model
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", 0.01)))
        sums = {"loss": 0.0, "ce": 0.0, "adv": 0.0, "proto": 0.0}
        steps = 0
        for _ in range(int(config.get("local_epochs", 5))):
            for xb, yb in self._batches(rng, int(config.get("batch_size", 64))):
                feats = model.features(xb)
                ce = nn.functional.cross_entropy(model.head(feats), yb)
                loss = ce
                if use_adv:
                    adv = adversarial_kl(disc(feats))
                    loss = loss + beta * adv
                    sums["adv"] += float(adv.detach())
                if use_proto:
                    pr = proto_infonce(feats, yb, protos, valid, tau, replicate_quirk=quirk)
                    loss = loss + mu * pr
                    sums["proto"] += float(pr.detach())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sums["loss"] += float(loss.detach())
                sums["ce"] += float(ce.detach())
                steps += 1
        return {k: v / max(steps, 1) for k, v in sums.items()}

    def extract_features(self, train_mode: bool = False, batch_size: int = 64) -> torch.Tensor:
        """Features of the whole training set (eval mode; ``train_mode`` reproduces the code: BatchNorm uses
        and updates batch statistics)."""
        self.model.train(train_mode)
        with torch.no_grad():
            out = [self.model.features(self.x[i:i + batch_size].to(self.device)).cpu()
                   for i in range(0, self.num_examples, batch_size)]
        self.model.eval()
        return torch.cat(out).float()

    # -- the round ----------------------------------------------------------------------------------------------
    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        layout = PackLayout(*[int(v) for v in config["layout"]])
        g_state, d_state, protos, valid = layout.unpack(download)
        if bool(config.get("cls_component", True)):
            self.receive_head(g_state, float(config.get("head_momentum", 1.0)))
        use_adv = LOSS_COMPONENTS[int(config.get("loss_component", 4))][1]
        disc = self.discriminator(d_state, int(config["n_clients"]), int(config["disc_hidden"]),
                                  bool(config.get("disc_batch_stats", True))) if use_adv else None
        losses = self.train_local(config, rng, disc, protos, valid)
        self.last_losses = losses
        feats = self.extract_features(bool(config.get("extract_in_train_mode", False)),
                                      int(config.get("batch_size", 64)))
        return FitResult(torch.zeros(0), self.num_examples, losses,
                         arrays={"features": feats, "labels": self.y.clone()})

    # -- evaluation ---------------------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_labels(self.model, x, self.device)

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        """The personal model (as trained this round) on the own test split; ``params`` (G, D) are not used."""
        return score_test_split(self)


# ---------------------------------------------------------------------------------------------- server
def _sgd_step(params: list[nn.Parameter], bufs: list[torch.Tensor | None], lr: float, momentum: float,
              weight_decay: float) -> None:
    """``torch.optim.SGD`` (dampening 0, no Nesterov) with its momentum buffers held by the caller, so the
    server's optimiser state is plain tensors in ``state_dict`` (exact resume)."""
    with torch.no_grad():
        for i, p in enumerate(params):
            if p.grad is None:
                continue
            g = p.grad + weight_decay * p if weight_decay else p.grad
            if momentum:
                bufs[i] = g.clone() if bufs[i] is None else bufs[i].mul_(momentum).add_(g)
                g = bufs[i]
            p.add_(g, alpha=-lr)


class FedPall:
    """FedPall's server strategy (spec 3.4 steps 4-6, API of spec 3.7).

    The global vector is ``[G | D | prototypes | valid]`` (:class:`PackLayout`, from :meth:`initial_vector`);
    clients upload features + labels (``upload_like_download = False``). ``aggregate_fit`` computes the
    prototypes, mixes and masks each client's features, trains G then D. Server randomness (lambda, masks,
    shuffles) is seeded from ``(seed, round)``; the SGD momentum buffers of G and D persist across rounds (the
    code builds the two optimisers once) and are part of :meth:`state_dict`.

    ``preset``: "digits" / "office" / "pacs" fill ``beta_adv``, ``mu_proto``, ``local_epochs``,
    ``server_epochs`` and ``batch_size`` where they are None."""

    upload_like_download = False

    def __init__(self, beta_adv: float | None = None, mu_proto: float | None = None, proto_temperature: float = 3.0,
                 mix_low: float = 0.8, mask_keep: float = 0.9, server_epochs: int | None = None,
                 head_momentum: float = 1.0, loss_component: int = 4, cls_component: bool = True, *,
                 n_classes: int, feat_dim: int, n_clients: int, head_hidden: int = 512, disc_hidden: int = 512,
                 preset: str = "digits", mix_width: float = 0.2, mask_mode: str = "exact",
                 replicate_proto_norm_quirk: bool = False, extract_in_train_mode: bool = False,
                 disc_batch_stats: bool = True, lr: float = 0.01, local_epochs: int | None = None,
                 batch_size: int | None = None, server_lr: float = 0.01, server_momentum: float = 0.9,
                 server_weight_decay: float = 1e-5, server_batch_size: int = 64, seed: int = 0,
                 device: str = "cpu", name: str = "fedpall"):
        p = fedpall_preset(preset)
        self.beta_adv = p["beta_adv"] if beta_adv is None else float(beta_adv)
        self.mu_proto = p["mu_proto"] if mu_proto is None else float(mu_proto)
        self.server_epochs = p["server_epochs"] if server_epochs is None else int(server_epochs)
        local_epochs = p["local_epochs"] if local_epochs is None else int(local_epochs)
        batch_size = p["batch_size"] if batch_size is None else int(batch_size)
        checks = [("beta_adv", self.beta_adv >= 0), ("mu_proto", self.mu_proto >= 0),
                  ("proto_temperature", proto_temperature > 0), ("mix_low", 0 <= mix_low <= 1),
                  ("mix_width", 0 <= mix_width and mix_low + mix_width <= 1), ("mask_keep", 0 < mask_keep <= 1),
                  ("server_epochs", self.server_epochs >= 0), ("head_momentum", 0 <= head_momentum <= 1),
                  ("loss_component", loss_component in LOSS_COMPONENTS), ("n_classes", n_classes >= 2),
                  ("feat_dim", feat_dim >= 1), ("n_clients", n_clients >= 1), ("head_hidden", head_hidden >= 1),
                  ("disc_hidden", disc_hidden >= 1), ("lr", lr > 0), ("local_epochs", local_epochs >= 1),
                  ("batch_size", batch_size >= 2), ("server_lr", server_lr > 0),
                  ("server_momentum", 0 <= server_momentum < 1), ("server_weight_decay", server_weight_decay >= 0),
                  ("server_batch_size", server_batch_size >= 2)]
        bad = [n for n, ok in checks if not ok]
        if bad:
            raise ConfigError(f"FedPall: field {bad[0]!r} is out of range (see the FedPall docstring); "
                              f"loss_component must be one of {sorted(LOSS_COMPONENTS)}")
        if mask_mode not in ("exact", "bernoulli"):
            raise ConfigError(f"field 'mask_mode': {mask_mode!r} is not 'exact' or 'bernoulli'")
        self.name = name
        self.proto_temperature, self.mix_low, self.mix_width = float(proto_temperature), float(mix_low), float(mix_width)
        self.mask_keep, self.mask_mode = float(mask_keep), mask_mode
        self.head_momentum, self.loss_component, self.cls_component = float(head_momentum), int(loss_component), bool(
            cls_component)
        self.n_classes, self.feat_dim, self.n_clients = int(n_classes), int(feat_dim), int(n_clients)
        self.head_hidden, self.disc_hidden = int(head_hidden), int(disc_hidden)
        self.server_lr, self.server_momentum = float(server_lr), float(server_momentum)
        self.server_weight_decay, self.server_batch_size = float(server_weight_decay), int(server_batch_size)
        self.seed, self.device = int(seed), device
        torch.manual_seed(self.seed)  # G and D initialisation (seeded)
        self.G = MLPHead(self.feat_dim, self.n_classes, self.head_hidden).to(device)
        self.D = Discriminator(self.feat_dim, self.n_clients, self.disc_hidden).to(device)
        self.layout = PackLayout(get_state_vector(self.G).numel(), get_state_vector(self.D).numel(), self.n_classes,
                                 self.feat_dim)
        self._g_bufs: list[torch.Tensor | None] = [None] * len(list(self.G.parameters()))
        self._d_bufs: list[torch.Tensor | None] = [None] * len(list(self.D.parameters()))
        self.protos = torch.zeros(self.n_classes, self.feat_dim)
        self.valid = torch.zeros(self.n_classes, dtype=torch.bool)
        self.config = {"lr": float(lr), "local_epochs": local_epochs, "batch_size": batch_size,
                       "beta_adv": self.beta_adv, "mu_proto": self.mu_proto,
                       "proto_temperature": self.proto_temperature, "head_momentum": self.head_momentum,
                       "loss_component": self.loss_component, "cls_component": self.cls_component,
                       "replicate_proto_norm_quirk": bool(replicate_proto_norm_quirk),
                       "extract_in_train_mode": bool(extract_in_train_mode),
                       "disc_batch_stats": bool(disc_batch_stats), "n_clients": self.n_clients,
                       "disc_hidden": self.disc_hidden, "layout": self.layout.as_list()}

    # -- vectors ------------------------------------------------------------------------------------------------
    def initial_vector(self) -> torch.Tensor:
        """G and D as initialised (seeded by ``seed``), no prototypes yet."""
        return self.layout.pack(get_state_vector(self.G), get_state_vector(self.D),
                                torch.zeros(self.n_classes, self.feat_dim), torch.zeros(self.n_classes, dtype=torch.bool))

    def initialize(self, params: torch.Tensor) -> None:
        g, d, protos, valid = self.layout.unpack(params)
        set_state_vector(self.G, g)
        set_state_vector(self.D, d)
        self.protos, self.valid = protos.clone(), valid.clone()

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return params.clone(), dict(self.config)

    # -- server training ----------------------------------------------------------------------------------------
    def _train(self, net: nn.Module, bufs: list, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
               ) -> float:
        net.train()
        params = list(net.parameters())
        total, steps = 0.0, 0
        for _ in range(self.server_epochs):
            order = torch.from_numpy(rng.permutation(len(y)))
            for i in range(0, len(y), self.server_batch_size):
                idx = order[i:i + self.server_batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on one sample
                    continue
                for p in params:
                    p.grad = None
                loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                _sgd_step(params, bufs, self.server_lr, self.server_momentum, self.server_weight_decay)
                total += float(loss.detach())
                steps += 1
        return total / max(steps, 1)

    def mixed_features(self, rnd: int, results: list[tuple[int, FitResult]]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Prototypes from the uploads and every client's mixed, masked features (steps 4-5); returns
        ``(mixed, labels, client_ids, protos, valid, details)`` with ``details`` = per-client lambda and mask."""
        rng = np.random.default_rng([self.seed, rnd, 0xFA11])
        feats, labels = [], []
        for cid, r in results:
            if "features" not in r.arrays or "labels" not in r.arrays:
                raise ConfigError(f"client {cid}: a FedPall upload needs arrays 'features' and 'labels'")
            f, y = r.arrays["features"].float(), r.arrays["labels"].long()
            if f.ndim != 2 or f.shape[1] != self.feat_dim or len(f) != len(y):
                raise ConfigError(f"client {cid}: features {tuple(f.shape)} / labels {tuple(y.shape)} do not match "
                                  f"feat_dim {self.feat_dim}")
            if not 0 <= int(cid) < self.n_clients:
                raise ConfigError(f"client id {cid} is outside 0..{self.n_clients - 1} (D has {self.n_clients} outputs)")
            feats.append(f)
            labels.append(y)
        stats = [class_means(f, y, self.n_classes) for f, y in zip(feats, labels, strict=True)]
        protos, valid = average_prototypes(torch.stack([m for m, _ in stats]), torch.stack([c for _, c in stats]),
                                           normalise=True)
        mixed, ids, details = [], [], {"lambda": {}, "mask": {}}
        for (cid, _), f, y in zip(results, feats, labels, strict=True):
            lam = mixing_lambda(rng, self.mix_low, self.mix_width)
            mask = feature_mask(self.feat_dim, self.mask_keep, rng, self.mask_mode)
            mixed.append(mix_features(f, y, protos, lam, mask))
            ids.append(torch.full((len(y),), int(cid), dtype=torch.long))
            details["lambda"][int(cid)], details["mask"][int(cid)] = lam, mask
        return torch.cat(mixed), torch.cat(labels), torch.cat(ids), protos, valid, details

    def aggregate_fit(self, rnd, params, results):
        if not results:
            return params, {}
        self.initialize(params)
        x, y, ids, protos, valid, details = self.mixed_features(rnd, results)
        rng = np.random.default_rng([self.seed, rnd, 0x5E7])
        dev = self.device
        x, y, ids = x.to(dev), y.to(dev), ids.to(dev)
        g_loss = self._train(self.G, self._g_bufs, x, y, rng)
        d_loss = self._train(self.D, self._d_bufs, x, ids, rng)
        self.D.eval()
        with torch.no_grad():
            d_acc = float((self.D(x).argmax(1) == ids).float().mean())
        self.protos, self.valid = protos.cpu(), valid.cpu()
        new = self.layout.pack(get_state_vector(self.G), get_state_vector(self.D), self.protos, self.valid)
        return new, {"server_g_loss": g_loss, "server_d_loss": d_loss, "server_d_accuracy": d_acc,
                     "mix_lambda_mean": float(np.mean(list(details["lambda"].values()))),
                     "valid_prototypes": float(valid.sum())}

    # -- resume -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """G, D (state vectors), the global prototypes and the server SGD momentum buffers (plain tensors, no
        optimiser object): everything a resume needs, also without the engine's global vector."""
        def bufs(b):
            return [t.detach().cpu().clone() if t is not None else torch.zeros(0) for t in b]

        return {"G": get_state_vector(self.G), "D": get_state_vector(self.D), "prototypes": self.protos.clone(),
                "valid": self.valid.clone(), "g_momentum": bufs(self._g_bufs),
                "d_momentum": bufs(self._d_bufs), "has_g_momentum": [t is not None for t in self._g_bufs],
                "has_d_momentum": [t is not None for t in self._d_bufs]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        set_state_vector(self.G, state["G"])
        set_state_vector(self.D, state["D"])
        self.protos, self.valid = state["prototypes"].clone(), state["valid"].clone().bool()
        self._g_bufs = [t.to(self.device) if h else None for t, h in zip(state["g_momentum"], state["has_g_momentum"],
                                                                         strict=True)]
        self._d_bufs = [t.to(self.device) if h else None for t, h in zip(state["d_momentum"], state["has_d_momentum"],
                                                                         strict=True)]

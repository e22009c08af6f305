"""Clients that keep a personal model, and FedAvg over a shared subset of it (spec ``federated.md`` 1.4).

One client class covers the baselines that differ only in *which* entries of the model are shared:

- FedAvg (everything, BatchNorm running statistics included, as state-dict averaging does),
- FedBN (all but BatchNorm: affine parameters and running statistics stay local; Li et al., ICLR 2021),
- FedPer (all but the head; Arivazhagan et al. 2019),
- local-only / SingleSet (nothing).

Models travel as *state vectors*: the floating-point entries of ``model.state_dict()`` (parameters and BN running
statistics; ``num_batches_tracked`` stays local) in state-dict order. :class:`SharedFedAvg` downloads only the
shared entries and averages them by sample count; the client writes them into its persistent model, trains, and
uploads the shared entries again. The client's whole model is its personal state (``state_dict``), so it
survives checkpoints and Flower's per-message processes. Subclasses add loss terms through :meth:`extra_loss`
(FedProx's proximal term is built in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.core import FitResult, client_data, predict_labels, score_test_split

__all__ = ["PersonalClient", "PersonalModelState", "SharedFedAvg", "state_names", "get_state_vector", "set_state_vector", "state_mask",
           "SHARE_RULES"]


# ---------------------------------------------------------------------------------------------- state vectors
def _float_entries(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [(k, v) for k, v in model.state_dict().items() if v.is_floating_point()]


def state_names(model: nn.Module) -> list[str]:
    """Names of the floating-point state-dict entries, in state-vector order."""
    return [k for k, _ in _float_entries(model)]


def get_state_vector(model: nn.Module) -> torch.Tensor:
    """Parameters and BN running statistics as one flat float32 vector (state-dict order)."""
    return torch.cat([v.detach().reshape(-1).float().cpu() for _, v in _float_entries(model)])


def set_state_vector(model: nn.Module, vec: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """Write ``vec`` (a full state vector, or only the ``mask`` entries when ``vec`` is shorter) into ``model``."""
    entries = _float_entries(model)
    total = sum(v.numel() for _, v in entries)
    if mask is not None and vec.numel() != total:
        if int(mask.sum()) != vec.numel():
            raise ConfigError(f"shared vector has {vec.numel()} entries, the mask selects {int(mask.sum())}")
        full = get_state_vector(model)
        full[mask] = vec.float()
        vec = full
    elif vec.numel() != total:
        raise ConfigError(f"state vector has {vec.numel()} entries, the model has {total}")
    elif mask is not None:
        full = get_state_vector(model)
        full[mask] = vec.float()[mask]
        vec = full
    with torch.no_grad():
        i = 0
        for _, v in entries:
            n = v.numel()
            v.copy_(vec[i:i + n].view_as(v).to(v.dtype))
            i += n


def _is_bn(model: nn.Module) -> Callable[[str], bool]:
    bns = {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    return lambda key: key.rsplit(".", 1)[0] in bns


def _not(pred: Callable[[str], bool]) -> Callable[[str], bool]:
    return lambda key: not pred(key)


#: which state entries are shared, by baseline: ``rule(model) -> predicate(state key)``
SHARE_RULES: dict[str, Callable[[nn.Module], Callable[[str], bool]]] = {
    "all": lambda m: (lambda k: True),
    "no_bn": lambda m: _not(_is_bn(m)),
    "body": lambda m: (lambda k: not k.startswith("head.")),
    "head": lambda m: (lambda k: k.startswith("head.")),
    "none": lambda m: (lambda k: False),
}


def state_mask(model: nn.Module, share: str | Callable[[str], bool]) -> torch.Tensor:
    """Bool vector over the state vector: True where the entry is shared (``share``: a :data:`SHARE_RULES` name
    or a predicate over state keys)."""
    if isinstance(share, str):
        if share not in SHARE_RULES:
            raise ConfigError(f"share rule {share!r} is not one of {', '.join(SHARE_RULES)}")
        share = SHARE_RULES[share](model)
    return torch.cat([torch.full((v.numel(),), bool(share(k))) for k, v in _float_entries(model)])


# ---------------------------------------------------------------------------------------------- client
class PersonalModelState:
    """A client's persistent ``self.model`` as its personal state (the engine's ``state_dict`` hook): saved in
    the Simulator's checkpoints and, under Flower, in the SuperNode's ``context.state`` between messages."""

    model: nn.Module

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"model.{k}": v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        own = {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}
        if own:
            self.model.load_state_dict(own)


class PersonalClient(PersonalModelState):
    """A client with a persistent personal model; downloads and uploads only the ``share``-d entries.

    ``config`` keys read by :meth:`fit` (the strategy sets them): ``lr``, ``local_epochs``, ``batch_size``,
    ``momentum``, ``weight_decay``, ``prox_mu`` (proximal term on the shared parameters). Evaluation
    (:meth:`evaluate`) writes the global shared entries into the personal model and scores the client's own
    test split; it reports ``correct`` / ``total`` for the weighted personalised accuracy.
    """

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, share: str = "all",
                 init_seed: int = 0, device: str = "cpu"):
        client_data(self, cid, x, y, x_test, y_test)
        self.device = device
        torch.manual_seed(init_seed)  # every client starts from the same initial model (the server's)
        self.model = model_fn().to(device)
        self.mask = state_mask(self.model, share)

    # -- training ---------------------------------------------------------------------------------------------
    def batches(self, rng: np.random.Generator, batch_size: int):
        """One epoch of shuffled minibatches (the last one may be smaller)."""
        order = rng.permutation(self.num_examples)
        for i in range(0, self.num_examples, batch_size):
            idx = order[i:i + batch_size]
            if len(idx) < 2 and self._has_bn():  # BatchNorm cannot train on a single sample
                continue
            yield self.x[idx].to(self.device), self.y[idx].to(self.device)

    def _has_bn(self) -> bool:
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())

    def extra_loss(self, x: torch.Tensor, y: torch.Tensor, feats: torch.Tensor, logits: torch.Tensor,
                   config: dict[str, Any]) -> torch.Tensor | None:
        """Additional loss terms of a method (None: plain cross-entropy)."""
        return None

    def train_local(self, config: dict[str, Any], rng: np.random.Generator,
                    params: list[nn.Parameter] | None = None, epochs: int | None = None) -> float:
        """SGD over the local data for ``local_epochs``; returns the mean training loss."""
        model = self.model
        model.train()
        lr = float(config.get("lr", 0.01))
        opt = torch.optim.SGD(params if params is not None else model.parameters(), lr=lr,
                              momentum=float(config.get("momentum", 0.0)),
                              weight_decay=float(config.get("weight_decay", 0.0)))
        mu = float(config.get("prox_mu", 0.0))
        anchor = {n: p.detach().clone() for n, p in model.named_parameters()} if mu else None
        shared = set(k for k, m in zip(state_names(model), self._entry_shared(), strict=True) if m)
        bs = int(config.get("batch_size", 32))
        total, steps = 0.0, 0
        for _ in range(int(config.get("local_epochs", 1)) if epochs is None else epochs):
            for xb, yb in self.batches(rng, bs):
                opt.zero_grad(set_to_none=True)
                feats = model.features(xb) if hasattr(model, "features") else xb
                logits = model.head(feats) if hasattr(model, "head") else model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                extra = self.extra_loss(xb, yb, feats, logits, config)
                if extra is not None:
                    loss = loss + extra
                if anchor is not None:
                    loss = loss + 0.5 * mu * sum((p - anchor[n]).pow(2).sum()
                                                 for n, p in model.named_parameters() if n in shared)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
        return total / max(steps, 1)

    def _entry_shared(self) -> list[bool]:
        """Per state entry: is it shared (all of its elements share one rule)."""
        out, i = [], 0
        for _, v in _float_entries(self.model):
            out.append(bool(self.mask[i]) if v.numel() else False)
            i += v.numel()
        return out

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        if int(self.mask.sum()):
            set_state_vector(self.model, download, self.mask)
        loss = self.train_local(config, rng)
        return FitResult(get_state_vector(self.model)[self.mask], self.num_examples, {"loss": loss})

    # -- evaluation -------------------------------------------------------------------------------------------
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_labels(self.model, x, self.device)

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        """Accuracy of the personal model, with the global shared entries written in, on the own test split."""
        if self.x_test is not None and int(self.mask.sum()):
            set_state_vector(self.model, params, self.mask)
        return score_test_split(self)


# ---------------------------------------------------------------------------------------------- server
class SharedFedAvg:
    """FedAvg over the shared entries of the state vector (``mask``), weighted by sample counts; the unshared
    entries of the global vector are never sent and never change. ``config``: what clients train with."""

    upload_like_download = True

    def __init__(self, mask: torch.Tensor, *, name: str = "fedavg", **config: Any):
        self.mask = mask.bool()
        self.name = name
        self.config = {"lr": 0.01, "local_epochs": 1, "batch_size": 32, **config}

    def initialize(self, params: torch.Tensor) -> None:
        if params.numel() != self.mask.numel():
            raise ConfigError(f"{self.name}: initial vector has {params.numel()} entries, mask {self.mask.numel()}")

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return params[self.mask].clone(), dict(self.config)

    def aggregate_fit(self, rnd, params, results):
        new = params.clone()
        if int(self.mask.sum()) and results:
            w = torch.tensor([float(r.num_examples) for _, r in results])
            vecs = torch.stack([r.vector.float() for _, r in results])
            new[self.mask] = (w[:, None] * vecs).sum(0) / w.sum()
        return new, {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

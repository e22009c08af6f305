"""Personalised-FL baselines that need more than a share rule (spec ``federated.md`` 1.4): FedAvg + fine-tuning,
FedRep and Ditto.

FedAvg (personalised evaluation of the global model), FedPer (``share="body"``) and local-only (``share="none"``)
are :class:`~polymodal.federated.algorithms.personal.PersonalClient` + ``SharedFedAvg`` as they are. The defaults
below are the standard method definitions [reconstruction], not numbers from the CO-PFL paper:

- **FedAvg-FT**: FedAvg training; a client is evaluated with the global model fine-tuned for ``ft_epochs`` (1) on
  its own training data; the fine-tuned weights are thrown away, and the fine-tune is seeded by the evaluation's
  (seed, round, client), so the Simulator and Flower agree.
- **FedRep** (Collins et al., ICML 2021): shared body, personal head; each round the head is trained
  ``head_epochs`` (5) with the body frozen, then the body ``body_epochs`` (1) with the head frozen; only the body
  is averaged.
- **Ditto** (Li et al., ICML 2021): the global model trained as in FedAvg plus a personal model trained with
  CE + (lambda/2) ||theta_p - theta_g||^2 (lambda = ``ditto_lambda`` = 0.1) around the downloaded global model;
  the personal model is evaluated. As in PFLlib's Ditto, the personal step runs first, then the global one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms.personal import (
    PersonalClient,
    SharedFedAvg,
    get_state_vector,
    set_state_vector,
    state_mask,
)
from polymodal.federated.core import FitResult, predict_labels, score_test_split

__all__ = ["FedAvgFTClient", "FedRepClient", "DittoClient", "FedAvgFT", "FedRep", "Ditto", "body_mask", "FT_PHASE"]

#: the fourth key of the fine-tune generator ``np.random.default_rng([seed, round, cid, FT_PHASE])``
FT_PHASE = 0xF7


def _nonneg_int(value: Any, field: str) -> int:
    v = int(value)
    if v < 0:
        raise ConfigError(f"field '{field}': must be >= 0, got {value}")
    return v


# ---------------------------------------------------------------------------------------------- FedAvg-FT
class FedAvgFTClient(PersonalClient):
    """FedAvg client whose evaluation fine-tunes the global model on the local training data first.

    ``ft_epochs`` / ``ft_lr`` / ``ft_momentum`` / ``ft_batch_size``: the fine-tune (evaluation gets only
    ``{"round", "seed"}`` from the engine, so these are client settings). The client's state is unchanged by
    :meth:`evaluate`."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, init_seed: int = 0,
                 device: str = "cpu", ft_epochs: int = 1, ft_lr: float = 0.01, ft_momentum: float = 0.0,
                 ft_batch_size: int = 32):
        super().__init__(cid, model_fn, x, y, x_test=x_test, y_test=y_test, share="all", init_seed=init_seed,
                         device=device)
        self.ft_epochs = _nonneg_int(ft_epochs, "ft_epochs")
        if not ft_lr > 0:
            raise ConfigError(f"field 'ft_lr': must be > 0, got {ft_lr}")
        self.ft_config = {"lr": float(ft_lr), "momentum": float(ft_momentum), "batch_size": int(ft_batch_size)}

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        if self.x_test is None or self.y_test is None or len(self.y_test) == 0:
            return None
        config = config or {}
        saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            set_state_vector(self.model, params)
            rng = np.random.default_rng([int(config.get("seed", 0)), int(config.get("round", 0)), self.cid,
                                         FT_PHASE])
            if self.ft_epochs:
                self.train_local(self.ft_config, rng, epochs=self.ft_epochs)
            return score_test_split(self)
        finally:
            self.model.load_state_dict(saved)


class FedAvgFT(SharedFedAvg):
    """FedAvg over the whole state vector (the fine-tune happens in :class:`FedAvgFTClient`'s evaluation)."""

    def __init__(self, mask: torch.Tensor, *, name: str = "fedavg-ft", **config: Any):
        super().__init__(mask, name=name, **config)


# ---------------------------------------------------------------------------------------------- FedRep
class FedRepClient(PersonalClient):
    """FedRep client: downloads the body, trains the head ``head_epochs`` with the body frozen, then the body
    ``body_epochs`` with the head frozen (fit config keys), uploads the body; the head stays personal."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, init_seed: int = 0,
                 device: str = "cpu"):
        super().__init__(cid, model_fn, x, y, x_test=x_test, y_test=y_test, share="body", init_seed=init_seed,
                         device=device)
        if not hasattr(self.model, "head"):
            raise ConfigError(f"FedRep needs a model with a .head, got {type(self.model).__name__}")

    def _phase(self, config: dict[str, Any], rng: np.random.Generator, train_head: bool, epochs: int) -> float:
        head = [p for n, p in self.model.named_parameters() if n.startswith("head.")]
        body = [p for n, p in self.model.named_parameters() if not n.startswith("head.")]
        trained, frozen = (head, body) if train_head else (body, head)
        for p in frozen:
            p.requires_grad_(False)
        try:
            return self.train_local(config, rng, params=trained, epochs=epochs)
        finally:
            for p in frozen:
                p.requires_grad_(True)

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        if int(self.mask.sum()):
            set_state_vector(self.model, download, self.mask)
        head_epochs = _nonneg_int(config.get("head_epochs", 5), "head_epochs")
        body_epochs = _nonneg_int(config.get("body_epochs", 1), "body_epochs")
        losses = []
        if head_epochs:
            losses.append(self._phase(config, rng, True, head_epochs))
        if body_epochs:
            losses.append(self._phase(config, rng, False, body_epochs))
        return FitResult(get_state_vector(self.model)[self.mask], self.num_examples,
                         {"loss": losses[-1] if losses else 0.0})


class FedRep(SharedFedAvg):
    """FedAvg of the body (``mask`` = the shared body entries, e.g. ``state_mask(model, "body")``)."""

    def __init__(self, mask: torch.Tensor, *, head_epochs: int = 5, body_epochs: int = 1, name: str = "fedrep",
                 **config: Any):
        super().__init__(mask, name=name, head_epochs=_nonneg_int(head_epochs, "head_epochs"),
                         body_epochs=_nonneg_int(body_epochs, "body_epochs"), **config)


# ---------------------------------------------------------------------------------------------- Ditto
class DittoClient(PersonalClient):
    """Ditto client: ``self.model`` is the client's copy of the global model (trained as in FedAvg and
    uploaded), ``self.personal`` its personal model, trained ``personal_epochs`` with
    CE + (``ditto_lambda``/2) ||theta_p - theta_g||^2 around the downloaded global parameters; evaluation scores
    the personal model. Both models are the client's ``state_dict``."""

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 x_test: np.ndarray | None = None, y_test: np.ndarray | None = None, init_seed: int = 0,
                 device: str = "cpu"):
        super().__init__(cid, model_fn, x, y, x_test=x_test, y_test=y_test, share="all", init_seed=init_seed,
                         device=device)
        torch.manual_seed(init_seed)  # the personal model starts from the same initial model
        self.personal = model_fn().to(device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**super().state_dict(),
                **{f"personal.{k}": v.detach().cpu().clone() for k, v in self.personal.state_dict().items()}}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        own = {k[len("personal."):]: v for k, v in state.items() if k.startswith("personal.")}
        if own:
            self.personal.load_state_dict(own)

    def train_personal(self, config: dict[str, Any], rng: np.random.Generator) -> float:
        """SGD on CE + (lambda/2) ||theta_p - theta_g||^2, theta_g = the current global copy ``self.model``."""
        lam = float(config.get("ditto_lambda", 0.1))
        if lam < 0:
            raise ConfigError(f"field 'ditto_lambda': must be >= 0, got {lam}")
        anchor = [p.detach().clone() for p in self.model.parameters()]
        model = self.personal
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=float(config.get("lr", 0.01)),
                              momentum=float(config.get("momentum", 0.0)),
                              weight_decay=float(config.get("weight_decay", 0.0)))
        bs = int(config.get("batch_size", 32))
        total, steps = 0.0, 0
        for _ in range(_nonneg_int(config.get("personal_epochs", 1), "personal_epochs")):
            for xb, yb in self.batches(rng, bs):
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(xb), yb)
                prox = sum((p - a).pow(2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
                (loss + 0.5 * lam * prox).backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
        return total / max(steps, 1)

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        set_state_vector(self.model, download, self.mask)
        personal_loss = self.train_personal(config, rng)
        loss = self.train_local(config, rng)
        return FitResult(get_state_vector(self.model)[self.mask], self.num_examples,
                         {"loss": loss, "personal_loss": personal_loss})

    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        return score_test_split(self, lambda x: predict_labels(self.personal, x, self.device))


class Ditto(SharedFedAvg):
    """FedAvg of the global model; sends ``ditto_lambda`` and ``personal_epochs`` to the clients."""

    def __init__(self, mask: torch.Tensor, *, ditto_lambda: float = 0.1, personal_epochs: int = 1,
                 name: str = "ditto", **config: Any):
        if ditto_lambda < 0:
            raise ConfigError(f"field 'ditto_lambda': must be >= 0, got {ditto_lambda}")
        super().__init__(mask, name=name, ditto_lambda=float(ditto_lambda),
                         personal_epochs=_nonneg_int(personal_epochs, "personal_epochs"), **config)


def body_mask(model: nn.Module) -> torch.Tensor:
    """The state-vector entries FedPer / FedRep share (everything but ``head.*``)."""
    return state_mask(model, "body")

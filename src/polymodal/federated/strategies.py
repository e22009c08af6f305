"""Server strategies over flat parameter vectors: FedAvg, FedProx (spec 1.4), each with a pluggable (robust)
aggregator, so "FedAvg with coordinate median" is one line. Byrd-NAFL lives in ``algorithms/byrd_nafl.py``."""

from __future__ import annotations

from typing import Any

import torch

from polymodal.core.errors import ConfigError
from polymodal.federated.aggregators import make_aggregator


class FedAvg:
    """Clients train locally from the global parameters and upload their new parameters; the server aggregates
    them (``aggregator="mean"``: weighted by sample counts, McMahan et al. 2017; any robust rule otherwise)."""

    name = "fedavg"

    def __init__(self, *, lr: float = 0.05, local_epochs: int = 1, local_steps: int = 0, batch_size: int = 32,
                 aggregator: str = "mean", n_byzantine: int = 0, **agg_kwargs: Any):
        if lr <= 0 or batch_size < 1 or local_epochs < 0 or local_steps < 0 or (local_epochs == 0 == local_steps):
            raise ConfigError("FedAvg: lr > 0, batch_size >= 1 and local_epochs or local_steps >= 1 are required")
        self.config = {"mode": "params", "lr": lr, "local_epochs": local_epochs, "local_steps": local_steps,
                       "batch_size": batch_size}
        self.aggregator_name = aggregator
        self.aggregate = make_aggregator(aggregator, f=n_byzantine, **agg_kwargs)

    def initialize(self, params: torch.Tensor) -> None:
        pass

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return params, dict(self.config)

    def aggregate_fit(self, rnd, params, results):
        vecs = torch.stack([r.vector.float() for _, r in results])
        if self.aggregator_name == "mean":
            weights = torch.tensor([float(r.num_examples) for _, r in results])
            new = self.aggregate(vecs, weights=weights)
        else:
            new = self.aggregate(vecs)
        return new, {}

    def state_dict(self) -> dict[str, Any]:
        last = getattr(self.aggregate, "last", None)
        return {"aggregator_last": last.clone() if isinstance(last, torch.Tensor) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("aggregator_last") is not None and hasattr(self.aggregate, "last"):
            self.aggregate.last = state["aggregator_last"]


class FedProx(FedAvg):
    """FedAvg plus the local proximal term (mu/2)·||theta − theta_global||² (Li et al. 2020; mu = 0.01)."""

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01, **kw: Any):
        if mu < 0:
            raise ConfigError(f"FedProx: field 'mu' must be >= 0, got {mu}")
        super().__init__(**kw)
        self.config["prox_mu"] = mu

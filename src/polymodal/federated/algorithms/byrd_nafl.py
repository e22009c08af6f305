"""Byrd-NAFL: Nesterov-accelerated federated learning with Byzantine-resilient aggregation (spec 5.2).

arXiv 2511.02657 has no public code; this is the spec's reconstruction:

    y_t     = x_t + beta (x_t − x_{t−1})          look-ahead, broadcast y_t
    g_i     = minibatch gradient of f_i at y_t      honest workers (Byzantine ones: the attack)
    g_hat   = RobustAgg(g_1 .. g_n)
    x_{t+1} = y_t − eta g_hat

``momentum="nesterov"`` is the method; ``"heavy_ball"`` (gradient at x_t: v ← beta v − eta g_hat(x_t),
x ← x + v) and ``"none"`` (beta = 0: Byzantine-robust SGD) are its baselines with the same aggregator. Also
logged: ||g_hat − mean of the honest gradients||, the quantity the paper's relaxed resilience assumption bounds.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from polymodal.core.errors import ConfigError
from polymodal.federated.aggregators import make_aggregator

Momentum = Literal["nesterov", "heavy_ball", "none"]


class ByrdNAFL:
    """Server strategy; clients run in ``mode="gradient"`` (one minibatch gradient at the broadcast point)."""

    def __init__(self, *, aggregator: str = "geometric_median", beta: float = 0.9, lr: float = 0.05,
                 n_byzantine: int = 4, momentum: Momentum = "nesterov", batch_size: int = 32,
                 byzantine_ids: tuple[int, ...] = (), **agg_kwargs: Any):
        if momentum not in ("nesterov", "heavy_ball", "none"):
            raise ConfigError(f"field 'momentum': {momentum!r} is not one of nesterov, heavy_ball, none")
        if not 0.0 <= beta < 1.0:
            raise ConfigError(f"field 'beta': must be in [0, 1), got {beta}")
        if lr <= 0:
            raise ConfigError(f"field 'lr': must be > 0, got {lr}")
        self.momentum = momentum
        self.beta = 0.0 if momentum == "none" else float(beta)
        self.lr = float(lr)
        self.batch_size = int(batch_size)
        self.aggregator_name = aggregator
        self.aggregate = make_aggregator(aggregator, f=n_byzantine, **agg_kwargs)
        self.byzantine_ids = set(byzantine_ids)
        self.name = {"nesterov": "nafl", "heavy_ball": "heavy-ball", "none": "sgd"}[momentum]
        self.x: torch.Tensor | None = None
        self.x_prev: torch.Tensor | None = None  # Nesterov form
        self.v: torch.Tensor | None = None  # heavy-ball velocity

    def initialize(self, params: torch.Tensor) -> None:
        self.x = params.detach().clone().float()
        self.x_prev = self.x.clone()
        self.v = torch.zeros_like(self.x)

    def lookahead(self) -> torch.Tensor:
        assert self.x is not None and self.x_prev is not None
        if self.momentum == "nesterov":
            return self.x + self.beta * (self.x - self.x_prev)
        return self.x.clone()

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return self.lookahead(), {"mode": "gradient", "batch_size": self.batch_size}

    def aggregate_fit(self, rnd, params, results):
        grads = torch.stack([r.vector.float() for _, r in results])
        g_hat = self.aggregate(grads)
        honest = [r.vector.float() for c, r in results if c not in self.byzantine_ids]
        deviation = float(torch.linalg.vector_norm(g_hat - torch.stack(honest).mean(0))) if honest else float("nan")
        y = self.lookahead()
        if self.momentum == "heavy_ball":
            self.v = self.beta * self.v - self.lr * g_hat
            new = self.x + self.v
        else:  # Nesterov (beta > 0) or plain robust SGD (beta = 0): x_{t+1} = y_t − eta g_hat
            new = y - self.lr * g_hat
        self.x_prev, self.x = self.x, new
        return new.clone(), {"agg_deviation": deviation, "grad_norm": float(torch.linalg.vector_norm(g_hat))}

    def state_dict(self) -> dict[str, Any]:
        last = getattr(self.aggregate, "last", None)
        return {"x": self.x, "x_prev": self.x_prev, "v": self.v,
                "aggregator_last": last.clone() if isinstance(last, torch.Tensor) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x, self.x_prev, self.v = state["x"], state["x_prev"], state["v"]
        if state.get("aggregator_last") is not None and hasattr(self.aggregate, "last"):
            self.aggregate.last = state["aggregator_last"]

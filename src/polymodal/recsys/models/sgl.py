"""SGL (Wu et al., SIGIR 2021) as in RecBole-GNN ``sgl.py``, spec section 4.1.

Two augmented subgraphs are re-drawn every epoch (``pre_epoch``): ED (edge dropout, one subgraph for all
layers), ND (node dropout) or RW (a different edge-dropout subgraph per layer). BPR is SUMMED over the
batch on the main (full-graph) view, + reg·EmbLoss (not squared, as the code calls it). SSL: the batch's
users (duplicates kept) contrast view 1 against view 2 with ALL users as negatives, likewise the batch's
positive items against all items; InfoNCE summed. Three propagations per step.
"""

from __future__ import annotations

import numpy as np
import torch

from polymodal.recsys.models.base import info_nce_indexed
from polymodal.recsys.models.graph import normalized_adjacency, propagate
from polymodal.recsys.models.lightgcn import LightGCN

AUG_TYPES = ("ED", "ND", "RW")


class SGL(LightGCN):
    propagations_per_step = 3

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, train_users: np.ndarray,
                 train_items: np.ndarray, embedding_size: int = 64, n_layers: int = 3, reg_weight: float = 1e-4,
                 aug_type: str = "ED", drop_ratio: float = 0.2, ssl_tau: float = 0.2, ssl_weight: float = 0.01,
                 require_pow: bool = False):
        if aug_type not in AUG_TYPES:
            raise ValueError(f"aug_type must be one of {AUG_TYPES}, got {aug_type!r}")
        if not 0.0 <= drop_ratio < 1.0:
            raise ValueError(f"drop_ratio must be in [0, 1), got {drop_ratio}")
        super().__init__(n_users, n_items, adj, embedding_size, n_layers, reg_weight, require_pow)
        self.train_users = np.asarray(train_users, dtype=np.int64)
        self.train_items = np.asarray(train_items, dtype=np.int64)
        self.aug_type = aug_type
        self.drop_ratio = drop_ratio
        self.ssl_tau = ssl_tau
        self.ssl_weight = ssl_weight
        self.views: list[list[torch.Tensor]] | None = None  # per view: one adjacency per layer

    # ------------------------------------------------------------------ augmentation
    def _edge_dropout(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        n_edges = self.train_users.size
        keep = rng.choice(n_edges, size=int(np.floor((1.0 - self.drop_ratio) * n_edges)), replace=False)
        return self.train_users[keep], self.train_items[keep]

    def _node_dropout(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        drop_u = rng.choice(self.n_users, size=int(np.floor(self.drop_ratio * self.n_users)), replace=False)
        drop_i = rng.choice(self.n_items, size=int(np.floor(self.drop_ratio * self.n_items)), replace=False)
        keep = ~(np.isin(self.train_users, drop_u) | np.isin(self.train_items, drop_i))
        return self.train_users[keep], self.train_items[keep]

    def sample_subgraph(self, rng: np.random.Generator) -> list[torch.Tensor]:
        """One augmented view: a normalised adjacency per layer."""
        def build(edges: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
            adj = normalized_adjacency(*edges, self.n_users, self.n_items, zero_degree_as_one=True)
            return adj.to(self.user_embedding.weight.device)

        if self.aug_type == "RW":
            return [build(self._edge_dropout(rng)) for _ in range(self.n_layers)]
        edges = self._edge_dropout(rng) if self.aug_type == "ED" else self._node_dropout(rng)
        return [build(edges)] * self.n_layers

    def pre_epoch(self, rng: np.random.Generator) -> None:
        self.views = [self.sample_subgraph(rng), self.sample_subgraph(rng)]

    def view_embeddings(self, view: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        layers = [self.ego_embeddings()]
        for adj in view:
            layers.append(propagate(adj, layers[-1]))
        return self.readout(layers)

    # ------------------------------------------------------------------ loss
    def calculate_loss(self, users, pos, neg):
        if self.views is None:
            raise RuntimeError("SGL.pre_epoch(rng) must draw the augmented views before training")
        user_final, item_final = self.final_embeddings()
        loss = self.bpr_and_reg(user_final, item_final, users, pos, neg, bpr_reduction="sum")
        u1, i1 = self.view_embeddings(self.views[0])
        u2, i2 = self.view_embeddings(self.views[1])
        ssl_user = info_nce_indexed(u1[users], u2, users, self.ssl_tau, "sum")
        ssl_item = info_nce_indexed(i1[pos], i2, pos, self.ssl_tau, "sum")
        loss["ssl"] = self.ssl_weight * (ssl_user + ssl_item)
        return loss

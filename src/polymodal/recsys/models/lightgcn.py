"""LightGCN (He et al., SIGIR 2020) as in RecBole-GNN, and BPR-MF as LightGCN with zero layers.

Spec section 2: Xavier-uniform tables, X^(l) = Â X^(l−1), final = mean of layers ``layer_mean_from..L``
(0 for LightGCN; SimGCL/XSimGCL use 1), BPR (mean) + reg_weight·EmbLoss on layer-0 rows.
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.recsys.models.base import Recommender, bpr_loss, emb_loss
from polymodal.recsys.models.graph import propagate


class LightGCN(Recommender):
    propagations_per_step = 1

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor | None, embedding_size: int = 64,
                 n_layers: int = 2, reg_weight: float = 1e-4, require_pow: bool = False, layer_mean_from: int = 0):
        super().__init__(n_users, n_items)
        if n_layers > 0 and adj is None:
            raise ValueError("LightGCN with n_layers > 0 needs the normalised adjacency")
        if not 0 <= layer_mean_from <= max(n_layers, 0):
            raise ValueError(f"layer_mean_from must be in 0..{n_layers}")
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.require_pow = require_pow
        self.layer_mean_from = layer_mean_from
        self.user_embedding = nn.Embedding(n_users, embedding_size)
        self.item_embedding = nn.Embedding(n_items, embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.adj = adj

    def _apply(self, fn, recurse=True):  # move the (non-parameter) adjacency with .to(device)
        out = super()._apply(fn, recurse)
        if self.adj is not None:
            self.adj = fn(self.adj)
        return out

    def ego_embeddings(self) -> torch.Tensor:
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)

    def layer_embeddings(self, adj: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[X^(0), ..., X^(L)] over ``adj`` (the training graph by default)."""
        adj = self.adj if adj is None else adj
        layers = [self.ego_embeddings()]
        for _ in range(self.n_layers):
            layers.append(propagate(adj, layers[-1]))
        return layers

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[: self.n_users], x[self.n_users:]

    def readout(self, layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(torch.stack(layers[self.layer_mean_from:], dim=0).mean(dim=0))

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.readout(self.layer_embeddings())

    def bpr_and_reg(self, user_final: torch.Tensor, item_final: torch.Tensor, users: torch.Tensor,
                    pos: torch.Tensor, neg: torch.Tensor, *, bpr_reduction: str = "mean",
                    require_pow: bool | None = None) -> dict[str, torch.Tensor]:
        u = user_final[users]
        loss = {"bpr": bpr_loss((u * item_final[pos]).sum(-1), (u * item_final[neg]).sum(-1), bpr_reduction)}
        if self.reg_weight:
            rp = self.require_pow if require_pow is None else require_pow
            loss["reg"] = self.reg_weight * emb_loss(
                self.user_embedding(users), self.item_embedding(pos), self.item_embedding(neg), require_pow=rp)
        return loss

    def calculate_loss(self, users, pos, neg):
        user_final, item_final = self.final_embeddings()
        return self.bpr_and_reg(user_final, item_final, users, pos, neg)


class BPRMF(LightGCN):
    """BPR-MF: matrix factorisation with BPR, i.e. LightGCN with zero propagation layers."""

    propagations_per_step = 0

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor | None = None, embedding_size: int = 64,
                 reg_weight: float = 1e-4, require_pow: bool = False):
        super().__init__(n_users, n_items, None, embedding_size, 0, reg_weight, require_pow)

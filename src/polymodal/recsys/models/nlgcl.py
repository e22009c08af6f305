"""NLGCL — neighbour-layer graph contrastive learning (Xu et al., RecSys 2025), spec section 3.

What the official code computes (``Jinfeng-Xu/NLGCL``, ``nlgcl.py`` at HEAD): one LightGCN propagation;
for every layer pair (l−1, l), l = 1..L:
  user term: anchor = positive item at layer l, candidates = the batch's users at layer l−1;
  item term: anchor = user at layer l, candidates = the batch's positive items at layer l−1;
  InfoNCE with cosine/τ, in-batch negatives with duplicates, positive in the denominator, SUM over the batch;
  L_cl += α·user term + (1−α)·item term.
Total: BPR(mean) + reg_weight·EmbLoss(layer 0, not squared) + cl_reg·L_cl.
"""

from __future__ import annotations

import torch

from polymodal.recsys.models.base import info_nce
from polymodal.recsys.models.lightgcn import LightGCN


class NLGCL(LightGCN):
    propagations_per_step = 1

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, embedding_size: int = 64, n_layers: int = 2,
                 cl_temp: float = 0.1, alpha: float = 0.6, cl_reg: float = 5e-5, reg_weight: float = 1e-4,
                 cl_reduction: str = "sum", cl_layers: str = "all", require_pow: bool = False):
        if n_layers < 1:
            raise ValueError("NLGCL needs at least one propagation layer (n_layers >= 1)")
        if cl_reduction not in ("sum", "mean"):
            raise ValueError(f"cl_reduction must be 'sum' or 'mean', got {cl_reduction!r}")
        if cl_layers not in ("all", "last_only"):
            raise ValueError(f"cl_layers must be 'all' or 'last_only', got {cl_layers!r}")
        super().__init__(n_users, n_items, adj, embedding_size, n_layers, reg_weight, require_pow)
        self.cl_temp = cl_temp
        self.alpha = alpha
        self.cl_reg = cl_reg
        self.cl_reduction = cl_reduction
        self.cl_layers = cl_layers

    def neighbour_layer_loss(self, layers: list[torch.Tensor], users: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """L_cl of spec 3.2 over the given propagation layers (un-weighted by cl_reg)."""
        pairs = range(1, len(layers)) if self.cl_layers == "all" else [len(layers) - 1]
        total = layers[0].new_zeros(())
        for layer in pairs:
            u_cur, i_cur = self.split(layers[layer])
            u_prev, i_prev = self.split(layers[layer - 1])
            user_term = info_nce(i_cur[pos], u_prev[users], self.cl_temp, self.cl_reduction)
            item_term = info_nce(u_cur[users], i_prev[pos], self.cl_temp, self.cl_reduction)
            total = total + self.alpha * user_term + (1.0 - self.alpha) * item_term
        return total

    def calculate_loss(self, users, pos, neg):
        layers = self.layer_embeddings()
        user_final, item_final = self.readout(layers)
        loss = self.bpr_and_reg(user_final, item_final, users, pos, neg)
        if self.cl_reg:
            loss["cl"] = self.cl_reg * self.neighbour_layer_loss(layers, users, pos)
        return loss

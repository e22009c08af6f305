"""SimGCL (Yu et al., SIGIR 2022) as in RecBole-GNN ``simgcl.py``, spec section 4.2.

Perturbed propagation: after each layer e ← e + eps·sign(e)⊙r/‖r‖, r ~ U[0,1)^d per row. The layer mean
excludes layer 0 (clean, perturbed and evaluation forwards alike). Per step: a clean forward for BPR(mean)
+ reg, and two perturbed forwards whose batch users (duplicates kept) and batch positive items are
contrasted with in-batch InfoNCE, summed. Three propagations per step.

``cl_reduction="mean"`` is the authors' SELFRec reduction (InfoNCE averaged over the batch): with the
RecBole-GNN sum, λ = 0.5 weighs the contrastive term about B times more than the BPR term.
"""

from __future__ import annotations

import torch
from torch import nn

from polymodal.recsys.models.base import info_nce
from polymodal.recsys.models.graph import propagate
from polymodal.recsys.models.lightgcn import LightGCN


def perturb(e: torch.Tensor, eps: float) -> torch.Tensor:
    """e + eps·sign(e)⊙normalize(r), r ~ U[0,1): per-row noise of norm eps in e's orthant."""
    noise = nn.functional.normalize(torch.rand_like(e), dim=-1)
    return e + eps * torch.sign(e) * noise


class SimGCL(LightGCN):
    propagations_per_step = 3

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, embedding_size: int = 64, n_layers: int = 2,
                 reg_weight: float = 1e-4, cl_weight: float = 0.5, eps: float = 0.1, cl_temp: float = 0.2,
                 require_pow: bool = False, cl_reduction: str = "sum"):
        if cl_reduction not in ("sum", "mean"):
            raise ValueError(f"cl_reduction must be 'sum' (RecBole-GNN) or 'mean' (SELFRec), got {cl_reduction!r}")
        super().__init__(n_users, n_items, adj, embedding_size, n_layers, reg_weight, require_pow, layer_mean_from=1)
        self.cl_weight = cl_weight
        self.eps = eps
        self.cl_temp = cl_temp
        self.cl_reduction = cl_reduction

    def perturbed_layers(self) -> list[torch.Tensor]:
        layers = [self.ego_embeddings()]
        for _ in range(self.n_layers):
            layers.append(perturb(propagate(self.adj, layers[-1]), self.eps))
        return layers

    def calculate_loss(self, users, pos, neg):
        user_final, item_final = self.final_embeddings()
        loss = self.bpr_and_reg(user_final, item_final, users, pos, neg)
        u1, i1 = self.readout(self.perturbed_layers())
        u2, i2 = self.readout(self.perturbed_layers())
        r = self.cl_reduction
        loss["cl"] = self.cl_weight * (info_nce(u1[users], u2[users], self.cl_temp, r)
                                       + info_nce(i1[pos], i2[pos], self.cl_temp, r))
        return loss

"""XSimGCL (Yu et al., TKDE 2023) as in RecBole-GNN ``xsimgcl.py``, spec section 4.3.

One perturbed forward per step: BPR(mean) on its final (layer 1..L mean) embeddings, reg·EmbLoss
(squared) on layer-0 rows, and InfoNCE between the final embeddings and the perturbed layer ``layer_cl``
over the batch's unique users and unique positive items (in-batch negatives, mean). Evaluation uses the
clean forward.
"""

from __future__ import annotations

import torch

from polymodal.recsys.models.base import info_nce
from polymodal.recsys.models.graph import propagate
from polymodal.recsys.models.lightgcn import LightGCN
from polymodal.recsys.models.simgcl import perturb


class XSimGCL(LightGCN):
    propagations_per_step = 1

    def __init__(self, n_users: int, n_items: int, adj: torch.Tensor, embedding_size: int = 64, n_layers: int = 2,
                 reg_weight: float = 1e-4, cl_weight: float = 0.1, eps: float = 0.2, cl_temp: float = 0.2,
                 layer_cl: int = 1, require_pow: bool = True):
        if not 1 <= layer_cl <= n_layers:
            raise ValueError(f"layer_cl must be in 1..{n_layers}, got {layer_cl}")
        super().__init__(n_users, n_items, adj, embedding_size, n_layers, reg_weight, require_pow, layer_mean_from=1)
        self.cl_weight = cl_weight
        self.eps = eps
        self.cl_temp = cl_temp
        self.layer_cl = layer_cl

    def calculate_loss(self, users, pos, neg):
        layers = [self.ego_embeddings()]
        for _ in range(self.n_layers):
            layers.append(perturb(propagate(self.adj, layers[-1]), self.eps))
        user_final, item_final = self.readout(layers)
        user_cl, item_cl = self.split(layers[self.layer_cl])
        loss = self.bpr_and_reg(user_final, item_final, users, pos, neg)
        uu, ui = torch.unique(users), torch.unique(pos)
        loss["cl"] = self.cl_weight * (info_nce(user_final[uu], user_cl[uu], self.cl_temp, "mean")
                                       + info_nce(item_final[ui], item_cl[ui], self.cl_temp, "mean"))
        return loss

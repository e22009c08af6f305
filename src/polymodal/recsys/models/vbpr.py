"""VBPR (He & McAuley, AAAI 2016) in MMRec's "recommended version", spec section 5.1.

- User table 2d wide (``user_embedding``, Xavier-uniform), item ID table d wide (``item_embedding``,
  Xavier-uniform) [official code, MMRec ``vbpr.py``].
- ``item_linear``: Linear(concat of the item features → d). The concatenation order is ``modality_order``:
  "text" first, then "image" (MMRec concatenates ``(t_feat, v_feat)``), then any other modality in sorted name
  order [official code for text/image; the rest is our extension]. MMRec applies ``xavier_normal_initialization``
  to the linear layer (Xavier-normal weight, zero bias); so do we [official code].
- Item vector = [item ID row | item_linear(features)]; score = ⟨user, item⟩.
- L = BPR (mean, RecBole form −log(1e−10 + σ(·))) + reg_weight · EmbLoss(require_pow=False) on the batch's final
  user / positive / negative vectors (spec 5.1).
- Item features are fixed inputs, stored as one non-persistent float32 buffer (they move with ``.to(device)`` but
  are not written into checkpoints: they come from the data, like the constructor's other arguments).
- SG-URInit contract (spec 6.3 step 5, ``user_init.py``): two targets over the 2d-wide user table, "id"
  (columns 0:d) and "feature" (columns d:2d), both projected with the model's own ``item_linear``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.recsys.models.base import Recommender, bpr_loss, emb_loss, item_feature_matrix
from polymodal.recsys.models.user_init import UserInitTarget, xavier_uniform_std

#: MMRec's concatenation order for VBPR's raw item features; other modalities follow in sorted order
MMREC_ORDER = ("text", "image")


def modality_order(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` in VBPR's fixed order: "text", "image", then the rest sorted."""
    names = list(dict.fromkeys(names))
    return tuple(m for m in MMREC_ORDER if m in names) + tuple(sorted(m for m in names if m not in MMREC_ORDER))


class VBPR(Recommender):
    propagations_per_step = 0

    def __init__(self, n_users: int, n_items: int, item_features: Mapping[str, np.ndarray],
                 embedding_size: int = 64, reg_weight: float = 1e-4, modalities: Sequence[str] | None = None):
        super().__init__(n_users, n_items)
        names = list(item_features) if modalities is None else list(modalities)
        missing = [m for m in names if m not in item_features]
        if missing:
            raise ConfigError(f"VBPR: modalities {missing} not in item_features {sorted(item_features)}")
        if not names:
            raise ConfigError("VBPR needs at least one item-feature modality (item_features is empty)")
        self.modality_order = modality_order(names)
        feats = []
        for m in self.modality_order:
            feats.append(item_feature_matrix(item_features, m, n_items, "VBPR"))
        self.feature_dims = {m: int(x.shape[1]) for m, x in zip(self.modality_order, feats, strict=True)}
        self.embedding_size = embedding_size
        self.reg_weight = reg_weight
        self.register_buffer("item_raw_features", torch.tensor(np.concatenate(feats, axis=1)), persistent=False)
        self.user_embedding = nn.Embedding(n_users, 2 * embedding_size)
        self.item_embedding = nn.Embedding(n_items, embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.item_linear = nn.Linear(self.item_raw_features.shape[1], embedding_size)
        nn.init.xavier_normal_(self.item_linear.weight)
        nn.init.zeros_(self.item_linear.bias)

    def item_vectors(self) -> torch.Tensor:
        """(n_items, 2d): [item ID row | item_linear(features)]."""
        return torch.cat([self.item_embedding.weight, self.item_linear(self.item_raw_features)], dim=1)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_vectors()

    def calculate_loss(self, users, pos, neg):
        u = self.user_embedding(users)
        p = torch.cat([self.item_embedding(pos), self.item_linear(self.item_raw_features[pos])], dim=1)
        n = torch.cat([self.item_embedding(neg), self.item_linear(self.item_raw_features[neg])], dim=1)
        loss = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            loss["reg"] = self.reg_weight * emb_loss(u, p, n)
        return loss

    # ------------------------------------------------------------------ SG-URInit contract
    def project_features(self, h: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """item_linear(concat(h_m in ``modality_order``)): maps per-modality feature rows into the d-wide space."""
        missing = [m for m in self.modality_order if m not in h]
        if missing:
            raise ConfigError(f"VBPR projection needs modalities {list(self.modality_order)}; missing {missing}")
        return self.item_linear(torch.cat([h[m] for m in self.modality_order], dim=1))

    def user_init_targets(self) -> list[UserInitTarget]:
        d = self.embedding_size
        std = xavier_uniform_std(self.n_users, 2 * d)
        table = self.user_embedding.weight
        return [UserInitTarget("id", table, slice(0, d), self.project_features, std),
                UserInitTarget("feature", table, slice(d, 2 * d), self.project_features, std)]

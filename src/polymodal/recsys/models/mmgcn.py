"""MMGCN (Wei et al., "Multi-modal Graph Convolution Network for Personalized Recommendation of Micro-video",
ACM MM 2019), following the computation of the public MMRec implementation (``enoche/MMRec``,
``src/models/mmgcn.py``; config ``src/configs/model/MMGCN.yaml``). Details and departures:
``docs/methods/mmrec-backbones.md``.

Per modality m, a separate graph network runs over the user-item graph of training edges (both directions,
no self loops):

- node input x = L2-row-normalise([P_m ; T_m(X_m)]): P_m is the modality's user *preference* table, T_m the
  modality's feature transform (MMRec: Linear(d_m → 256) for the visual modality, identity for text);
- each layer l (MMRec hard-codes three): h = lrelu(mean_{j ∈ N(v)} (x W_l)_j) (paper eq. 1, PyG
  ``aggr='mean'``),
  x̂ = lrelu(Linear_l(x)) + E_id (eq. 5, ``has_id``), x = lrelu(G_l([h ; x̂])) (concatenation: MMRec's
  ``concate = 'False'`` is a non-empty string, hence true);
- representation = mean over modalities of the last layer; score = ⟨user, item⟩.

Loss: BPR (mean of −log σ(s⁺ − s⁻)) + reg_weight · [mean of squared ID rows of the batch's (user, item) pairs
+ mean of squared entries of the preference tables of the modalities that have a feature MLP] (MMRec
regularises the visual preference table only).

Mean aggregation D⁻¹A·y is computed as D^{-1/2}·(Â·(D^{1/2}·y)) with the symmetric Â, so it goes through
:func:`~polymodal.recsys.models.graph.propagate` (fast symmetric backward); zero-degree nodes get zero
messages (PyG's mean of nothing), so cold items still score through their ID and feature paths.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.recsys.models.base import Recommender, item_feature_matrix
from polymodal.recsys.models.graph import normalized_adjacency, propagate
from polymodal.recsys.models.user_init import UserInitTarget, xavier_uniform_std

#: modality names that get MMRec's visual branch (a 256-d feature MLP) when ``latent_dims`` is not given
VISUAL_NAMES = frozenset({"image", "images", "visual", "vision", "v", "img"})
MMREC_VISUAL_LATENT = 256


def _check_modality_names(features: Mapping[str, np.ndarray]) -> None:
    if not features:
        raise ConfigError("field 'item_features': the model needs at least one modality")
    for m in features:
        if not m or "." in m:
            raise ConfigError(f"field 'item_features': modality name {m!r} must be non-empty and "
                              "contain no '.'")


def _table(n_rows: int, n_cols: int, std: float, trainable: bool) -> torch.Tensor:
    t = torch.randn(n_rows, n_cols) * std
    return nn.Parameter(t) if trainable else t


class ModalityGCN(nn.Module):
    """MMRec's per-modality ``GCN``: preference table, optional feature MLP and ``n_layers`` graph layers."""

    def __init__(self, n_users: int, dim_feat: int, dim_id: int, dim_latent: int | None, n_layers: int,
                 concat: bool, has_id: bool, trainable_preference: bool):
        super().__init__()
        self.concat, self.has_id = concat, has_id
        self.mlp = nn.Linear(dim_feat, dim_latent) if dim_latent else None  # PyTorch default init, as MMRec
        dim_in = dim_latent or dim_feat
        # MMRec: xavier_normal_ on an (n_users, dim_in) tensor
        pref = _table(n_users, dim_in, xavier_uniform_std(n_users, dim_in), trainable_preference)
        if trainable_preference:
            self.preference = pref
        else:
            self.register_buffer("preference", pref)
        self.conv = nn.ParameterList()
        self.linear = nn.ModuleList()
        self.combine = nn.ModuleList()
        for layer in range(n_layers):
            d = dim_in if layer == 0 else dim_id
            w = nn.Parameter(torch.empty(d, d))
            nn.init.xavier_normal_(w)
            self.conv.append(w)
            lin = nn.Linear(d, dim_id)
            nn.init.xavier_normal_(lin.weight)
            self.linear.append(lin)
            comb = nn.Linear(d + dim_id, dim_id) if concat else nn.Linear(d, dim_id)
            if layer == 0:  # MMRec re-initialises only g_layer1; g_layer2/3 keep PyTorch's default
                nn.init.xavier_normal_(comb.weight)
            self.combine.append(comb)

    def transform(self, features: torch.Tensor) -> torch.Tensor:
        """T_m: what MMGCN applies to raw item features of this modality (the MLP, or identity)."""
        return self.mlp(features) if self.mlp is not None else features

    def forward(self, features: torch.Tensor, id_embedding: torch.Tensor, mean_aggregate) -> torch.Tensor:
        x = F.normalize(torch.cat([self.preference, self.transform(features)], dim=0), dim=1)
        for w, lin, comb in zip(self.conv, self.linear, self.combine, strict=True):
            h = F.leaky_relu(mean_aggregate(x @ w))
            x_hat = F.leaky_relu(lin(x))
            if self.has_id:
                x_hat = x_hat + id_embedding
            x = F.leaky_relu(comb(torch.cat([h, x_hat], dim=1)) if self.concat else comb(h) + x_hat)
        return x


class MMGCN(Recommender):
    """MMGCN as in MMRec (see the module docstring).

    ``latent_dims``: per modality, the width of its feature MLP, or ``None`` for no MLP (the preference table
    is then as wide as the raw features). Default: MMRec's split, 256 for a visual modality (names in
    ``VISUAL_NAMES``), none for the others. ``n_layers`` defaults to 3, the number MMRec's code runs (its yaml
    says ``n_layers: 2``, which the code ignores). ``reg_weight``: MMRec grid-searches {0, 1e-5 … 0.1};
    1e-4 here. ``mmrec_frozen_tables=True`` reproduces MMRec's untrained ID/preference tensors (they are not
    registered as parameters there, so Adam never updates them); the default trains them.
    """

    def __init__(self, n_users: int, n_items: int, item_features: Mapping[str, np.ndarray],
                 train_users: np.ndarray, train_items: np.ndarray, embedding_size: int = 64,
                 n_layers: int = 3, reg_weight: float = 1e-4,
                 latent_dims: Mapping[str, int | None] | None = None, concat: bool = True,
                 has_id: bool = True, mmrec_frozen_tables: bool = False):
        super().__init__(n_users, n_items)
        _check_modality_names(item_features)
        if n_layers < 1:
            raise ConfigError(f"field 'n_layers': must be >= 1, got {n_layers}")
        if latent_dims is None:
            latent_dims = {m: MMREC_VISUAL_LATENT if m.lower() in VISUAL_NAMES else None
                           for m in item_features}
        unknown = set(latent_dims) - set(item_features)
        if unknown:
            raise ConfigError(f"field 'latent_dims': {sorted(unknown)} are not modalities of item_features")
        self.embedding_size = embedding_size
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.modalities = list(item_features)
        self.propagations_per_step = n_layers * len(self.modalities)
        trainable = not mmrec_frozen_tables

        for m, x in item_features.items():
            x = item_feature_matrix(item_features, m, n_items, "MMGCN")
            self.register_buffer(f"feat_{m}", torch.from_numpy(x.copy()), persistent=False)

        # MMRec: one xavier_normal_ (n_users + n_items, d) ID table; split into user / item rows here
        std = xavier_uniform_std(n_users + n_items, embedding_size)
        user = _table(n_users, embedding_size, std, trainable)
        item = _table(n_items, embedding_size, std, trainable)
        if trainable:
            self.user_embedding, self.item_embedding = user, item
        else:
            self.register_buffer("user_embedding", user)
            self.register_buffer("item_embedding", item)
        self.gcn = nn.ModuleDict({
            m: ModalityGCN(n_users, item_features[m].shape[1], embedding_size, latent_dims.get(m), n_layers,
                           concat, has_id, trainable)
            for m in self.modalities})

        # D^{-1} A y = D^{-1/2} Â D^{1/2} y over the symmetric bipartite graph of training edges
        self.adj = normalized_adjacency(train_users, train_items, n_users, n_items)
        # neighbours per node (duplicate edges collapsed)
        deg = torch.diff(self.adj.crow_indices()).to(torch.float32)
        self.register_buffer("deg_sqrt", deg.sqrt().unsqueeze(1), persistent=False)
        self.register_buffer("deg_inv_sqrt", torch.where(deg > 0, deg.clamp(min=1).rsqrt(), 0.0).unsqueeze(1),
                             persistent=False)

    def _apply(self, fn, recurse=True):  # move the (non-parameter) adjacency with .to(device)
        out = super()._apply(fn, recurse)
        self.adj = fn(self.adj)
        return out

    def features(self, m: str) -> torch.Tensor:
        return getattr(self, f"feat_{m}")

    def mean_aggregate(self, y: torch.Tensor) -> torch.Tensor:
        """Mean over graph neighbours (PyG ``aggr='mean'``): D⁻¹A·y; zero for isolated nodes."""
        return self.deg_inv_sqrt * propagate(self.adj, self.deg_sqrt * y)

    def id_embedding(self) -> torch.Tensor:
        return torch.cat([self.user_embedding, self.item_embedding], dim=0)

    def modality_representations(self) -> dict[str, torch.Tensor]:
        ids = self.id_embedding()
        return {m: self.gcn[m](self.features(m), ids, self.mean_aggregate) for m in self.modalities}

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        reps = self.modality_representations()
        x = torch.stack(list(reps.values()), dim=0).mean(dim=0)
        return x[: self.n_users], x[self.n_users:]

    def calculate_loss(self, users, pos, neg):
        u_all, i_all = self.final_embeddings()
        u = u_all[users]
        diff = (u * i_all[pos]).sum(-1) - (u * i_all[neg]).sum(-1)
        loss = {"bpr": -F.logsigmoid(diff).mean()}
        if self.reg_weight:
            b, d = users.shape[0], self.embedding_size
            # MMRec: mean over the (2B, d) entries of id[user]^2 + id[item]^2, users repeated for pos and neg
            reg = (2.0 * self.user_embedding[users].pow(2).sum() + self.item_embedding[pos].pow(2).sum()
                   + self.item_embedding[neg].pow(2).sum()) / (2 * b * d)
            for g in self.gcn.values():
                if g.mlp is not None:  # MMRec: only v_gcn (the modality with a feature MLP)
                    reg = reg + g.preference.pow(2).mean()
            loss["reg"] = self.reg_weight * reg
        return loss

    def user_init_targets(self) -> list[UserInitTarget]:
        """One target per modality: the preference table P_m, projected through that modality's own T_m."""
        targets = []
        for m in self.modalities:
            g = self.gcn[m]

            def project(feats: dict[str, torch.Tensor], g: ModalityGCN = g, m: str = m) -> torch.Tensor:
                return g.transform(feats[m])

            n, w = g.preference.shape
            targets.append(UserInitTarget(f"gcn.{m}.preference", g.preference, slice(None), project,
                                          xavier_uniform_std(n, w)))
        return targets

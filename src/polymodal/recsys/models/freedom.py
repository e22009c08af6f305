"""FREEDOM (Zhou & Shen, ACM MM 2023) as in MMRec ``freedom.py``, spec section 5.2.

- **Frozen item–item graph** (``knn_graph``), built once from the raw features: per modality the cosine similarity
  of the feature rows, top-k per row (k = ``knn_k``, self included), binary, values r_i^{-1/2} r_j^{-1/2} with
  r = row sum + 1e-7 [official code]. S = w_img·S_image + (1 − w_img)·S_text (w_img = ``mm_image_weight``); with one
  modality S is that modality's graph. Zero feature rows get similarity 0 instead of MMRec's NaN.
- **Degree-sensitive edge pruning** (``pre_epoch``): training edge (u, i) has weight 1/√(d_u d_i); ⌊(1 − dropout)|E|⌋
  edges are drawn without replacement with probability ∝ weight (successive sampling, the distribution of MMRec's
  ``torch.multinomial(..., replacement=False)``; drawn here with exponential keys E_e / w_e and the given numpy rng);
  the kept bipartite graph is normalised D^{-1/2} A D^{-1/2} and used for training. Evaluation (``not
  self.training``) uses the full normalised training graph [official code].
- Forward: h = S^{n_mm_layers}·E_item_id; LightGCN (spec 2) over the user–item graph, n_ui_layers layers, mean of
  layers 0..L; user = LightGCN user row; item = LightGCN item row + h. A cold item (no training edge) keeps its
  layer-0 share of the LightGCN mean and gets h from its warm kNN neighbours; no degree is ever inverted at zero.
- Modality projections T_m = Linear(d_m → feat_embed_dim) on **trainable** feature tables initialised from the
  features (``nn.Embedding.from_pretrained(..., freeze=False)``).
- L = BPR(u, i⁺, i⁻) + reg_weight·Σ_m BPR(u, T_m(x_m,i⁺), T_m(x_m,i⁻)), u the LightGCN user rows; every BPR is
  −mean log σ(s⁺ − s⁻) (``F.logsigmoid``, as MMRec's FREEDOM writes it) [official code].
- Defaults (spec 5.2): embedding_size 64, feat_embed_dim 64, knn_k 10, mm_image_weight 0.1, n_mm_layers 1,
  n_ui_layers 2, dropout 0.8 (grid {0.8, 0.9}). ``reg_weight`` = 1e-4, our choice from MMRec's grid
  {0, 1e-5, 1e-4, 1e-3}: the middle of the grid, and non-zero so the modality BPR terms (hence T_m and the feature
  tables) are trained at all [our choice; MMRec selects it per data set].

S is not symmetric after top-k (j may be among i's neighbours but not vice versa), so it must not go through
``graph.propagate`` (whose backward multiplies by the same matrix, valid only for symmetric Â). ``_ItemGraphMM``
calls ``torch.sparse.mm`` directly, with a precomputed CSR Sᵀ for the backward pass (torch's generic CSR backward
transposes on every step, which is slow on CPU).

SG-URInit contract (spec 6.3 step 5): one target over ``user_embedding`` whose projection is the mean over
modalities of T_m(h_m) (FREEDOM's own map from item-feature space into the 64-d user space).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.recsys.models.base import Recommender, item_feature_matrix
from polymodal.recsys.models.graph import normalized_adjacency, propagate, scipy_to_torch_csr
from polymodal.recsys.models.user_init import UserInitTarget, xavier_uniform_std


def knn_graph(features: np.ndarray, k: int, chunk_rows: int = 1024) -> sp.csr_matrix:
    """Normalised binary top-k cosine graph (|I|×|I|, exactly min(k, |I|) non-zeros per row, self included).

    Value of (i, j) = r_i^{-1/2} r_j^{-1/2}, r = row sum + 1e-7 (MMRec normalises with row sums on both sides).
    Similarities are computed ``chunk_rows`` rows at a time, so memory stays O(chunk·|I|).
    """
    x = F.normalize(torch.as_tensor(np.asarray(features, dtype=np.float32)), dim=1)  # zero rows stay 0, no NaN
    n = x.shape[0]
    k = min(int(k), n)
    if k < 1:
        raise ConfigError(f"knn_k must be >= 1, got {k}")
    cols = torch.empty(n, k, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, n, chunk_rows):
            sim = x[start:start + chunk_rows] @ x.T
            cols[start:start + chunk_rows] = torch.topk(sim, k, dim=1).indices
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(n * k), (rows, cols.numpy().ravel())), shape=(n, n))
    r_inv_sqrt = (np.asarray(a.sum(axis=1)).ravel() + 1e-7) ** -0.5
    s = sp.diags(r_inv_sqrt) @ a @ sp.diags(r_inv_sqrt)
    return s.astype(np.float32).tocsr()


class _ItemGraphMM(torch.autograd.Function):
    """S·x for a non-symmetric sparse S; the gradient w.r.t. x is Sᵀ·g with a precomputed CSR Sᵀ."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, s_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.s_t = s_t
        return torch.sparse.mm(s, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.s_t, grad)


class FREEDOM(Recommender):
    propagations_per_step = 1  # one LightGCN propagation over the (pruned) user-item graph per step

    def __init__(self, n_users: int, n_items: int, train_users: np.ndarray, train_items: np.ndarray,
                 item_features: Mapping[str, np.ndarray], embedding_size: int = 64, feat_embed_dim: int = 64,
                 knn_k: int = 10, mm_image_weight: float = 0.1, n_mm_layers: int = 1, n_ui_layers: int = 2,
                 dropout: float = 0.8, reg_weight: float = 1e-4, modalities: Sequence[str] | None = None,
                 modality_weights: Mapping[str, float] | None = None):
        super().__init__(n_users, n_items)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"FREEDOM: dropout must be in [0, 1), got {dropout}")
        if n_mm_layers < 0 or n_ui_layers < 0:
            raise ConfigError("FREEDOM: n_mm_layers and n_ui_layers must be >= 0")
        names = sorted(item_features) if modalities is None else list(dict.fromkeys(modalities))
        missing = [m for m in names if m not in item_features]
        if missing:
            raise ConfigError(f"FREEDOM: modalities {missing} not in item_features {sorted(item_features)}")
        if not names:
            raise ConfigError("FREEDOM needs at least one item-feature modality (item_features is empty)")
        self.modalities = tuple(names)
        self.modality_weights = self._graph_weights(self.modalities, mm_image_weight, modality_weights)
        self.embedding_size = embedding_size
        self.feat_embed_dim = feat_embed_dim
        self.knn_k = knn_k
        self.mm_image_weight = mm_image_weight
        self.n_mm_layers = n_mm_layers
        self.n_ui_layers = n_ui_layers
        self.dropout = dropout
        self.reg_weight = reg_weight

        # training edges, duplicates collapsed; sampling weights 1/sqrt(d_u d_i) (every degree here is >= 1)
        keys = np.unique(np.asarray(train_users, dtype=np.int64) * n_items + np.asarray(train_items, dtype=np.int64))
        self.train_users, self.train_items = keys // n_items, keys % n_items
        d_u = np.bincount(self.train_users, minlength=n_users).astype(np.float64)
        d_i = np.bincount(self.train_items, minlength=n_items).astype(np.float64)
        self.edge_weights = 1.0 / np.sqrt(d_u[self.train_users] * d_i[self.train_items])
        self.norm_adj = normalized_adjacency(self.train_users, self.train_items, n_users, n_items)
        self.masked_adj: torch.Tensor | None = self.norm_adj if dropout == 0.0 else None

        # frozen item-item graph S and its transpose (for the backward pass)
        s = None
        for m in self.modalities:
            x = item_feature_matrix(item_features, m, n_items, "FREEDOM")
            g = self.modality_weights[m] * knn_graph(x, knn_k)
            s = g if s is None else s + g
        s = sp.csr_matrix(s, dtype=np.float32)
        self.item_graph = scipy_to_torch_csr(s)
        self.item_graph_t = scipy_to_torch_csr(s.T.tocsr())

        self.user_embedding = nn.Embedding(n_users, embedding_size)
        self.item_id_embedding = nn.Embedding(n_items, embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.feature_embeddings = nn.ModuleDict({
            m: nn.Embedding.from_pretrained(torch.tensor(np.asarray(item_features[m], dtype=np.float32)),
                                            freeze=False)
            for m in self.modalities})
        self.projections = nn.ModuleDict({
            m: nn.Linear(self.feature_embeddings[m].weight.shape[1], feat_embed_dim) for m in self.modalities})

    @staticmethod
    def _graph_weights(names: tuple[str, ...], w_img: float,
                       given: Mapping[str, float] | None) -> dict[str, float]:
        if given is not None:
            if set(given) != set(names):
                raise ConfigError(f"FREEDOM: modality_weights keys {sorted(given)} must be the modalities "
                                  f"{sorted(names)}")
            return {m: float(given[m]) for m in names}
        if len(names) == 1:
            return {names[0]: 1.0}
        if set(names) == {"image", "text"}:
            return {"image": float(w_img), "text": 1.0 - float(w_img)}
        raise ConfigError(f"FREEDOM combines the modalities 'image' and 'text' (S = w_img·S_img + (1−w_img)·S_txt); "
                          f"got {sorted(names)}: pass modalities=[...] or modality_weights={{...}}")

    def _apply(self, fn, recurse=True):  # the sparse graphs are not parameters: move them with .to(device)
        out = super()._apply(fn, recurse)
        same_mask = self.masked_adj is self.norm_adj
        self.norm_adj = fn(self.norm_adj)
        self.item_graph = fn(self.item_graph)
        self.item_graph_t = fn(self.item_graph_t)
        if same_mask:
            self.masked_adj = self.norm_adj
        elif self.masked_adj is not None:
            self.masked_adj = fn(self.masked_adj)
        return out

    # ------------------------------------------------------------------ degree-sensitive pruning
    @property
    def n_keep(self) -> int:
        return int(np.floor((1.0 - self.dropout) * self.train_users.size))

    def sample_edges(self, rng: np.random.Generator) -> np.ndarray:
        """Indices of ``n_keep`` training edges drawn without replacement, probability ∝ 1/√(d_u d_i).

        Exponential race: edge e gets key E_e / w_e with E_e ~ Exp(1); the n_keep smallest keys are exactly a
        successive weighted sample (first pick ∝ w, then ∝ w among the rest, ...)."""
        keys = rng.exponential(size=self.edge_weights.size) / self.edge_weights
        m = self.n_keep
        if m >= keys.size:
            return np.arange(keys.size)
        return np.sort(np.argpartition(keys, m)[:m]) if m > 0 else np.empty(0, dtype=np.int64)

    def pre_epoch(self, rng: np.random.Generator) -> None:
        if self.dropout == 0.0:
            self.masked_adj = self.norm_adj
            return
        keep = self.sample_edges(rng)
        adj = normalized_adjacency(self.train_users[keep], self.train_items[keep], self.n_users, self.n_items)
        w = self.user_embedding.weight
        self.masked_adj = adj.to(device=w.device, dtype=w.dtype)

    # ------------------------------------------------------------------ forward
    def item_graph_embeddings(self) -> torch.Tensor:
        """h = S^{n_mm_layers} · E_item_id."""
        h = self.item_id_embedding.weight
        for _ in range(self.n_mm_layers):
            h = _ItemGraphMM.apply(self.item_graph, self.item_graph_t, h) if h.requires_grad else \
                torch.sparse.mm(self.item_graph, h)
        return h

    def forward_graph(self, adj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) over the user-item graph ``adj``: LightGCN layer mean, items + h."""
        x = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight], dim=0)
        total = x
        for _ in range(self.n_ui_layers):
            x = propagate(adj, x)  # adj is symmetric (normalised bipartite graph)
            total = total + x
        mean = total / (self.n_ui_layers + 1)
        users, items = mean[: self.n_users], mean[self.n_users:]
        return users, items + self.item_graph_embeddings()

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: the pruned graph of this epoch; evaluation: the full normalised graph."""
        adj = self.masked_adj if self.training and self.masked_adj is not None else self.norm_adj
        return self.forward_graph(adj)

    def calculate_loss(self, users, pos, neg):
        if self.masked_adj is None:
            raise RuntimeError("FREEDOM.pre_epoch(rng) must prune the user-item graph before training")
        user_all, item_all = self.forward_graph(self.masked_adj)
        u = user_all[users]
        loss = {"bpr": _bpr(u, item_all[pos], item_all[neg])}
        if self.reg_weight:
            mm = sum(_bpr(u, self.projections[m](self.feature_embeddings[m](pos)),
                          self.projections[m](self.feature_embeddings[m](neg))) for m in self.modalities)
            loss["modality_bpr"] = self.reg_weight * mm
        return loss

    # ------------------------------------------------------------------ SG-URInit contract
    def project_features(self, h: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """mean_m T_m(h_m): per-modality feature rows into the user space (feat_embed_dim wide)."""
        missing = [m for m in self.modalities if m not in h]
        if missing:
            raise ConfigError(f"FREEDOM projection needs modalities {list(self.modalities)}; missing {missing}")
        return torch.stack([self.projections[m](h[m]) for m in self.modalities], dim=0).mean(dim=0)

    def user_init_targets(self) -> list[UserInitTarget]:
        if self.feat_embed_dim != self.embedding_size:
            projection = None  # T_m does not map into the user width; the initialiser falls back to PCA
        else:
            projection = self.project_features
        return [UserInitTarget("user_embedding", self.user_embedding.weight, slice(None), projection,
                               xavier_uniform_std(self.n_users, self.embedding_size))]


def _bpr(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """MMRec FREEDOM's BPR: −mean log σ(⟨u, i⁺⟩ − ⟨u, i⁻⟩)."""
    return -F.logsigmoid((u * pos).sum(-1) - (u * neg).sum(-1)).mean()

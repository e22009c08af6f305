"""LGMRec (Guo et al., "LGMRec: Local and Global Graph Learning for Multimodal Recommendation", AAAI 2024),
following the computation of the public MMRec implementation (``enoche/MMRec``, ``src/models/lgmrec.py``;
config ``src/configs/model/LGMRec.yaml``, Baby settings). Details and departures:
``docs/methods/mmrec-backbones.md``.

- **CGE** (collaborative graph embedding, local): LightGCN over Â = D^{-1/2} A D^{-1/2} on [E_U; E_I], mean of
  layers 0..n_ui_layers (``cf_model="mf"``: layer 0 only).
- **MGE** (modality graph embedding, local), per modality m: item rows X_m W_m (W_m a bias-free d_m × d
  matrix), user rows = mean of the user's items' rows, then n_mm_layers propagations over Â (last layer kept).
  Local = CGE + Σ_m L2-normalise(MGE_m).
- **GHE** (global hypergraph embedding), per modality: item-hyperedge logits X_m H_m (H_m learnable d_m ×
  hyper_num), user logits = R·(X_m H_m) (sum over the user's items); both relaxed with Gumbel-softmax (τ 0.2,
  soft) over hyperedges, then dropout with keep_rate (training only). n_hyper_layer rounds of
  Λ = H_iᵀ E, E_i ← H_i Λ, E_u = H_u Λ, starting from the CGE item rows.
  Final = local + α · L2-normalise(Σ_m GHE_m).
- **Loss**: BPR (mean of −log σ) on the final embeddings + cl_weight · hypergraph contrast (modality a vs
  modality b: the batch users' hyper rows against ALL user rows, the batch positives' against ALL item rows,
  InfoNCE with cosine/τ 0.2, summed) + reg_weight · Σ‖·‖_F / B of the batch's final (u, i⁺, i⁻) rows.

Randomness (Gumbel noise, dropout) comes from torch's global generator, drawn anew at every forward, as in
MMRec; the trainer seeds it per epoch. At evaluation the relaxation is the noise-free softmax(logits/τ)
(MMRec draws Gumbel noise at test time too; ``eval_gumbel_noise=True`` restores that).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.recsys.models.base import Recommender, emb_loss, info_nce_indexed, item_feature_matrix
from polymodal.recsys.models.graph import normalized_adjacency, propagate, scipy_to_torch_csr
from polymodal.recsys.models.mmgcn import _check_modality_names
from polymodal.recsys.models.user_init import UserInitTarget, xavier_uniform_std

CF_MODELS = ("lightgcn", "mf")


class _BipartiteSpMM(torch.autograd.Function):
    """R·x for the (n_users × n_items) interaction matrix R; backward Rᵀ·g with a pre-built CSR transpose."""

    @staticmethod
    def forward(ctx, r: torch.Tensor, rt: torch.Tensor,  # type: ignore[override]
                x: torch.Tensor) -> torch.Tensor:
        ctx.rt = rt
        return torch.sparse.mm(r, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.rt, grad)


class LGMRec(Recommender):
    """LGMRec as in MMRec (see the module docstring). Defaults: MMRec's LGMRec.yaml (Baby)."""

    def __init__(self, n_users: int, n_items: int, item_features: Mapping[str, np.ndarray],
                 train_users: np.ndarray, train_items: np.ndarray, embedding_size: int = 64,
                 feat_embed_dim: int | None = None, cf_model: str = "lightgcn", n_ui_layers: int = 2,
                 n_mm_layers: int = 2, n_hyper_layer: int = 1, hyper_num: int = 4, keep_rate: float = 0.5,
                 alpha: float = 0.3, cl_weight: float = 1e-4, reg_weight: float = 1e-6, tau: float = 0.2,
                 eval_gumbel_noise: bool = False):
        super().__init__(n_users, n_items)
        _check_modality_names(item_features)
        feat_embed_dim = embedding_size if feat_embed_dim is None else feat_embed_dim
        if feat_embed_dim != embedding_size:
            raise ConfigError("field 'feat_embed_dim': LGMRec adds modality and ID embeddings, so it must "
                              f"equal embedding_size ({embedding_size}), got {feat_embed_dim}")
        if cf_model not in CF_MODELS:
            raise ConfigError(f"field 'cf_model': must be one of {CF_MODELS}, got {cf_model!r}")
        if not 0.0 < keep_rate <= 1.0:
            raise ConfigError(f"field 'keep_rate': must be in (0, 1], got {keep_rate}")
        for name, v in (("n_ui_layers", n_ui_layers), ("n_mm_layers", n_mm_layers)):
            if v < 0:
                raise ConfigError(f"field '{name}': must be >= 0, got {v}")
        if n_hyper_layer < 1 or hyper_num < 1:
            raise ConfigError(f"fields 'n_hyper_layer', 'hyper_num': must be >= 1, got {n_hyper_layer}, "
                              f"{hyper_num}")
        self.embedding_size = embedding_size
        self.cf_model = cf_model
        self.n_ui_layers, self.n_mm_layers = n_ui_layers, n_mm_layers
        self.n_hyper_layer, self.hyper_num = n_hyper_layer, hyper_num
        self.keep_rate, self.alpha, self.tau = keep_rate, alpha, tau
        self.cl_weight, self.reg_weight = cl_weight, reg_weight
        self.eval_gumbel_noise = eval_gumbel_noise
        self.modalities = list(item_features)
        self.propagations_per_step = (n_ui_layers if cf_model == "lightgcn" else 0) + n_mm_layers * len(
            self.modalities)

        self.user_embedding = nn.Embedding(n_users, embedding_size)
        self.item_id_embedding = nn.Embedding(n_items, embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_id_embedding.weight)
        self.item_trs = nn.ParameterDict()  # W_m: d_m × d, no bias
        self.hyper = nn.ParameterDict()  # H_m: d_m × hyper_num
        for m, x in item_features.items():
            x = item_feature_matrix(item_features, m, n_items, "LGMRec")
            self.register_buffer(f"feat_{m}", torch.from_numpy(x.copy()), persistent=False)
            self.item_trs[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(x.shape[1], feat_embed_dim)))
            self.hyper[m] = nn.Parameter(nn.init.xavier_uniform_(torch.empty(x.shape[1], hyper_num)))

        users = np.asarray(train_users, dtype=np.int64)
        items = np.asarray(train_items, dtype=np.int64)
        self.norm_adj = normalized_adjacency(users, items, n_users, n_items)
        r = sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(n_users, n_items))
        r.sum_duplicates()
        r.data[:] = 1.0
        self.r = scipy_to_torch_csr(r)
        self.rt = scipy_to_torch_csr(r.T.tocsr())
        deg = np.asarray(r.sum(axis=1), dtype=np.float32)  # (n_users, 1)
        self.register_buffer("user_inv_degree", torch.from_numpy(1.0 / (deg + 1e-7)), persistent=False)

    def _apply(self, fn, recurse=True):  # move the (non-parameter) sparse matrices with .to(device)
        out = super()._apply(fn, recurse)
        self.norm_adj, self.r, self.rt = fn(self.norm_adj), fn(self.r), fn(self.rt)
        return out

    # ------------------------------------------------------------------ pieces
    def features(self, m: str) -> torch.Tensor:
        return getattr(self, f"feat_{m}")

    def user_sum(self, x: torch.Tensor) -> torch.Tensor:
        """R·x: for each user, the sum of x over the user's training items."""
        if x.requires_grad:
            return _BipartiteSpMM.apply(self.r, self.rt, x)
        return torch.sparse.mm(self.r, x)

    def cge(self) -> torch.Tensor:
        """Collaborative graph embedding over all U+I nodes."""
        x = torch.cat([self.user_embedding.weight, self.item_id_embedding.weight], dim=0)
        if self.cf_model == "mf":
            return x
        layers = [x]
        for _ in range(self.n_ui_layers):
            layers.append(propagate(self.norm_adj, layers[-1]))
        return torch.stack(layers, dim=0).mean(dim=0)

    def mge(self, m: str) -> torch.Tensor:
        """Modality graph embedding of modality m over all U+I nodes (before L2 normalisation)."""
        item = self.features(m) @ self.item_trs[m]
        user = self.user_sum(item) * self.user_inv_degree
        x = torch.cat([user, item], dim=0)
        for _ in range(self.n_mm_layers):
            x = propagate(self.norm_adj, x)
        return x

    def hyperedge_logits(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(item logits X_m H_m (n_items × hyper_num), user logits R·X_m H_m (n_users × hyper_num))."""
        item = self.features(m) @ self.hyper[m]
        return item, self.user_sum(item)

    def _relax(self, logits: torch.Tensor) -> torch.Tensor:
        if self.training or self.eval_gumbel_noise:
            return F.gumbel_softmax(logits, tau=self.tau, hard=False, dim=1)
        return torch.softmax(logits / self.tau, dim=1)

    def hypergraph_dependencies(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(H_i, H_u): relaxed (and, in training, dropped-out) item and user memberships of the hyperedges."""
        item_logits, user_logits = self.hyperedge_logits(m)
        h_i, h_u = self._relax(item_logits), self._relax(user_logits)
        p = 1.0 - self.keep_rate
        return F.dropout(h_i, p, self.training), F.dropout(h_u, p, self.training)

    def hgnn(self, h_i: torch.Tensor, h_u: torch.Tensor,
             item_emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """n_hyper_layer rounds of Λ = H_iᵀ E_i, E_i ← H_i Λ, E_u = H_u Λ. Returns (E_u, E_i)."""
        e_i = item_emb
        e_u = item_emb.new_zeros(h_u.shape[0], item_emb.shape[1])
        for _ in range(self.n_hyper_layer):
            lat = h_i.T @ e_i
            e_i = h_i @ lat
            e_u = h_u @ lat
        return e_u, e_i

    def forward_all(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """(user rows, item rows, {modality: (hyper user rows, hyper item rows)})."""
        cge = self.cge()
        local = cge
        ghe = None
        hyper: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for m in self.modalities:
            local = local + F.normalize(self.mge(m), dim=1)
            h_i, h_u = self.hypergraph_dependencies(m)
            e_u, e_i = self.hgnn(h_i, h_u, cge[self.n_users:])
            hyper[m] = (e_u, e_i)
            g = torch.cat([e_u, e_i], dim=0)
            ghe = g if ghe is None else ghe + g
        x = local + self.alpha * F.normalize(ghe, dim=1)
        return x[: self.n_users], x[self.n_users:], hyper

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        u, i, _ = self.forward_all()
        return u, i

    # ------------------------------------------------------------------ loss
    def hypergraph_contrast(self, hyper: dict[str, tuple[torch.Tensor, torch.Tensor]], users: torch.Tensor,
                            pos: torch.Tensor) -> torch.Tensor:
        """Σ over consecutive modality pairs (a, b):
        InfoNCE(u_a[users] vs all u_b) + InfoNCE(i_a[pos] vs all i_b), summed over the batch."""
        total = None
        for a, b in zip(self.modalities[:-1], self.modalities[1:], strict=True):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            term = (info_nce_indexed(ua[users], ub, users, self.tau, "sum")
                    + info_nce_indexed(ia[pos], ib, pos, self.tau, "sum"))
            total = term if total is None else total + term
        assert total is not None
        return total

    def calculate_loss(self, users, pos, neg):
        u_all, i_all, hyper = self.forward_all()
        u, ip, ineg = u_all[users], i_all[pos], i_all[neg]
        loss = {"bpr": -F.logsigmoid((u * ip).sum(-1) - (u * ineg).sum(-1)).mean()}
        if self.cl_weight and len(self.modalities) > 1:
            loss["cl"] = self.cl_weight * self.hypergraph_contrast(hyper, users, pos)
        if self.reg_weight:
            loss["reg"] = self.reg_weight * emb_loss(u, ip, ineg, require_pow=False)
        return loss

    # ------------------------------------------------------------------ SG-URInit contract
    def user_init_targets(self) -> list[UserInitTarget]:
        """The one user table, ``user_embedding``; projection = mean over modalities of h_m · W_m (the map
        MGE applies to item features, so a user initialised from its items' mean feature starts at its MGE
        row)."""

        def project(feats: dict[str, torch.Tensor]) -> torch.Tensor:
            return torch.stack([feats[m] @ self.item_trs[m] for m in self.modalities], dim=0).mean(dim=0)

        w = self.user_embedding.weight
        return [UserInitTarget("user_embedding", w, slice(None), project, xavier_uniform_std(*w.shape))]

"""The interface every recommender implements (spec section 1.3), and the shared loss pieces."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Recommender(nn.Module):
    """Hooks the trainer calls.

    - ``pre_epoch(rng)``: per-epoch work (SGL re-samples its views); ``rng`` is seeded from (seed, epoch).
    - ``calculate_loss(users, pos, neg) -> dict[str, Tensor]``: named loss parts; the trainer sums them.
    - ``full_sort_scores(users) -> (B, n_items)``; ``predict(users, items) -> (B,)``.
    - ``propagations_per_step``: graph propagations one training step costs (reported by ``compare``).
    """

    propagations_per_step: int = 0

    def __init__(self, n_users: int, n_items: int):
        super().__init__()
        self.n_users = n_users
        self.n_items = n_items
        self._eval_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def pre_epoch(self, rng: np.random.Generator) -> None:
        """Called once before each training epoch."""

    def calculate_loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, item) representations used for scoring."""
        raise NotImplementedError

    def train(self, mode: bool = True) -> Recommender:
        self._eval_cache = None
        return super().train(mode)

    def _scoring_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            return self.final_embeddings()
        if self._eval_cache is None:  # one propagation per evaluation, not per user chunk
            with torch.no_grad():
                self._eval_cache = self.final_embeddings()
        return self._eval_cache

    def full_sort_scores(self, users: torch.Tensor) -> torch.Tensor:
        u, i = self._scoring_embeddings()
        return u[users] @ i.T

    def predict(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u, i = self._scoring_embeddings()
        return (u[users] * i[items]).sum(-1)


def item_feature_matrix(item_features, modality: str, n_items: int, model: str) -> np.ndarray:
    """``item_features[modality]`` as float32 (n_items, d); a misaligned matrix is a ConfigError naming both."""
    from polymodal.core.errors import ConfigError

    x = np.asarray(item_features[modality], dtype=np.float32)
    if x.ndim != 2 or x.shape[0] != n_items:
        raise ConfigError(f"{model}: item_features[{modality!r}] has shape {x.shape}, expected ({n_items}, d)")
    return x


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """RecBole ``BPRLoss``: −log(1e−10 + σ(s⁺ − s⁻)), mean (default) or sum over the batch."""
    loss = -torch.log(1e-10 + torch.sigmoid(pos_scores - neg_scores))
    return loss.sum() if reduction == "sum" else loss.mean()


def emb_loss(*embeddings: torch.Tensor, require_pow: bool = False) -> torch.Tensor:
    """RecBole ``EmbLoss`` (spec section 2).

    require_pow=False: (Σ ‖E‖_F) / B — norms, not squared; require_pow=True: (Σ ‖E‖²_F) / (2B).
    """
    b = embeddings[-1].shape[0]
    if require_pow:
        return sum(torch.linalg.vector_norm(e, 2) ** 2 for e in embeddings) / b / 2.0
    return sum(torch.linalg.vector_norm(e, 2) for e in embeddings) / b


def info_nce(anchor: torch.Tensor, candidates: torch.Tensor, tau: float, reduction: str = "sum") -> torch.Tensor:
    """Σ_b [−cos(a_b, c_b)/τ + logsumexp_k cos(a_b, c_k)/τ] (in-batch: anchor row b's positive is
    candidate row b, every candidate row is in the denominator, duplicates included)."""
    a = nn.functional.normalize(anchor, dim=-1) / tau  # scale the B×d side, not the B×B logits
    c = nn.functional.normalize(candidates, dim=-1)
    logits = a @ c.T
    loss = torch.logsumexp(logits, dim=1) - (a * c).sum(-1)
    return loss.sum() if reduction == "sum" else loss.mean()


def info_nce_indexed(anchor: torch.Tensor, candidates: torch.Tensor, positive_index: torch.Tensor, tau: float,
                     reduction: str = "sum") -> torch.Tensor:
    """InfoNCE where anchor row b's positive is ``candidates[positive_index[b]]`` (all rows are negatives)."""
    a = nn.functional.normalize(anchor, dim=-1) / tau
    c = nn.functional.normalize(candidates, dim=-1)
    logits = a @ c.T
    pos = logits.gather(1, positive_index.view(-1, 1)).squeeze(1)
    loss = torch.logsumexp(logits, dim=1) - pos
    return loss.sum() if reduction == "sum" else loss.mean()

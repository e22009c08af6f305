"""The contract between user-initialisation methods (SG-URInit, spec 6.3 step 5) and any recommender.

A model tells an initialiser *which* user tables it may overwrite and *how* item-feature vectors map into each,
through ``user_init_targets()``. Models that do not implement it still work when they have a ``user_embedding``
attribute (an ``nn.Embedding`` or an ``nn.Parameter`` with one row per user): one target, no model projection
(SG-URInit then falls back to PCA). Anything else is an error naming the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from polymodal.core.errors import ConfigError

#: maps per-modality user feature tensors {modality: (n_users, d_m)} to (n_users, width)
Projection = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class UserInitTarget:
    """One block of a user table: ``param[:, columns]`` has one row per user.

    ``projection``: the model's own map from item-feature space into this block (``None``: no such map).
    ``init_std``: the std of the model's default init of the whole table (the rescale target).
    """

    name: str
    param: torch.Tensor
    columns: slice = field(default_factory=lambda: slice(None))
    projection: Projection | None = None
    init_std: float | None = None

    @property
    def width(self) -> int:
        return int(self.param[:, self.columns].shape[1])


def xavier_uniform_std(n_rows: int, n_cols: int) -> float:
    """Std of ``nn.init.xavier_uniform_`` on an (n_rows, n_cols) weight: sqrt(2 / (fan_in + fan_out))."""
    return math.sqrt(2.0 / (n_rows + n_cols))


def _table_of(model: nn.Module) -> torch.Tensor | None:
    table = getattr(model, "user_embedding", None)
    if isinstance(table, nn.Embedding):
        return table.weight
    if isinstance(table, nn.Parameter) and table.dim() == 2:
        return table
    return None


def user_init_targets(model: nn.Module) -> list[UserInitTarget]:
    """The model's targets, or one default target from its ``user_embedding``; a clear error otherwise."""
    if hasattr(model, "user_init_targets"):
        targets = list(model.user_init_targets())
        if not targets:
            raise ConfigError(f"{type(model).__name__}.user_init_targets() returned no user table")
        return targets
    table = _table_of(model)
    if table is None:
        raise ConfigError(
            f"{type(model).__name__} has no user embedding table: SG-URInit needs an attribute 'user_embedding' "
            "(nn.Embedding or a 2-D nn.Parameter, one row per user) or a user_init_targets() method"
        )
    n_users, width = table.shape
    return [UserInitTarget("user_embedding", table, slice(None), None, xavier_uniform_std(n_users, width))]

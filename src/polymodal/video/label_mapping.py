"""Audio-to-video label mapping for Audio-Assisted TTA (spec video.md 2.4, every detail [reconstruction]).

The paper (arXiv 2506.12481, abstract) maps an audio classifier's predictions to the video label space "by a large
language model". We build the mapping once, offline, as a matrix ``M`` in ``[0, 1]^(A x V)`` (audio classes x video
classes) and keep it as JSON (labels, backend and matrix recorded, so a stale file is detected):

- ``backend="encoder"`` (default): cosine similarities of ``polymodal.text.SentenceEncoder`` embeddings of the label
  names, each row soft-maxed with temperature 0.05, entries below 0.1 zeroed (a row's largest entry is always kept);
- ``backend="llm"``: a scoring LLM backend (``polymodal.llm``; SmolLM2-135M-Instruct by default) rates every (audio,
  video) pair by the log-probability of " Yes" vs " No" after the prompt
  *"Audio event: <a>. Could this sound come from a video of <v>? Answer Yes or No."*; ``M = sigmoid(lp_yes - lp_no)``;
- ``backend="table"``: a hand-written JSON ``{"audio label": {"video label": weight, ...}, ...}`` (or a full mapping
  file written by :meth:`LabelMapping.save`).

A pseudo-label distribution is ``q = normalise(M^T p_audio)`` (:meth:`LabelMapping.project`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import ConfigError, DataFormatError

BACKENDS = ("encoder", "llm", "table")
LLM_PROMPT = "Audio event: {audio}. Could this sound come from a video of {video}? Answer Yes or No."
#: the generative form (spec 2.4), for chat-only backends: not used by the scoring path
LLM_GENERATIVE_PROMPT = ("Audio event: {audio}. Which of these video classes could produce this sound? {videos}. "
                         "Answer with class names only.")
FORMAT_VERSION = 1



def _read_json(path: Path) -> object:
    """A JSON file's content; DataFormatError naming the file (and line) when missing or malformed."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg}", line=e.lineno) from None

@dataclass
class LabelMapping:
    """``matrix[a, v]`` in [0, 1]: how plausibly audio class ``a`` comes from a video of class ``v``."""

    matrix: np.ndarray
    audio_labels: tuple[str, ...]
    video_labels: tuple[str, ...]
    backend: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        self.audio_labels = tuple(self.audio_labels)
        self.video_labels = tuple(self.video_labels)
        self.validate()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.audio_labels), len(self.video_labels)

    def validate(self, where: str = "label mapping") -> None:
        """Finite, non-negative, at most 1, shape (A, V) matching the labels, distinct labels; else ConfigError."""
        m = self.matrix
        if m.ndim != 2 or m.shape != self.shape:
            raise ConfigError(f"{where}: matrix shape {m.shape} does not match {len(self.audio_labels)} audio x "
                              f"{len(self.video_labels)} video labels")
        if not np.isfinite(m).all():
            raise ConfigError(f"{where}: matrix has non-finite entries")
        if (m < 0).any() or (m > 1 + 1e-9).any():
            raise ConfigError(f"{where}: entries must lie in [0, 1], got [{m.min():.3g}, {m.max():.3g}]")
        for name, labels in (("audio", self.audio_labels), ("video", self.video_labels)):
            if len(set(labels)) != len(labels) or not labels:
                raise ConfigError(f"{where}: {name} labels must be non-empty and distinct, got {list(labels)}")

    def check_labels(self, audio_labels: Sequence[str], video_labels: Sequence[str]) -> None:
        if tuple(audio_labels) != self.audio_labels or tuple(video_labels) != self.video_labels:
            raise ConfigError(f"label mapping ({self.backend}) was built for audio {list(self.audio_labels)} / video "
                              f"{list(self.video_labels)}, not audio {list(audio_labels)} / video "
                              f"{list(video_labels)}")

    def tensor(self, device: str | torch.device = "cpu") -> torch.Tensor:
        return torch.as_tensor(self.matrix, dtype=torch.float32, device=device)

    def project(self, p_audio: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``q = normalise(M^T p_audio)`` for ``p_audio`` of shape (A,) or (B, A); a sample whose audio classes all
        map to nothing gets a uniform q (so it is never accepted at thresholds above 1/V)."""
        p = torch.as_tensor(p_audio, dtype=torch.float32)
        single = p.ndim == 1
        p = p[None] if single else p
        if p.shape[-1] != len(self.audio_labels):
            raise ValueError(f"p_audio has {p.shape[-1]} classes, the mapping {len(self.audio_labels)}")
        q = p @ self.tensor(p.device)
        total = q.sum(dim=1, keepdim=True)
        uniform = torch.full_like(q, 1.0 / q.shape[1])
        q = torch.where(total > 1e-12, q / total.clamp_min(1e-12), uniform)
        return q[0] if single else q

    # ----------------------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {"format": "polymodal.video.label_mapping", "version": FORMAT_VERSION, "backend": self.backend,
                "audio_labels": list(self.audio_labels), "video_labels": list(self.video_labels),
                "matrix": [[round(float(x), 8) for x in row] for row in self.matrix], "meta": self.meta}

    def save(self, path: str | Path) -> Path:
        from polymodal.core.runs import atomic_write_json

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, d: Any, where: str = "label mapping") -> LabelMapping:
        if not isinstance(d, dict):
            raise DataFormatError(where, f"expected a JSON object, got {type(d).__name__}")
        for key in ("audio_labels", "video_labels", "matrix"):
            if key not in d:
                raise DataFormatError(where, f"missing field {key!r}",
                                      expected="audio_labels, video_labels, matrix, backend")
        try:
            mat = np.asarray(d["matrix"], dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise DataFormatError(where, f"field 'matrix' is not a numeric A x V array: {e}") from None
        try:
            return cls(mat, tuple(d["audio_labels"]), tuple(d["video_labels"]), str(d.get("backend", "table")),
                       dict(d.get("meta", {})))
        except ConfigError as e:
            raise DataFormatError(where, str(e)) from None

    @classmethod
    def load(cls, path: str | Path) -> LabelMapping:
        return cls.from_dict(_read_json(Path(path)), str(path))


# --------------------------------------------------------------------------------------------- backends
def encoder_matrix(audio_labels: Sequence[str], video_labels: Sequence[str], encoder: Any = None, *,
                   temperature: float = 0.05, min_weight: float = 0.1) -> np.ndarray:
    """Row-softmax (``temperature``) of label-name cosine similarities, entries below ``min_weight`` zeroed
    (each row keeps its largest entry, so no audio class maps to nothing)."""
    if temperature <= 0:
        raise ConfigError(f"field 'temperature': must be > 0, got {temperature}")
    if encoder is None:
        from polymodal.text import SentenceEncoder

        encoder = SentenceEncoder()
    sim = np.asarray(encoder.similarity(list(audio_labels), list(video_labels)), dtype=np.float64)
    return sparsify(softmax_rows(sim, temperature), min_weight)


def softmax_rows(x: np.ndarray, temperature: float) -> np.ndarray:
    z = np.asarray(x, dtype=np.float64) / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def sparsify(m: np.ndarray, min_weight: float) -> np.ndarray:
    out = np.where(m >= min_weight, m, 0.0)
    rows = np.arange(m.shape[0])
    best = m.argmax(axis=1)
    out[rows, best] = m[rows, best]
    return out


def llm_matrix(audio_labels: Sequence[str], video_labels: Sequence[str], backend: Any = None, *,
               prompt: str = LLM_PROMPT, yes: str = " Yes", no: str = " No", show_progress: bool = True
               ) -> np.ndarray:
    """``sigmoid(log p(yes) - log p(no))`` of a scoring backend for each (audio, video) pair.

    ``backend``: anything with ``score_continuations(prompt, [yes, no]) -> [lp_yes, lp_no]`` (the
    ``polymodal.llm.ScoringBackend`` protocol; ``TransformersBackend`` on SmolLM2 when None). The prompt is raw text
    ending in "Answer:" so the continuations " Yes" / " No" are scored as the next tokens.
    """
    if backend is None:
        from polymodal.llm import TransformersBackend

        backend = TransformersBackend()
    if not callable(getattr(backend, "score_continuations", None)):
        raise ConfigError(f"label mapping backend 'llm' needs a scoring backend (score_continuations), got "
                          f"{type(backend).__name__}; chat-only servers cannot give log-probabilities")
    from polymodal.core.progress import progress_bar

    m = np.zeros((len(audio_labels), len(video_labels)))
    with progress_bar(m.size, "label mapping (llm)", quiet=not show_progress or m.size < 20) as bar:
        for i, a in enumerate(audio_labels):
            for j, v in enumerate(video_labels):
                text = prompt.format(audio=a, video=v) + "\nAnswer:"
                lp_yes, lp_no = backend.score_continuations(text, [yes, no])
                m[i, j] = 1.0 / (1.0 + math.exp(-(float(lp_yes) - float(lp_no))))
                bar.advance()
    return m


def table_matrix(audio_labels: Sequence[str], video_labels: Sequence[str], table: Any) -> np.ndarray:
    """A hand-written table: a path or dict ``{audio: {video: weight}}`` (missing pairs are 0), or a saved mapping
    file (labels must match)."""
    where = "label mapping table"
    if isinstance(table, str | Path):
        where = str(table)
        table = _read_json(Path(table))
    if isinstance(table, dict) and "matrix" in table:
        mapping = LabelMapping.from_dict(table, where)
        try:
            mapping.check_labels(audio_labels, video_labels)
        except ConfigError as e:
            raise DataFormatError(where, str(e)) from None
        return mapping.matrix
    if not isinstance(table, dict):
        raise DataFormatError(where, f"expected a JSON object, got {type(table).__name__}",
                              expected='{"audio label": {"video label": weight in [0, 1]}}')
    m = np.zeros((len(audio_labels), len(video_labels)))
    a_index = {a: i for i, a in enumerate(audio_labels)}
    v_index = {v: j for j, v in enumerate(video_labels)}
    for a, row in table.items():
        if a not in a_index:
            raise DataFormatError(where, f"unknown audio label {a!r}", expected=f"one of {list(audio_labels)}")
        if not isinstance(row, dict):
            raise DataFormatError(where, f"entry {a!r} is {type(row).__name__}",
                                  expected='{"video label": weight}')
        for v, w in row.items():
            if v not in v_index:
                raise DataFormatError(where, f"entry {a!r}: unknown video label {v!r}",
                                      expected=f"one of {list(video_labels)}")
            if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w <= 1 or not math.isfinite(w):
                raise DataFormatError(where, f"entry {a!r} -> {v!r}: weight {w!r}", expected="a number in [0, 1]")
            m[a_index[a], v_index[v]] = float(w)
    return m


def mapping_cache_path(audio_labels: Sequence[str], video_labels: Sequence[str], backend: str,
                       params: dict[str, Any], cache_dir: str | Path | None = None) -> Path:
    """``<cache>/video/label_mappings/<backend>-<hash of labels and parameters>.json``."""
    if cache_dir is None:
        from polymodal.core.datasets import cache_dir as polymodal_cache

        cache_dir = polymodal_cache() / "video" / "label_mappings"
    key = json.dumps({"a": list(audio_labels), "v": list(video_labels), "b": backend, "p": params}, sort_keys=True)
    return Path(cache_dir) / f"{backend}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def build_label_mapping(audio_labels: Sequence[str], video_labels: Sequence[str], backend: str = "encoder", *,
                        encoder: Any = None, llm: Any = None, table: Any = None, temperature: float = 0.05,
                        min_weight: float = 0.1, cache: bool = True, cache_dir: str | Path | None = None,
                        save_to: str | Path | None = None) -> LabelMapping:
    """Build (or load from the cache) the audio -> video label mapping of spec 2.4.

    ``encoder``: a ``SentenceEncoder``-like object with ``similarity(a, b)`` (bundled MiniLM when None);
    ``llm``: a scoring backend (SmolLM2 ``TransformersBackend`` when None) or a string naming a model; ``table``: a
    path or dict for ``backend="table"``. The encoder / llm results are cached under the polymodal cache dir
    (``cache_dir`` overrides; ``cache=False`` disables; a custom encoder object or llm backend is cached under its
    ``name`` / ``model_name``). ``save_to`` also writes the mapping there (e.g. a run directory).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"label mapping backend must be one of {BACKENDS}, got {backend!r}")
    audio_labels, video_labels = tuple(audio_labels), tuple(video_labels)
    for name, labels in (("audio", audio_labels), ("video", video_labels)):
        if not labels or len(set(labels)) != len(labels) or not all(isinstance(s, str) and s for s in labels):
            raise ConfigError(f"{name} labels must be distinct non-empty strings, got {list(labels)}")
    meta: dict[str, Any] = {}
    if backend == "table":
        if table is None:
            raise ConfigError("label mapping backend 'table' needs table= (a JSON path or a dict)")
        meta["source"] = str(table) if isinstance(table, str | Path) else "dict"
        mapping = LabelMapping(table_matrix(audio_labels, video_labels, table), audio_labels, video_labels,
                               "table", meta)
    else:
        if backend == "encoder":
            who = getattr(encoder, "model_key", None) or getattr(encoder, "name", None) or "all-MiniLM-L6-v2"
            params = {"model": str(who), "temperature": temperature, "min_weight": min_weight}
        else:
            if isinstance(llm, str | Path):
                from polymodal.llm import TransformersBackend

                llm = TransformersBackend(name_or_path=str(llm))
            who = getattr(llm, "model_name", None) or getattr(llm, "name", None) or "SmolLM2-135M-Instruct"
            params = {"model": str(who), "prompt": LLM_PROMPT}
        path = mapping_cache_path(audio_labels, video_labels, backend, params, cache_dir)
        mapping = None
        if cache and path.is_file():
            try:
                mapping = LabelMapping.load(path)
                mapping.check_labels(audio_labels, video_labels)
                if mapping.backend != backend:
                    mapping = None
            except (DataFormatError, ConfigError):
                mapping = None  # a stale or damaged cache entry is rebuilt
        if mapping is None:
            if backend == "encoder":
                mat = encoder_matrix(audio_labels, video_labels, encoder, temperature=temperature,
                                     min_weight=min_weight)
            else:
                mat = llm_matrix(audio_labels, video_labels, llm)
            mapping = LabelMapping(mat, audio_labels, video_labels, backend, {**meta, **params})
            if cache:
                mapping.save(path)
    if save_to is not None:
        mapping.save(save_to)
    return mapping


def identity_mapping(labels: Sequence[str]) -> LabelMapping:
    """The identity table for identical audio and video label sets (q = p_audio)."""
    labels = tuple(labels)
    return LabelMapping(np.eye(len(labels)), labels, labels, "table", {"source": "identity"})


def mapping_from_relation(relation: np.ndarray, audio_labels: Sequence[str], video_labels: Sequence[str]
                          ) -> LabelMapping:
    """An oracle table from a ground-truth relation ``R[a, v] = P(a | v)`` (e.g. ``synth.audio_video_relation()``),
    rows scaled to max 1 (an upper bound for the text/LLM mappings)."""
    r = np.asarray(relation, dtype=np.float64)
    r = r / np.maximum(r.max(axis=1, keepdims=True), 1e-12)
    return LabelMapping(r, audio_labels, video_labels, "table", {"source": "ground-truth relation"})

"""OVG-HQ grounding data: one import point (spec ``video.md`` 3.2, 3.7, 3.8; docs/methods/ovg-hq.md "Data").

Re-exports the annotation loader and containers (:mod:`.annotations`), the synthetic feature generator
(:mod:`.synthetic_features`) and the Moment-DETR feature loader (:mod:`.feature_files`), and defines
:func:`default_dataset`, the recipe's embedded default::

    from polymodal.video.grounding.data import default_dataset
    train, valid = default_dataset(800, 200, dim=512, seed=0, text="minilm")
    s = train[0]; s.video.shape, s.queries["text"].shape, s.windows   # (75, 512), (L, 512), [[s, e], ...]
    gts = valid.gts()                                                    # QVHighlights GT rows for the metrics
"""

from __future__ import annotations

import numpy as np

from polymodal.core.errors import ConfigError
from polymodal.video.grounding.annotations import (
    ANNOTATION_ENV,
    CLIP_SECONDS,
    MODALITIES,
    SEGMENT_CLIPS,
    GroundingDataset,
    GroundingSample,
    default_annotation_dir,
    load_complementary_text,
    load_qvhighlights,
    merge_extensions,
    n_clips_for,
    split_dataset,
    synthetic_skeleton,
    validate_row,
    window_clip_ids,
)
from polymodal.video.grounding.feature_files import load_feature_dir
from polymodal.video.grounding.synthetic_features import (
    TEXT_ENCODERS,
    nearest_clip_baseline,
    pooled_query,
    synthesize_features,
)

__all__ = [
    "ANNOTATION_ENV", "CLIP_SECONDS", "MODALITIES", "SEGMENT_CLIPS", "TEXT_ENCODERS", "GroundingDataset",
    "GroundingSample", "default_annotation_dir", "default_dataset", "load_complementary_text", "load_feature_dir",
    "load_qvhighlights", "merge_extensions", "n_clips_for", "nearest_clip_baseline", "pooled_query", "split_dataset",
    "synthesize_features", "synthetic_skeleton", "validate_row", "window_clip_ids",
]


def _seeded_subset(rows: list[dict], n: int, seed: int, salt: int) -> list[dict]:
    if n > len(rows):
        raise ConfigError(f"asked for {n} queries but the annotation file has {len(rows)}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), salt]))
    return [rows[i] for i in np.sort(rng.choice(len(rows), size=n, replace=False))]


def default_dataset(n_train: int, n_valid: int, *, dim: int = 512, seed: int = 0, text: str = "minilm",
                    **synth_kwargs) -> tuple[GroundingDataset, GroundingDataset]:
    """The embedded default (spec 3.8): synthetic features on real QVHighlights rows when
    :func:`default_annotation_dir` finds them (a seeded subset of ``highlight_train_release.jsonl`` for train and of
    ``highlight_val_release.jsonl`` for valid), otherwise on :func:`synthetic_skeleton` rows split by video.
    ``info["skeleton"]`` says which. Extra keyword arguments go to :func:`synthesize_features`.
    """
    if n_train < 1 or n_valid < 1:
        raise ConfigError(f"fields 'n_train'/'n_valid': must be >= 1, got {n_train}/{n_valid}")
    ann = default_annotation_dir()
    if ann is not None and (ann / "highlight_train_release.jsonl").is_file():
        train_rows = _seeded_subset(load_qvhighlights(ann / "highlight_train_release.jsonl"), n_train, seed, 0x7A1)
        valid_rows = _seeded_subset(load_qvhighlights(ann / "highlight_val_release.jsonl"), n_valid, seed, 0x7A2)
        skeleton = f"qvhighlights:{ann}"
    else:
        rows = synthetic_skeleton(n_train + n_valid, seed=seed)
        train_rows, valid_rows = rows[:n_train], rows[n_train:]  # synthetic vids are unique: no leakage
        skeleton = "synthetic"
    encoder = synth_kwargs.pop("encoder", None)
    if text == "minilm" and encoder is None:
        from polymodal.text import SentenceEncoder

        encoder = SentenceEncoder()  # one model load for both splits; embeddings are cached on disk
    parts = []
    for rows in (train_rows, valid_rows):
        ds = synthesize_features(rows, dim=dim, seed=seed, text=text, encoder=encoder, **synth_kwargs)
        ds.info["skeleton"] = skeleton
        parts.append(ds)
    return parts[0], parts[1]

"""Real pre-extracted features in the Moment-DETR layout (spec ``video.md`` 3.8, ``moment_detr_features.tar.gz``).

* video: one ``<vid>.npz`` per video and per feature directory (``clip_features/``, ``slowfast_features/``), key
  ``features`` of shape (n_clips, D); several directories are concatenated along D after truncating to the shortest,
  as Moment-DETR's ``StartEndDataset`` does (each L2-normalised first, its ``normalize_v`` default);
* text: one ``qid<qid>.npz`` per query (``clip_text_features/``), key ``last_hidden_state`` (L, D_t) or
  ``pooler_output`` (D_t,).

The image and segment queries of OVG-HQ (Image-G/R, Segment-G CLIP features) are hosted off-registry; here they are
proxies cut from the video features: the 3 clips of the segment window (``segment_query`` when the row has one) and
that window's middle clip. Every problem is a :class:`DataFormatError` naming the file.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.video.grounding.annotations import (
    CLIP_SECONDS,
    GroundingDataset,
    GroundingSample,
    load_qvhighlights,
    n_clips_for,
    validate_row,
)
from polymodal.video.grounding.synthetic_features import _segment_clip_ids, choose_segment_window


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def read_npz_array(path: Path, key: str, what: str) -> np.ndarray:
    """``np.load(path)[key]`` as float32, with DataFormatErrors for a missing/corrupt file or a wrong key."""
    if not path.is_file():
        raise DataFormatError(path, f"missing {what} feature file", expected=f"an .npz with key '{key}'")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"cannot read the npz: {exc}", expected="a NumPy .npz archive") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataFormatError(path, "a single array, not an .npz archive", expected=f"an .npz with key '{key}'")
    with data:
        if key not in data.files:
            raise DataFormatError(path, f"no key '{key}' (keys: {', '.join(data.files) or 'none'})",
                                  expected=f"the {what} features under '{key}'")
        try:
            arr = data[key]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DataFormatError(path, f"key '{key}': cannot read: {exc}", expected="a NumPy array") from None
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
        raise DataFormatError(path, f"key '{key}': not finite numbers (dtype {arr.dtype})", expected="float features")
    return arr.astype(np.float32, copy=False)


def load_feature_dir(
    video_dir: str | Path | Sequence[str | Path],
    text_dir: str | Path | None = None,
    rows: list[dict] | str | Path | None = None,
    *,
    video_key: str = "features",
    text_key: str = "last_hidden_state",
    clip_seconds: float = CLIP_SECONDS,
    l2_normalize: bool = True,
    max_missing_clips: int = 1,
    seed: int = 0,
) -> GroundingDataset:
    """A :class:`GroundingDataset` from Moment-DETR-layout feature folders for the annotation ``rows``.

    ``video_dir``: one folder or several (e.g. ``[clip_features, slowfast_features]``, concatenated along D after
    truncating to the shortest). ``rows``: validated rows or a QVHighlights JSONL path (required). A video may lack
    up to ``max_missing_clips`` of its ceil(duration / 2) clips (the last clip is repeated, Moment-DETR extraction
    often drops the final partial clip); longer ones are cut to ceil(duration / 2); folders whose lengths differ by
    more than that are an error. Without ``text_dir`` there is no ``"text"`` query. ``seed`` picks the segment window
    of rows without ``segment_query``.
    """
    if rows is None:
        raise ConfigError("load_feature_dir: 'rows' is required (annotation rows or a QVHighlights JSONL path)")
    if isinstance(rows, str | Path):
        rows = load_qvhighlights(rows)
    else:
        rows = [validate_row(r, "<rows>", i + 1) for i, r in enumerate(rows)]
    dirs = [Path(video_dir)] if isinstance(video_dir, str | Path) else [Path(d) for d in video_dir]
    if not dirs:
        raise ConfigError("load_feature_dir: 'video_dir' is empty")
    for d in [*dirs, *([Path(text_dir)] if text_dir is not None else [])]:
        if not d.is_dir():
            raise DataFormatError(d, "not a directory", expected="a folder of .npz feature files")
    widths: list[tuple[int, Path] | None] = [None] * len(dirs)
    text_width: tuple[int, Path] | None = None
    videos: dict[str, np.ndarray] = {}
    samples = []
    for i, r in enumerate(rows):
        need = n_clips_for(r["duration"], clip_seconds)
        vid = r["vid"]
        if vid not in videos:
            parts = []
            for j, d in enumerate(dirs):
                path = d / f"{vid}.npz"
                arr = read_npz_array(path, video_key, "video")
                if arr.ndim != 2 or arr.shape[0] == 0:
                    raise DataFormatError(path, f"key '{video_key}' has shape {arr.shape}", expected="(n_clips, D)")
                if widths[j] is None:
                    widths[j] = (arr.shape[1], path)
                elif widths[j][0] != arr.shape[1]:
                    raise DataFormatError(path, f"feature width {arr.shape[1]} differs from {widths[j][0]} in "
                                                f"{widths[j][1]}", expected="one width per feature folder")
                parts.append((path, _unit(arr) if l2_normalize else arr))
            lengths = [p.shape[0] for _, p in parts]
            if max(lengths) - min(lengths) > max_missing_clips:
                desc = ", ".join(f"{p} has {a.shape[0]}" for p, a in parts)
                raise DataFormatError(parts[0][0], f"mismatched clip counts across feature folders: {desc}",
                                      expected=f"lengths within {max_missing_clips} clip(s)")
            n = min(lengths)
            if n < need - max_missing_clips:
                raise DataFormatError(parts[0][0], f"{n} clips for a {r['duration']:g}-s video",
                                      expected=f"ceil(duration / {clip_seconds:g}) = {need} clips")
            video = np.concatenate([a[:n] for _, a in parts], axis=1)[:need]
            if len(video) < need:
                video = np.concatenate([video, np.repeat(video[-1:], need - len(video), axis=0)])
            videos[vid] = video
        video = videos[vid][:need]
        queries: dict[str, np.ndarray] = {}
        if text_dir is not None:
            path = Path(text_dir) / f"qid{r['qid']}.npz"
            tok = read_npz_array(path, text_key, "text")
            tok = tok.reshape(1, -1) if tok.ndim == 1 else tok
            if tok.ndim != 2 or tok.shape[0] == 0:
                raise DataFormatError(path, f"key '{text_key}' has shape {tok.shape}", expected="(L, D) or (D,)")
            if text_width is None:
                text_width = (tok.shape[1], path)
            elif text_width[0] != tok.shape[1]:
                raise DataFormatError(path, f"text width {tok.shape[1]} differs from {text_width[0]} in "
                                            f"{text_width[1]}", expected="one width for all queries")
            queries["text"] = _unit(tok) if l2_normalize else tok
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(r["qid"]) & 0xFFFFFFFF, i]))
        seg_win = choose_segment_window(r, need, rng, clip_seconds)
        seg_ids = _segment_clip_ids(seg_win, need, clip_seconds)
        queries["segment"] = video[seg_ids].copy()
        queries["image"] = video[seg_ids[len(seg_ids) // 2]][None].copy()
        samples.append(GroundingSample(
            qid=int(r["qid"]), vid=vid, duration=float(r["duration"]), query_text=r["query"], video=video,
            windows=np.asarray(r["relevant_windows"], dtype=np.float64).reshape(-1, 2), queries=queries,
            segment_window=(float(seg_win[0]), float(seg_win[1])), row=r,
        ))
    dim = int(next(iter(videos.values())).shape[1])
    query_dims = {"image": dim, "segment": dim}
    if text_width is not None:
        query_dims["text"] = text_width[0]
    info = dict(source="feature_dir", video_dirs=[str(d) for d in dirs], text_dir=str(text_dir) if text_dir else None,
                video_key=video_key, text_key=text_key, l2_normalize=l2_normalize)
    return GroundingDataset(samples, dim=dim, clip_seconds=clip_seconds, query_dims=query_dims, info=info)

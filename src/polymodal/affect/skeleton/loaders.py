"""Gait loaders (spec affect.md 3.6): Emotion-Gait / ProxEmo HDF5 and generic NumPy arrays.

Emotion-Gait (STEP) and ProxEmo ship ``features.h5`` mapping keys such as ``002_Sad`` to ``T x 48`` arrays
(16 joints x xyz, README joint order) and ``labels.h5`` mapping the same keys to integers 0-3 (annotator labels,
which often differ from the emotion in the key). The integer -> name map is configurable; the default follows the
STEP code's class order (angry, neutral, happy, sad) [official code, check against your copy]. Without a labels
file the label comes from the key's suffix. Bad input raises :class:`~polymodal.core.errors.DataFormatError`
naming the file, the key and the field.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from polymodal.affect.skeleton.synthetic import GaitDataset
from polymodal.core.errors import DataFormatError

#: STEP / Emotion-Gait label order
EMOTION_GAIT_LABELS: tuple[str, ...] = ("angry", "neutral", "happy", "sad")
NUM_JOINTS = 16


def _open_h5(path: Path):
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is a declared dependency
        raise DataFormatError(path, "reading HDF5 needs the 'h5py' package") from e
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataFormatError(path, f"not a readable HDF5 file: {e}", expected="an HDF5 file (features.h5)") from None


def _as_gait(arr: np.ndarray, path: Path, key: str, joints: int = NUM_JOINTS) -> np.ndarray:
    a = np.asarray(arr)
    if not np.issubdtype(a.dtype, np.number):
        raise DataFormatError(path, f"key {key!r}: field 'features' has dtype {a.dtype}", expected="numbers")
    if a.ndim == 2 and a.shape[1] == joints * 3:
        a = a.reshape(a.shape[0], joints, 3)
    if a.ndim != 3 or a.shape[1:] != (joints, 3):
        raise DataFormatError(path, f"key {key!r}: field 'features' has shape {a.shape}",
                              expected=f"T x {joints * 3} (or T x {joints} x 3) coordinates")
    if a.shape[0] < 2:
        raise DataFormatError(path, f"key {key!r}: field 'features' has {a.shape[0]} frame(s)", expected=">= 2 frames")
    if not np.isfinite(a).all():
        raise DataFormatError(path, f"key {key!r}: field 'features' holds NaN or inf", expected="finite coordinates")
    return a.astype(np.float32)


def load_emotion_gait(features_path: str | Path, labels_path: str | Path | None = None, *,
                      label_names: tuple[str, ...] = EMOTION_GAIT_LABELS) -> GaitDataset:
    """Read an Emotion-Gait / ProxEmo ``features.h5`` (+ optional ``labels.h5``) into a :class:`GaitDataset` whose
    ``x`` is a list of variable-length ``(T, 16, 3)`` gaits (keys sorted)."""
    fpath = Path(features_path)
    names = tuple(n.lower() for n in label_names)
    with _open_h5(fpath) as fh:
        keys = sorted(fh.keys())
        if not keys:
            raise DataFormatError(fpath, "no gaits in the file", expected="datasets like '002_Sad'")
        xs = []
        for k in keys:
            if not hasattr(fh[k], "shape"):
                raise DataFormatError(fpath, f"key {k!r}: field 'features' is a group, not an array",
                                      expected="a T x 48 dataset")
            xs.append(_as_gait(fh[k][()], fpath, k))
    if labels_path is not None:
        lpath = Path(labels_path)
        with _open_h5(lpath) as lh:
            missing = [k for k in keys if k not in lh]
            if missing:
                raise DataFormatError(lpath, f"key {missing[0]!r}: field 'label' is missing "
                                      f"({len(missing)} gait(s) of {fpath.name} have no label)")
            ys = []
            for k in keys:
                v = np.asarray(lh[k][()]).reshape(-1)
                if v.size != 1 or not np.issubdtype(v.dtype, np.number) or float(v[0]) != int(v[0]):
                    raise DataFormatError(lpath, f"key {k!r}: field 'label' is {v.tolist()!r}",
                                          expected="one integer")
                if not 0 <= int(v[0]) < len(names):
                    raise DataFormatError(lpath, f"key {k!r}: field 'label' is {int(v[0])}",
                                          expected=f"an integer in 0..{len(names) - 1} ({', '.join(names)})")
                ys.append(int(v[0]))
    else:
        ys = []
        for k in keys:
            emo = k.rsplit("_", 1)[-1].lower()
            if emo not in names:
                raise DataFormatError(fpath, f"key {k!r}: cannot read the label from the key name",
                                      expected=f"'<id>_<Emotion>' with Emotion in {', '.join(names)}, "
                                               "or a labels.h5 file")
            ys.append(names.index(emo))
    return GaitDataset(xs, np.asarray(ys, dtype=np.int64), names, list(keys))


def load_numpy_gaits(path: str | Path, labels_path: str | Path | None = None, *,
                     label_names: tuple[str, ...] | None = None) -> GaitDataset:
    """Read ``(N, T, J, 3)`` gaits: an ``.npz`` with arrays ``x`` and ``y`` (optional ``class_names``), or an ``.npy``
    of gaits plus ``labels_path`` (``.npy`` of N integers)."""
    p = Path(path)
    if not p.is_file():
        raise DataFormatError(p, "file not found")
    try:
        data = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataFormatError(p, f"not a NumPy file: {e}", expected=".npy or .npz") from None
    names = label_names
    if isinstance(data, np.lib.npyio.NpzFile):
        with data:
            for field in ("x", "y") if labels_path is None else ("x",):
                if field not in data.files:
                    raise DataFormatError(p, f"field {field!r} is missing (found {', '.join(data.files) or 'none'})",
                                          expected="arrays 'x' (N, T, J, 3) and 'y' (N,)")
            x = data["x"]
            y = data["y"] if labels_path is None else None
            if names is None and "class_names" in data.files:
                names = tuple(str(n) for n in data["class_names"])
    else:
        x, y = data, None
    if y is None:
        if labels_path is None:
            raise DataFormatError(p, "field 'y' is missing: give labels_path for an .npy of gaits")
        lp = Path(labels_path)
        try:
            y = np.load(lp, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataFormatError(lp, f"field 'y': not a NumPy array file: {e}") from None
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3 or x.shape[2] != NUM_JOINTS:
        raise DataFormatError(p, f"field 'x' has shape {x.shape}", expected=f"(N, T, {NUM_JOINTS}, 3)")
    if not np.isfinite(x).all():
        raise DataFormatError(p, "field 'x' holds NaN or inf", expected="finite coordinates")
    y = np.asarray(y)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise DataFormatError(p, f"field 'y' has shape {y.shape} and dtype {y.dtype}",
                              expected=f"{x.shape[0]} non-negative integers")
    n_classes = int(y.max()) + 1 if y.size else 0
    names = tuple(names) if names is not None else tuple(f"class{i}" for i in range(n_classes))
    if n_classes > len(names):
        raise DataFormatError(p, f"field 'y' has label {n_classes - 1} but only {len(names)} class names")
    return GaitDataset(x.astype(np.float32), y.astype(np.int64), names, [f"{i:05d}" for i in range(len(y))])


def load_gaits(path: str | Path, labels_path: str | Path | None = None, *,
               label_names: tuple[str, ...] | None = None) -> GaitDataset:
    """Dispatch on the suffix: ``.h5``/``.hdf5`` -> :func:`load_emotion_gait`, ``.npz``/``.npy`` -> NumPy."""
    p = Path(path)
    if not p.exists():
        raise DataFormatError(p, "file not found", expected="a gait file: .h5 (Emotion-Gait) or .npz/.npy")
    if p.suffix.lower() in (".h5", ".hdf5"):
        return load_emotion_gait(p, labels_path, label_names=label_names or EMOTION_GAIT_LABELS)
    if p.suffix.lower() in (".npz", ".npy"):
        return load_numpy_gaits(p, labels_path, label_names=label_names)
    raise DataFormatError(p, f"unknown gait file type {p.suffix!r}", expected=".h5 (Emotion-Gait) or .npz/.npy")

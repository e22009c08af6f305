"""Emotion-Gait HDF5 and NumPy gait loaders: round trips and malformed files naming the field (spec 3.6)."""

import numpy as np
import pytest

from polymodal.affect.skeleton import load_emotion_gait, load_gaits, load_numpy_gaits
from polymodal.core.errors import DataFormatError

h5py = pytest.importorskip("h5py")


def write_h5(path, items):
    with h5py.File(path, "w") as fh:
        for k, v in items.items():
            fh.create_dataset(k, data=v)


@pytest.fixture
def gait_files(tmp_path):
    rng = np.random.default_rng(0)
    feats = {"002_Sad": rng.standard_normal((32, 48)), "004_Angry": rng.standard_normal((26, 48)),
             "008_Happy": rng.standard_normal((30, 48))}
    write_h5(tmp_path / "features.h5", feats)
    write_h5(tmp_path / "labels.h5", {"002_Sad": 3, "004_Angry": 0, "008_Happy": 1})
    return tmp_path, feats


def test_emotion_gait_round_trip(gait_files):
    d, feats = gait_files
    ds = load_emotion_gait(d / "features.h5", d / "labels.h5")
    assert ds.ids == ["002_Sad", "004_Angry", "008_Happy"]
    assert [len(s) for s in ds.x] == [32, 26, 30]
    np.testing.assert_allclose(ds.x[0], feats["002_Sad"].reshape(32, 16, 3), rtol=1e-6)
    # labels come from labels.h5 (annotators), not the key name: 008_Happy is labelled 1 = neutral
    assert ds.class_names[ds.y[2]] == "neutral" and ds.class_names[ds.y[0]] == "sad"
    names = load_emotion_gait(d / "features.h5").y  # no labels file: from the key suffix
    assert [ds.class_names[i] for i in names] == ["sad", "angry", "happy"]
    custom = load_gaits(d / "features.h5", d / "labels.h5", label_names=("Happy", "Sad", "Angry", "Neutral"))
    assert custom.class_names[custom.y[0]] == "neutral"


def test_malformed_h5_names_the_field(tmp_path, gait_files):
    d, _ = gait_files
    write_h5(tmp_path / "bad_shape.h5", {"001_Sad": np.zeros((10, 45))})
    with pytest.raises(DataFormatError, match=r"bad_shape.h5.*'001_Sad'.*field 'features'.*T x 48"):
        load_emotion_gait(tmp_path / "bad_shape.h5")
    write_h5(tmp_path / "bad_labels.h5", {"002_Sad": 7, "004_Angry": 0, "008_Happy": 1})
    with pytest.raises(DataFormatError, match=r"'002_Sad'.*field 'label' is 7.*0\.\.3"):
        load_emotion_gait(d / "features.h5", tmp_path / "bad_labels.h5")
    write_h5(tmp_path / "few_labels.h5", {"002_Sad": 3})
    with pytest.raises(DataFormatError, match=r"'004_Angry'.*field 'label' is missing"):
        load_emotion_gait(d / "features.h5", tmp_path / "few_labels.h5")
    (tmp_path / "not.h5").write_text("hello")
    with pytest.raises(DataFormatError, match="not.h5"):
        load_emotion_gait(tmp_path / "not.h5")
    write_h5(tmp_path / "nan.h5", {"001_Sad": np.full((4, 48), np.nan)})
    with pytest.raises(DataFormatError, match="NaN"):
        load_emotion_gait(tmp_path / "nan.h5")
    write_h5(tmp_path / "nolabel.h5", {"001_Bored": np.zeros((4, 48))})
    with pytest.raises(DataFormatError, match="'001_Bored'.*label"):
        load_emotion_gait(tmp_path / "nolabel.h5")


def test_numpy_round_trip_and_errors(tmp_path):
    x = np.random.default_rng(0).standard_normal((6, 20, 16, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 0, 1])
    np.savez(tmp_path / "g.npz", x=x, y=y, class_names=np.array(["a", "b", "c", "d"]))
    ds = load_gaits(tmp_path / "g.npz")
    assert ds.x.shape == x.shape and ds.class_names == ("a", "b", "c", "d")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    assert load_numpy_gaits(tmp_path / "x.npy", tmp_path / "y.npy").y.tolist() == y.tolist()
    np.savez(tmp_path / "noy.npz", x=x)
    with pytest.raises(DataFormatError, match="field 'y' is missing"):
        load_gaits(tmp_path / "noy.npz")
    np.savez(tmp_path / "badx.npz", x=x[:, :, :15], y=y)
    with pytest.raises(DataFormatError, match=r"field 'x' has shape \(6, 20, 15, 3\)"):
        load_gaits(tmp_path / "badx.npz")
    np.savez(tmp_path / "bady.npz", x=x, y=y[:3])
    with pytest.raises(DataFormatError, match="field 'y'"):
        load_gaits(tmp_path / "bady.npz")
    (tmp_path / "g.csv").write_text("x,y\n")
    with pytest.raises(DataFormatError, match="unknown gait file type"):
        load_gaits(tmp_path / "g.csv")
    with pytest.raises(DataFormatError, match=r"missing\.npz: file not found"):
        load_gaits(tmp_path / "missing.npz")

"""BasicMotions (sktime .ts) reader and loader: format errors on tiny fixture files, the real files' shapes and labels,
and the spec's real-data check (spec 7 Checks: the random forest beats chance on BasicMotions, >= 0.6 accuracy)."""

import importlib.metadata

import numpy as np
import pytest
import torch

from polymodal.core.errors import DataFormatError
from polymodal.core.offline import MissingDependencyError
from polymodal.sensing.basicmotions import (
    BASICMOTIONS_LABELS,
    _cnn_slots,
    basicmotions_check,
    basicmotions_paths,
    load_basicmotions,
    load_ts,
    tool_summary,
)

HEADER = """# a comment line
@problemName Tiny
@timeStamps false
@missing true
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel true Standing Running
"""


def _write(tmp_path, body: str, header: str = HEADER, name: str = "Tiny_TRAIN.ts"):
    p = tmp_path / name
    p.write_text(header + body)
    return p


def _real_or_skip():
    try:
        return basicmotions_paths()
    except MissingDependencyError as e:
        pytest.skip(f"sktime's BasicMotions data is not installed ({e})")


# -- the reader on fixtures ---------------------------------------------------------------------------------------
def test_reader_parses_dimensions_labels_and_missing_values(tmp_path):
    p = _write(tmp_path, "@data\n1,2,3:4,5,6:Standing\n\n0.5,?,1e-3:-1,-2,-3:Running\n")
    d = load_ts(p)
    assert d.problem_name == "Tiny" and d.dimensions == 2 and d.series_length == 3 and d.equal_length
    assert d.class_labels == ("Standing", "Running")
    assert list(d.y) == ["Standing", "Running"]
    assert d.X.shape == (2, 3, 2)  # (N, T, D): dimension d is column d
    np.testing.assert_array_equal(d.X[0], [[1, 4], [2, 5], [3, 6]])
    assert np.isnan(d.X[1, 1, 0]) and d.X[1, 2, 0] == pytest.approx(1e-3)


def test_unequal_lengths_are_kept_as_a_list(tmp_path):
    header = HEADER.replace("@equalLength true", "@equalLength false").replace("@seriesLength 3\n", "")
    d = load_ts(_write(tmp_path, "@data\n1,2:3,4:Standing\n1,2,3:4,5,6:Running\n", header))
    assert [s.shape for s in d.series] == [(2, 2), (3, 2)]
    with pytest.raises(DataFormatError, match="different lengths"):
        d.X  # noqa: B018


def test_wrong_dimension_count_names_file_and_line(tmp_path):
    p = _write(tmp_path, "@data\n1,2,3:4,5,6:Standing\n1,2,3:Running\n")
    with pytest.raises(DataFormatError, match=r"Tiny_TRAIN.ts, line 12: 1 dimension\(s\).*the header says 2"):
        load_ts(p)


def test_non_numeric_value_names_line_dimension_and_value(tmp_path):
    p = _write(tmp_path, "@data\n1,2,3:4,abc,6:Standing\n")
    with pytest.raises(DataFormatError, match=r"line 11: dimension 2, value 2: 'abc' is not a number") as e:
        load_ts(p)
    assert e.value.line == 11 and e.value.path.endswith("Tiny_TRAIN.ts")


def test_unknown_label_lists_the_declared_ones(tmp_path):
    p = _write(tmp_path, "@data\n1,2,3:4,5,6:Dancing\n")
    with pytest.raises(DataFormatError, match=r"line 11: class label 'Dancing' is not declared.*Standing, Running"):
        load_ts(p)


def test_missing_data_line_and_other_header_errors(tmp_path):
    with pytest.raises(DataFormatError, match="no @data line"):
        load_ts(_write(tmp_path, ""))
    with pytest.raises(DataFormatError, match="before the @data line"):
        load_ts(_write(tmp_path, "1,2,3:4,5,6:Standing\n"))
    with pytest.raises(DataFormatError, match="no series after @data"):
        load_ts(_write(tmp_path, "@data\n"))
    with pytest.raises(DataFormatError, match=r"line 11: series of length 2, the header says @seriesLength 3"):
        load_ts(_write(tmp_path, "@data\n1,2:4,5:Standing\n"))
    with pytest.raises(DataFormatError, match=r"line 2: unknown header directive @foo"):
        load_ts(_write(tmp_path, "@data\n", header="#\n@foo bar\n"))
    with pytest.raises(DataFormatError, match=r"@dimensions: 'two' is not a positive integer"):
        load_ts(_write(tmp_path, "@data\n", header=HEADER.replace("@dimensions 2", "@dimensions two")))
    with pytest.raises(DataFormatError, match="file not found"):
        load_ts(tmp_path / "absent.ts")


def test_missing_sktime_names_the_install_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(MissingDependencyError, match=r"pip install --no-deps sktime==1\.2\.0"):
        load_basicmotions()


def test_a_root_folder_replaces_the_wheel(tmp_path):
    header = HEADER.replace("@dimensions 2", "@dimensions 6").replace("Standing Running", "Running Badminton")
    row = ":".join(["1,2,3"] * 6)
    for split in ("TRAIN", "TEST"):
        _write(tmp_path, f"@data\n{row}:Running\n{row}:Badminton\n", header, f"BasicMotions_{split}.ts")
    d = load_basicmotions(tmp_path)
    assert d.X_train.shape == (2, 3, 6) and list(d.y_test) == ["jogging", "badminton"]
    assert d.classes == ("jogging", "badminton")
    assert list(load_basicmotions(tmp_path, mapped=False).y_train) == ["Running", "Badminton"]


def test_cnn_slots_put_badminton_in_an_unused_activity():
    slots = _cnn_slots(("standing", "jogging", "walking", "badminton"))
    assert slots["standing"] == "standing" and slots["jogging"] == "jogging"
    assert slots["badminton"] not in ("standing", "jogging", "walking")
    assert len(set(slots.values())) == 4


# -- the real files -----------------------------------------------------------------------------------------------
def test_real_basicmotions_shapes_labels_and_counts():
    _real_or_skip()
    d = load_basicmotions()
    assert d.X_train.shape == (40, 100, 6) and d.X_test.shape == (40, 100, 6)
    assert np.isfinite(d.X_train).all() and np.isfinite(d.X_test).all()
    assert d.raw_classes == ("Standing", "Running", "Walking", "Badminton")
    assert d.classes == ("standing", "jogging", "walking", "badminton")
    for y in (d.y_train, d.y_test):
        labels, counts = np.unique(y, return_counts=True)
        assert dict(zip(labels, counts, strict=True)) == dict.fromkeys(BASICMOTIONS_LABELS.values(), 10)
    assert d.fs == 10.0 and d.windows("test")[0]["wrist"].shape == (100, 6)


def test_tools_at_10_hz_see_plausible_rhythms():
    _real_or_skip()
    s = tool_summary(load_basicmotions())
    # the FFT tool takes the sample rate: at 10 Hz walking's acc-magnitude rhythm is a gait rhythm (not 5x it)
    assert 1.0 < s["walking"]["f0_hz"] < 2.5 and 1.5 < s["jogging"]["f0_hz"] < 3.5
    assert s["standing"]["acc_std"] < s["walking"]["acc_std"] < s["jogging"]["acc_std"]
    assert s["standing"]["acc_mean"] < 2.0  # no gravity in the accelerometer channels


def test_random_forest_on_real_data_beats_chance():
    _real_or_skip()
    torch.set_num_threads(1)
    r = basicmotions_check(rows=("random-forest",), seed=0)["random-forest"]
    assert r["accuracy"] >= 0.6  # chance is 0.25 (4 balanced classes); spec 7 asks >= 0.6
    assert r["macro_f1"] >= 0.6

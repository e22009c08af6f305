"""Shoaib loaders: generator -> CSV -> loader round trip, label normalisation, malformed files (spec 7 Checks)."""

import numpy as np
import pytest

from polymodal.core.errors import DataFormatError
from polymodal.sensing.imu import (
    ACTIVITIES,
    agent_positions,
    load_shoaib_2013,
    load_shoaib_2014,
    normalise_label,
)
from polymodal.sensing.synthetic import make_shoaib_2014, simulate_participant, write_shoaib_2014_csv
from polymodal.sensing.windowing import make_windows, window_starts


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("shoaib")
    make_shoaib_2014(2, 4.0, seed=3, out_dir=d, typo_participant=1)
    return d


def test_round_trip_returns_the_same_arrays_and_normalised_labels(csv_dir):
    arrays, labels = simulate_participant(1, seconds_per_activity=4.0, seed=3)
    text = (csv_dir / "Participant_1.csv").read_text()
    assert "upsatirs" in text  # the real files' typo is written ...
    recs = load_shoaib_2014(csv_dir)
    assert [r.participant for r in recs] == ["1", "2"]
    rec = recs[0]
    assert list(rec.labels) == labels  # ... and normalised on reading
    assert set(rec.labels) == set(ACTIVITIES)
    for pos, arr in arrays.items():
        np.testing.assert_allclose(rec.positions[pos][:, 1:], arr[:, 1:], atol=1e-4)
        np.testing.assert_allclose(rec.positions[pos][:, 0], np.floor(arr[:, 0]), atol=1)
    pos4 = agent_positions(rec, "both")
    assert set(pos4) == {"arm", "wrist", "belt", "pocket"}


def test_label_normaliser():
    assert normalise_label("upsatirs") == "upstairs"
    assert normalise_label(" Running ") == "jogging"
    assert normalise_label("Downstairs") == "downstairs"
    assert normalise_label("dancing") is None


def _rows(path):
    return path.read_text().splitlines()


def test_malformed_files_name_file_line_and_column(csv_dir, tmp_path):
    lines = _rows(csv_dir / "Participant_2.csv")
    bad = tmp_path / "Participant_9.csv"
    cells = lines[5].split(",")
    cells[3] = "abc"
    bad.write_text("\n".join([*lines[:5], ",".join(cells), *lines[6:]]))
    with pytest.raises(DataFormatError, match=r"Participant_9.csv, line 6: column 4 \(left_pocket.Az\)"):
        load_shoaib_2014(bad)
    cells = lines[4].split(",")
    cells[-1] = "dancing"
    bad.write_text("\n".join([*lines[:4], ",".join(cells)]))
    with pytest.raises(DataFormatError, match=r"line 5: column 70 \(activity\): unknown activity 'dancing'"):
        load_shoaib_2014(bad)
    bad.write_text("\n".join([lines[0], lines[1].replace("Gx", "Gq", 1), *lines[2:4]]))
    with pytest.raises(DataFormatError, match=r"line 2: column 8: field 'Gq'"):
        load_shoaib_2014(bad)
    bad.write_text("\n".join([",".join(lines[0].split(",")[:-1]), *lines[1:4]]))
    with pytest.raises(DataFormatError, match="line 1: header row has 69 columns"):
        load_shoaib_2014(bad)
    bad.write_text("\n".join([*lines[:3], lines[3] + ",1"]))
    with pytest.raises(DataFormatError, match="line 4: 71 columns"):
        load_shoaib_2014(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match="no Participant_"):
        load_shoaib_2014(empty)


def test_shoaib_2013_csv_tables(tmp_path):
    rng = np.random.default_rng(0)
    for k, pos in enumerate(("Arm", "Belt", "Wrist", "Pocket")):
        rows = ["Timestamp,Ax,Ay,Az,Gx,Gy,Gz,Mx,My,Mz,Activity Label"]
        n_walk, n_run = 120 + k, 110 + 2 * k  # the phones' runs differ in length: aligned by truncation
        for i in range(n_walk + n_run):
            lab = "walking" if i < n_walk else "running"
            rows.append(",".join([str(i * 20)] + [f"{v:.3f}" for v in rng.normal(size=9)] + [lab]))
        (tmp_path / f"{pos}.csv").write_text("\n".join(rows))
    recs = load_shoaib_2013(tmp_path)
    assert len(recs) == 1
    rec = recs[0]
    assert len(rec) == 120 + 110
    assert set(rec.labels) == {"walking", "jogging"}
    assert np.isnan(rec.positions["arm"][:, 4:7]).all()  # no linear acc in 2013
    ws = make_windows(recs)
    assert len(ws) == (window_starts(120).size + window_starts(110).size)
    bad = (tmp_path / "Belt.csv").read_text().replace("running", "swimming", 1)
    (tmp_path / "Belt.csv").write_text(bad)
    with pytest.raises(DataFormatError, match=r"Belt.csv, line \d+: column 11 \(activity\): unknown activity"):
        load_shoaib_2013(tmp_path)


def test_windowing_counts_and_no_straddling(tmp_path):
    arrays, labels = simulate_participant(1, seconds_per_activity=3.1, seed=0)  # 155 samples per segment
    write_shoaib_2014_csv(tmp_path / "Participant_1.csv", arrays, labels)
    ws = make_windows(load_shoaib_2014(tmp_path))
    per_segment = (155 - 100) // 50 + 1
    assert len(ws) == 7 * per_segment
    assert ws.X["pocket"].shape == (len(ws), 100, 9)
    rec_labels = np.asarray(labels)
    for s, lab in zip(ws.start, ws.y, strict=True):
        assert set(rec_labels[s : s + 100]) == {lab}
    assert window_starts(99).size == 0 and window_starts(250).tolist() == [0, 50, 100, 150]

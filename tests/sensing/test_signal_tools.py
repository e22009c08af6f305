"""Each signal tool on synthetic signals with known answers (spec 7 Checks)."""

import math

import numpy as np
import pytest

from polymodal.sensing import signal_tools as st

FS = 50.0


def still(n=100, g=(0.0, 9.81, 0.0)):
    return np.tile(np.asarray(g), (n, 1))


def test_fft_dominant_frequency_of_a_2hz_sine():
    t = np.arange(200) / FS
    acc = still(200)
    acc[:, 1] += 2.0 * np.sin(2 * np.pi * 2.0 * t)
    out = st.dominant_frequency(acc, FS)
    assert abs(out["f0"] - 2.0) <= out["bin_width"]
    assert out["share"] > 0.5


def test_step_count_of_a_synthetic_gait():
    t = np.arange(500) / FS  # 10 s at 1.8 steps/s -> 18 steps
    acc = still(500)
    acc[:, 1] += 2.5 * np.sin(2 * np.pi * 1.8 * t - np.pi / 2)
    out = st.step_cadence(acc, FS)
    assert out["steps"] in (17, 18)
    assert abs(out["cadence"] - 1.8) < 0.05


@pytest.mark.parametrize("g,pitch,roll,tilt", [((0, 9.81, 0), 0.0, 90.0, 0.0), ((0, 0, 9.81), 0.0, 0.0, 90.0),
                                              ((-9.81, 0, 0), 90.0, 0.0, 90.0),
                                              ((0, 9.81 / math.sqrt(2), 9.81 / math.sqrt(2)), 0.0, 45.0, 45.0)])
def test_pitch_roll_tilt_of_known_gravity_vectors(g, pitch, roll, tilt):
    out = st.gravity_orientation(still(100, g), FS)
    assert out["pitch"] == pytest.approx(pitch, abs=0.1)
    assert out["roll"] == pytest.approx(roll, abs=0.1)
    assert out["tilt"] == pytest.approx(tilt, abs=0.1)


def test_sma_and_zero_crossings_on_hand_arrays():
    acc = np.array([[1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]])
    assert st.sma(acc)["sma"] == pytest.approx(6.0)
    x = np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])  # mean 0, 5 sign changes over 6 samples
    assert st.zero_crossings(x, fs=6.0)["zcr_0"] == pytest.approx(5.0)


def test_statistics_axis_correlation_jerk_and_psd_bands():
    t = np.arange(100) / FS
    s = np.sin(2 * np.pi * 2 * t)
    acc = np.stack([s, 2 * s, -s], axis=1)
    stats = st.statistics(acc)
    assert stats["x"]["range"] == pytest.approx(s.max() - s.min(), abs=1e-3)
    assert stats["y"]["rms"] == pytest.approx(2 * np.sqrt(np.mean(s**2)), abs=1e-3)
    corr = st.axis_correlation(acc)
    assert corr["corr_xy"] == pytest.approx(1.0) and corr["corr_xz"] == pytest.approx(-1.0)
    ramp = np.stack([t * 3.0, np.zeros(100), np.zeros(100)], axis=1)  # d/dt = 3 m/s^3
    assert st.jerk(ramp, FS)["jerk_mean"] == pytest.approx(3.0)
    bands = st.psd_bands(still(200) + np.stack([np.zeros(200), 2 * np.sin(2 * np.pi * 2 * np.arange(200) / FS),
                                                 np.zeros(200)], axis=1), FS)
    assert bands["1-3Hz"] > 0.9


def test_quality_flags_on_stuck_nan_saturated_and_biased_channels():
    rng = np.random.default_rng(0)
    ok = still(100) + rng.normal(0, 0.05, (100, 3))
    gyro = rng.normal(0, 0.02, (100, 3))
    assert st.data_quality(ok, gyro)["flag"] == "ok"
    assert st.data_quality(ok, gyro)["q"] == pytest.approx(1.0)
    nan = ok.copy()
    nan[:] = np.nan
    assert st.data_quality(nan, gyro)["flag"] == "failed" and "nan" in st.data_quality(nan, gyro)["issues"]
    stuck = np.tile(ok[0], (100, 1))
    assert st.data_quality(stuck, gyro)["flag"] == "failed"
    assert "stuck" in st.data_quality(stuck, gyro)["issues"]
    zero = np.zeros((100, 3))
    assert "zero" in st.data_quality(zero, gyro)["issues"]
    sat = ok.copy()
    sat[::5, 1] = st.SATURATION
    q = st.data_quality(sat, gyro)
    assert "saturated" in q["issues"] and q["q"] < 1
    biased = ok + 3.0
    q = st.data_quality(biased, gyro)
    assert "bias" in q["issues"] and q["flag"] == "degraded" and 0 < q["q"] < 0.6
    assert st.data_quality(None)["flag"] == "failed"


def test_tools_never_raise_on_nan_and_features_are_json_able():
    import json

    x = np.full((100, 3), np.nan)
    tools = st.analyse_position(x, x)
    json.dumps(tools)
    json.dumps(st.compact_features(tools))
    assert np.all(np.isfinite(st.feature_vector(tools)))

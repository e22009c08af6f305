"""Affective gait features on hand-built skeletons (spec affect.md 3.5, 3.7 Checks)."""

import numpy as np
import pytest

from polymodal.affect.skeleton import GaitFeatures, Skeleton16, foot_strikes, make_synthetic_gaits
from polymodal.affect.skeleton.features import (
    LABAN,
    STEP_FEATURES,
    bounding_box_volume,
    gait_cycle_features,
    inclination,
    joint_angle,
    mean_acceleration,
    mean_jerk,
    mean_speed,
    posture_features,
    triangle_area,
)
from polymodal.affect.skeleton.skeleton import J


def t_pose() -> np.ndarray:
    """A standing T-pose, y up, x lateral (right side at -x), z forward; joints in README order."""
    p = np.zeros((16, 3))
    p[J["root"]] = [0, 1.0, 0]
    p[J["spine"]] = [0, 1.25, 0]
    p[J["neck"]] = [0, 1.5, 0]
    p[J["head"]] = [0, 1.7, 0]
    for side, s in (("l", 1), ("r", -1)):
        p[J[f"{side}_shoulder"]] = [0.2 * s, 1.5, 0]
        p[J[f"{side}_elbow"]] = [0.5 * s, 1.5, 0]
        p[J[f"{side}_hand"]] = [0.8 * s, 1.5, 0]
        p[J[f"{side}_hip"]] = [0.1 * s, 1.0, 0]
        p[J[f"{side}_knee"]] = [0.1 * s, 0.5, 0]
        p[J[f"{side}_foot"]] = [0.1 * s, 0.0, 0]
    return p


def test_geometry_primitives():
    assert joint_angle([1, 0, 0], [0, 0, 0], [0, 1, 0]) == pytest.approx(np.pi / 2)
    assert triangle_area([0, 0, 0], [1, 0, 0], [0, 1, 0]) == pytest.approx(0.5)
    box = np.array([[0, 0, 0], [2, 0, 0], [0, 3, 0], [0, 0, 4], [2, 3, 4]], dtype=float)
    assert bounding_box_volume(box) == pytest.approx(24.0)
    assert inclination([0, 1, 1]) == pytest.approx(np.pi / 4)
    assert inclination([0, 0, 1], up_axis=2) == pytest.approx(0.0)


def test_t_pose_posture_features():
    seq = np.repeat(t_pose()[None], 5, axis=0)
    f = posture_features(seq)
    assert f["angle_neck_shoulders"] == pytest.approx(np.pi)  # shoulders in a line through the neck
    assert f["angle_l_shoulder"] == pytest.approx(np.pi) and f["angle_r_shoulder"] == pytest.approx(np.pi)
    assert f["trunk_inclination"] == pytest.approx(0.0)
    assert f["head_flexion"] == pytest.approx(np.pi)  # head straight above the spine
    assert f["dist_l_hand_root"] == pytest.approx(np.hypot(0.8, 0.5))
    assert f["dist_r_foot_root"] == pytest.approx(np.hypot(0.1, 1.0))
    # hands (+-0.8, 1.5) and neck (0, 1.5) are collinear; feet (+-0.1, 0) and root (0, 1): base 0.2, height 1
    assert f["area_hands_neck"] == pytest.approx(0.0, abs=1e-12)
    assert f["area_feet_root"] == pytest.approx(0.1)
    assert f["volume"] == pytest.approx(0.0)  # a flat pose (z = 0 everywhere) has no volume


def test_bent_pose_angles():
    p = t_pose()
    p[J["l_elbow"]] = [0.2, 1.2, 0]  # upper arm hanging down: 90 degrees at the shoulder
    p[J["head"]] = [0, 1.5 + 0.2 * np.cos(np.pi / 6), 0.2 * np.sin(np.pi / 6)]  # head tipped forward 30 deg
    f = posture_features(p[None])
    assert f["angle_l_shoulder"] == pytest.approx(np.pi / 2)
    assert f["head_flexion"] == pytest.approx(np.pi - np.pi / 6)


def test_constant_velocity_speed_and_zero_acceleration():
    t = np.arange(10)[:, None]
    traj = t * np.array([[3.0, 4.0, 0.0]])  # 5 units per frame
    assert mean_speed(traj) == pytest.approx(5.0)
    assert mean_speed(traj, dt=0.5) == pytest.approx(10.0)
    assert mean_acceleration(traj) == pytest.approx(0.0)
    assert mean_jerk(traj) == pytest.approx(0.0)
    quad = (t ** 2) * np.array([[1.0, 0, 0]])
    assert mean_acceleration(quad) == pytest.approx(2.0)


def test_foot_strikes_on_sinusoid():
    period = 20
    h = 0.1 + 0.05 * np.sin(2 * np.pi * np.arange(100) / period)
    strikes = foot_strikes(h)
    assert len(strikes) == 5
    np.testing.assert_array_equal(np.diff(strikes), period)
    rng = np.random.default_rng(0)
    assert len(foot_strikes(h + 0.002 * rng.standard_normal(100))) == 5  # noise adds no strikes
    right = 0.1 + 0.05 * np.sin(2 * np.pi * np.arange(100) / period + np.pi)
    step, cycle = gait_cycle_features(h, right, dt=0.1)
    assert step == pytest.approx(period / 2)
    assert cycle == pytest.approx(period * 0.1)


def moving_gait():
    return make_synthetic_gaits(n_per_class=1, T=40, seed=3).x[2].astype(np.float64)


def test_feature_count_and_names():
    assert len(STEP_FEATURES) == 29 and len(set(STEP_FEATURES)) == 29
    f = GaitFeatures()
    assert f(moving_gait()).shape == (29,)
    assert GaitFeatures(laban=True)(moving_gait()).shape == (29 + len(LABAN),)
    with pytest.raises(ValueError, match="16, 3"):
        f(np.zeros((10, 15, 3)))


@pytest.mark.parametrize("laban", [False, True])
def test_translation_invariance(laban):
    f = GaitFeatures(laban=laban)
    seq = moving_gait()
    np.testing.assert_allclose(f(seq + np.array([3.0, -2.0, 7.5])), f(seq), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("laban", [False, True])
def test_mirroring_swaps_left_right_features_only(laban):
    f = GaitFeatures(laban=laban)
    seq = moving_gait()
    a, b = f(seq), f(Skeleton16().mirror(seq))
    perm = f.mirror_permutation()
    np.testing.assert_allclose(b, a[perm], rtol=1e-9, atol=1e-12)
    names = f.names
    paired = [n for n in names if "_l_" in f"_{n}_" or "_r_" in f"_{n}_"]
    assert len(paired) == 18  # 2 shoulder angles + 4 root distances + 4 limbs x (speed, accel, jerk)
    for i, n in enumerate(names):
        if n in paired:
            assert perm[i] != i
        else:
            assert perm[i] == i  # symmetric features are unchanged
    # the left/right features really differ on this gait, so the swap is a real check
    li, ri = names.index("speed_l_hand"), names.index("speed_r_hand")
    assert a[li] != pytest.approx(a[ri], rel=1e-6)

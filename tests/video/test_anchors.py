"""Anchors (spec video.md 3.2): encode/decode round trip and the labelling rules on hand cases."""

import math

import numpy as np
import pytest

from polymodal.video.grounding.anchors import (
    ANCHOR_LENGTHS,
    anchor_spans,
    decode,
    encode,
    iou_1d,
    label_anchors,
    label_video,
)


def test_anchor_spans_end_at_t():
    np.testing.assert_array_equal(anchor_spans(10), [[9, 10], [8, 10], [6, 10], [2, 10]])


@pytest.mark.parametrize("gt", [(3.0, 7.0), (10.0, 30.0), (0.0, 1.0), (12.5, 13.5), (5.0, 40.0)])
@pytest.mark.parametrize("t", [4, 11, 20])
@pytest.mark.parametrize("L", ANCHOR_LENGTHS)
def test_decode_encode_round_trip(gt, t, L):
    off, ll = encode(gt, t, L)
    s, e = decode(off, ll, t, L, duration=75)
    assert s == pytest.approx(gt[0]) and e == pytest.approx(gt[1])


def test_encode_hand_values_and_min_length():
    assert encode((6, 10), 10, 4) == (0.0, 0.0)
    off, ll = encode((9.5, 10), 10, 2)  # GT shorter than a clip: length target clamped at 1 clip
    assert off == 0.0 and ll == pytest.approx(math.log(1 / 2))


def test_decode_clips_to_the_video():
    assert decode(1.0, math.log(4), 70, 8, duration=75) == (46.0, 75.0)  # e = 78 -> s = 46, e clipped
    s, e = decode(-2.0, 0.0, 3, 2, duration=75)
    assert (s, e) == (0.0, 0.0)


def test_iou_hull_denominator():
    assert iou_1d([[0, 4]], [[2, 6]])[0, 0] == pytest.approx(2 / 6)
    assert iou_1d([[0, 4]], [[5, 6]])[0, 0] == 0
    assert iou_1d([[0, 0.5]], [[0, 0.25]])[0, 0] == pytest.approx(0.25)  # hull 0.5 clamped to 1


def test_label_iou_rule_hand_case():
    pos, tgt, idx = label_anchors(10, [[6, 10]])
    assert pos.tolist() == [False, True, True, True]
    np.testing.assert_allclose(tgt[2], [0.0, 0.0])
    np.testing.assert_allclose(tgt[1], [0.0, math.log(2)])
    assert idx.tolist() == [-1, 0, 0, 0]


def test_largest_anchor_inside_a_longer_gt():
    pos, tgt, _ = label_anchors(30, [[10, 40]])  # IoU of [22, 30] = 8/30 < 0.5, but it lies inside the GT
    assert pos.tolist() == [False, False, False, True]
    np.testing.assert_allclose(tgt[3], [(40 - 30) / 8, math.log(30 / 8)], rtol=1e-6)
    pos, _, _ = label_anchors(40, [[10, 40]])  # the GT end itself: still inside (sharing the end)
    assert pos[3]
    pos, _, _ = label_anchors(41, [[10, 40]])  # past the end: not inside
    assert not pos.any()


def test_gt_inside_the_smallest_anchor():
    pos, _, _ = label_anchors(10, [[9.2, 9.6]])  # 0.4-clip GT inside [9, 10]; IoU 0.4
    assert pos.tolist() == [True, False, False, False]
    pos, _, _ = label_anchors(10, [[8.5, 9.5]])  # 1 clip long, not shorter than the anchor, IoU 0.5/1.5
    assert not pos[0]


def test_best_iou_gt_is_matched_and_no_gt_is_negative():
    pos, tgt, idx = label_anchors(10, [[0, 3], [8, 10], [9, 12]])
    assert idx[1] == 1  # [8, 10] exactly
    assert label_anchors(10, np.zeros((0, 2)))[0].sum() == 0


def test_label_video_shapes():
    pos, tgt = label_video(20, np.array([[4.0, 8.0]]))
    assert pos.shape == (20, 4) and tgt.shape == (20, 4, 2)
    assert pos[7, 2]  # decision after clip index 7: t = 8, anchor [4, 8]
    assert not pos[:3].any()

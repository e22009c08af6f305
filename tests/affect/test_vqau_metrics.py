"""VQAU metrics on hand-made cases (spec affect.md 1.6, 1.8 Checks)."""

import pytest

from polymodal.affect.vqau import (
    VQAUPrediction,
    VQAURecord,
    bleu4,
    emotion_scores,
    evaluate,
    joint_at,
    rouge_l,
    tiou,
)
from polymodal.affect.vqau.metrics import cited_cues, is_grounded, recall_at_1
from polymodal.affect.vqau.schema import Segment, VideoTimeline


def test_tiou_hand_cases():
    assert tiou((0, 10), (20, 30)) == 0.0  # disjoint
    assert tiou((0, 10), (10, 20)) == 0.0  # touching
    assert tiou((5, 15), (5, 15)) == 1.0  # identical
    assert tiou((2, 4), (0, 10)) == pytest.approx(0.2)  # nested: 2 / 10
    assert tiou((0, 10), (5, 20)) == pytest.approx(5 / 20)  # partial overlap
    with pytest.raises(ValueError):
        tiou((3, 1), (0, 1))


def test_recall_and_joint_hand_cases():
    ious = [0.9, 0.6, 0.4, 0.1]
    right = [True, False, True, True]
    assert recall_at_1(ious, 0.5) == 0.5 and recall_at_1(ious, 0.3) == 0.75 and recall_at_1(ious, 0.7) == 0.25
    assert joint_at(ious, right, 0.5) == 0.25  # only the first query has both
    assert joint_at(ious, right, 0.3) == 0.5


def test_emotion_scores_hand_case():
    s = emotion_scores(["Joy", "Joy", "Fear", "Anger"], ["Joy", "Fear", "Fear", "Anger"])
    assert s["accuracy"] == 0.75
    # per-class F1: Joy 2/3, Fear 2/3, Anger 1 -> macro 7/9
    assert s["macro_f1"] == pytest.approx(7 / 9)


def test_bleu_and_rouge_hand_cases():
    assert bleu4(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu4(["completely different words here"], ["the cat sat on the mat"]) == pytest.approx(0.0, abs=1e-6)
    assert rouge_l(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(1.0)
    # LCS "the cat on the mat" = 5 of 6 tokens each side -> F = 5/6
    assert rouge_l(["the cat was on the mat"], ["the cat sat on the mat"]) == pytest.approx(5 / 6)


def _video():
    segs = [Segment(start=0, end=5, caption="park: a dog runs", audio_tags=("birdsong",)),
            Segment(start=5, end=10, caption="park: friends laugh", audio_tags=("laughter",), affect_cues=("glee",)),
            Segment(start=10, end=15, caption="park: rain starts", audio_tags=("rain",))]
    return VideoTimeline(video_id="1_1", segments=tuple(segs))


def test_grounding_cites_only_window_cues():
    v = _video()
    assert cited_cues("You can hear laughter and glee.", v.cue_vocabulary()) == {"laughter", "glee"}
    assert is_grounded("You can hear laughter.", v, 5, 10)
    assert not is_grounded("You can hear laughter and rain.", v, 5, 10)  # rain is outside the window
    assert not is_grounded("A happy moment.", v, 5, 10)  # cites nothing


def test_evaluate_joint_never_exceeds_recall_or_accuracy():
    v = _video()
    recs = [VQAURecord(id=f"1_1_00000001_Q{i}", video_id="1_1", start=5, end=10, query="q", emotion="Joy",
                       summary="friends laugh in the park") for i in (1, 2, 3)]
    preds = [VQAUPrediction(5, 10, "Joy", 0.9, "friends laugh, laughter"),
             VQAUPrediction(0, 5, "Joy", 0.9, "a dog runs, birdsong"),
             VQAUPrediction(5, 15, "Fear", 0.9, "rain and birdsong")]  # birdsong: outside
    m = evaluate(preds, recs, {"1_1": v})
    assert m["r1@0.5"] == pytest.approx(2 / 3) and m["accuracy"] == pytest.approx(2 / 3)
    assert m["joint@0.5"] == pytest.approx(1 / 3)
    for t in (0.3, 0.5, 0.7):
        assert m[f"joint@{t}"] <= min(m[f"r1@{t}"], m["accuracy"])
    assert m["grounding"] == pytest.approx(2 / 3)

"""The synthetic VQA set of the SparseCut recipe and the JSONL loader."""

import json

import numpy as np
import pytest

from polymodal.core.errors import DataFormatError
from polymodal.llm.synthetic_vqa import (
    ANSWERS,
    QUESTION_TYPES,
    load_vqa_jsonl,
    make_synthetic_vqa,
    render_scene,
)


def test_seeded_balanced_and_one_word():
    a, b = make_synthetic_vqa(40, seed=3), make_synthetic_vqa(40, seed=3)
    assert np.array_equal(a.images, b.images) and a.questions == b.questions and a.answers == b.answers
    assert not np.array_equal(a.images, make_synthetic_vqa(40, seed=4).images)
    assert a.images.shape == (40, 192, 192, 3) and a.images.dtype == np.uint8
    assert [a.qtypes.count(t) for t in QUESTION_TYPES] == [10, 10, 10, 10]
    for q, ans, t in zip(a.questions, a.answers, a.qtypes, strict=True):
        assert ans in ANSWERS[t] and " " not in ans and q.endswith("?")
    assert set(a.answer_set) == {x for t in QUESTION_TYPES for x in ANSWERS[t]}


def test_answers_match_the_rendered_scene():
    ds = make_synthetic_vqa(200, seed=1)
    for i, (ans, t) in enumerate(zip(ds.answers, ds.qtypes, strict=True)):
        img = ds.images[i].astype(int)
        coloured = (np.abs(img - 30).sum(-1) > 60)
        if t == "count":
            # shapes sit in distinct cells: count the occupied cells of the 3 x 3 grid
            cells = sum(coloured[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64].sum() > 100 for r in range(3)
                        for c in range(3))
            assert ("one", "two", "three")[cells - 1] == ans
    # a dot is a white 4 x 4 patch, visible at 192 px
    dot = render_scene([{"shape": "square", "colour": "red", "cell": (1, 1), "dot": True}])
    plain = render_scene([{"shape": "square", "colour": "red", "cell": (1, 1), "dot": False}])
    diff = np.abs(dot.astype(int) - plain.astype(int)).sum(-1) > 0
    assert diff.sum() == 16


def test_answer_distribution_not_degenerate():
    ds = make_synthetic_vqa(400, seed=0)
    for t in QUESTION_TYPES:
        answers = [a for a, tt in zip(ds.answers, ds.qtypes, strict=True) if tt == t]
        counts = {a: answers.count(a) for a in ANSWERS[t]}
        assert max(counts.values()) / len(answers) < 0.6, (t, counts)


def test_jsonl_loader_and_errors(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((10, 12, 3), 200, np.uint8)).save(tmp_path / "a.png")
    good = tmp_path / "vqa.jsonl"
    good.write_text(json.dumps({"image": "a.png", "question": "What colour?", "answer": "grey", "type": "colour"})
                    + "\n\n")
    ds = load_vqa_jsonl(good, size=32)
    assert ds.images.shape == (1, 32, 32, 3) and ds.answers == ["grey"] and ds.qtypes == ["colour"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"image": "a.png", "question": "q", "answer": "a"}) + "\n{oops\n")
    with pytest.raises(DataFormatError, match="line 2"):
        load_vqa_jsonl(bad)
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"image": "nope.png", "question": "q", "answer": "a"}) + "\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_vqa_jsonl(missing)
    with pytest.raises(DataFormatError, match="file not found"):
        load_vqa_jsonl(tmp_path / "absent.jsonl")


def test_easy_curriculum_one_shape():
    ds = make_synthetic_vqa(30, seed=2, qtypes=("colour", "position", "detail"), max_shapes=1)
    assert set(ds.qtypes) == {"colour", "position", "detail"} and "count" not in ds.answer_set
    for img in ds.images:  # exactly one occupied cell
        coloured = np.abs(img.astype(int) - 30).sum(-1) > 60
        assert sum(coloured[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64].sum() > 100 for r in range(3)
                   for c in range(3)) == 1
    with pytest.raises(ValueError, match="count"):
        make_synthetic_vqa(4, max_shapes=1)

"""Sticker data (spec 2.2, 2.3, 2.6): split_views with/without the bug flag, SER30K loader errors, synthetic data,
interpreters (scripted backend only), the tiny featurizer."""

import json

import numpy as np
import pytest
from PIL import Image

from polymodal.affect.stickers import (
    LLMInterpreter,
    MissingViewsError,
    TemplateInterpreter,
    ViewFeaturizer,
    join_views,
    load_image_folder,
    load_ser30k,
    make_synthetic,
    split_views,
)
from polymodal.core.errors import DataFormatError
from polymodal.llm import ScriptedBackend

SAMPLE = ("#The sticker's **intention**: Mocking a friend, playful teasing.\n"
          "#The sticker's **style**: Flat pastel cartoon.\n"
          "#The sticker's **main role**: A round cat with squinted eyes.\n"
          "#The sticker's **gesture**: Covering its mouth with a paw.")


def test_split_views_four_sections():
    assert split_views(SAMPLE) == ["Mocking a friend, playful teasing.", "Flat pastel cartoon.",
                                   "A round cat with squinted eyes.", "Covering its mouth with a paw."]


def test_split_views_text_order_and_canonical_order():
    text = join_views(["I", "S", "R", "G"])
    swapped = "\n".join(reversed(text.splitlines()))
    assert split_views(swapped) == ["G", "R", "S", "I"]
    assert split_views(swapped, order="canonical") == ["I", "S", "R", "G"]


def test_split_views_bug_flag_repeats_whole_lowercased_text():
    assert split_views(SAMPLE, replicate_view_text_bug=True) == [SAMPLE.lower()] * 4


def test_split_views_missing_header_names_it():
    with pytest.raises(MissingViewsError, match="gesture"):
        split_views(SAMPLE.split("\n#The sticker's **gesture**")[0])


def _write_set(tmp_path, records):
    (tmp_path / "topicA").mkdir()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "topicA" / "a.png")
    p = tmp_path / "train.json"
    p.write_text(json.dumps({"annotations": records}))
    return p


def test_ser30k_loader_reads_topic_folder_and_text(tmp_path):
    p = _write_set(tmp_path, [{"topic": "topicA", "file_name": "a.png", "anno": 3, "text": SAMPLE}])
    ds = load_ser30k(p, size=32)
    assert ds.images.shape == (1, 3, 32, 32) and ds.labels.tolist() == [2] and ds.texts == [SAMPLE]


@pytest.mark.parametrize("record, field", [
    ({"topic": "topicA", "file_name": "a.png"}, "anno"),
    ({"topic": "topicA", "file_name": "a.png", "anno": 8}, "anno"),
    ({"topic": "topicA", "file_name": "a.png", "anno": 0}, "anno"),
    ({"topic": "topicA", "file_name": "a.png", "anno": "x"}, "anno"),
    ({"topic": "topicA", "anno": 1}, "file_name"),
    ({"topic": "topicA", "file_name": "missing.png", "anno": 1}, "file_name"),
])
def test_malformed_annotation_names_file_and_field(tmp_path, record, field):
    p = _write_set(tmp_path, [record])
    with pytest.raises(DataFormatError) as e:
        load_ser30k(p)
    assert str(p) in str(e.value) and f"'{field}'" in str(e.value) and "annotations[0]" in str(e.value)


def test_missing_annotations_key_and_required_text(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"images": []}))
    with pytest.raises(DataFormatError, match="'annotations'"):
        load_ser30k(p)
    p = _write_set(tmp_path, [{"topic": "topicA", "file_name": "a.png", "anno": 1}])
    with pytest.raises(DataFormatError, match="'text'"):
        load_ser30k(p, require_text=True)


def test_image_folder(tmp_path):
    for c in ("joy", "sad"):
        (tmp_path / c).mkdir()
        Image.new("RGB", (10, 10)).save(tmp_path / c / "1.jpg")
    ds = load_image_folder(tmp_path, size=32)
    assert ds.class_names == ("joy", "sad") and ds.labels.tolist() == [0, 1] and not ds.has_texts


def test_synthetic_is_seeded_and_noisy_text():
    a, b = make_synthetic(140, seed=3), make_synthetic(140, seed=3)
    assert np.array_equal(a.labels, b.labels) and a.texts == b.texts and bool((a.images == b.images).all())
    assert a.images.shape == (140, 3, 96, 96) and set(a.labels.tolist()) == set(range(7))
    agree = np.mean([m["text_label"] == y for m, y in zip(a.meta, a.labels, strict=True)])
    assert 0.55 < agree < 0.85  # 30 % of the descriptions describe another emotion
    assert all(len(split_views(t)) == 4 for t in a.texts)


def test_template_and_llm_interpreters_with_scripted_backend():
    assert split_views(TemplateInterpreter().describe("a cat")) == ["a cat"] * 4
    backend = ScriptedBackend(["no headers here", SAMPLE])
    interp = LLMInterpreter(backend)
    assert interp.describe("a cat covering its mouth") == SAMPLE
    assert len(backend.calls) == 2 and "#The sticker's gesture" in backend.calls[0]["messages"][0]["content"]
    assert [t["ok"] for t in interp.trace] == [False, True]
    with pytest.raises(MissingViewsError):
        LLMInterpreter(ScriptedBackend(["bad", "still bad"])).describe("x")
    fb = LLMInterpreter(ScriptedBackend(["bad", "still bad"]), fallback=TemplateInterpreter())
    assert len(split_views(fb.describe("x"))) == 4


def test_tiny_featurizer_views_and_bug_flag():
    texts = [SAMPLE, SAMPLE]
    ids = ViewFeaturizer("tiny").featurize(texts)
    assert ids.shape == (2, 4, 64) and not (ids[0, 0] == ids[0, 1]).all()
    bug = ViewFeaturizer("tiny", replicate_view_text_bug=True).featurize(texts)
    assert (bug[0, 0] == bug[0, 1]).all()
    with pytest.raises(MissingViewsError, match="sample 1"):
        ViewFeaturizer("tiny").featurize([SAMPLE, None])

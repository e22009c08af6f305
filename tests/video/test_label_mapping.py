"""Audio -> video label mapping (src/polymodal/video/label_mapping.py; spec video.md 2.4, 2.7 Checks)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.video.label_mapping import (
    LLM_PROMPT,
    LabelMapping,
    build_label_mapping,
    identity_mapping,
    mapping_from_relation,
)
from polymodal.video.synth import AUDIO_CLASSES, VIDEO_CLASSES, audio_video_relation

AUDIO = ("engine", "bell", "water")
VIDEO = ("driving a car", "ringing a bell", "swimming", "dancing")


class FakeEncoder:
    """similarity = hand-made cosine table (so the softmax / threshold arithmetic can be checked by hand)."""

    name = "fake-encoder"

    def __init__(self, sim: np.ndarray):
        self.sim = sim
        self.calls = 0

    def similarity(self, a, b):
        self.calls += 1
        assert list(a) == list(AUDIO) and list(b) == list(VIDEO)
        return self.sim


SIM = np.array([[0.5, 0.1, 0.1, 0.45],
                [0.0, 0.9, 0.0, 0.0],
                [0.1, 0.1, 0.6, 0.1]])


def test_encoder_mapping_is_a_thresholded_row_softmax(tmp_path):
    enc = FakeEncoder(SIM)
    m = build_label_mapping(AUDIO, VIDEO, "encoder", encoder=enc, cache_dir=tmp_path)
    z = np.exp(SIM[0] / 0.05)
    row0 = z / z.sum()
    assert row0[3] > 0.1 and row0[1] < 0.1
    assert m.matrix[0] == pytest.approx(np.where(row0 >= 0.1, row0, 0.0))
    assert m.matrix[1, 1] == pytest.approx(1.0, abs=1e-6) and m.matrix[1, [0, 2, 3]].sum() == 0
    assert m.backend == "encoder" and m.shape == (3, 4)
    assert np.isfinite(m.matrix).all() and (m.matrix >= 0).all() and (m.matrix <= 1).all()
    assert (m.matrix.max(axis=1) > 0).all()
    # cached: a second build reads the JSON, the encoder is not asked again
    again = build_label_mapping(AUDIO, VIDEO, "encoder", encoder=enc, cache_dir=tmp_path)
    assert enc.calls == 1 and np.allclose(again.matrix, m.matrix)
    saved = json.loads(next(tmp_path.glob("encoder-*.json")).read_text())
    assert saved["audio_labels"] == list(AUDIO) and saved["video_labels"] == list(VIDEO)
    assert saved["backend"] == "encoder"


def test_row_keeps_its_best_entry_even_below_the_threshold(tmp_path):
    sim = np.zeros((3, 4))  # uniform rows: every entry 0.25 >= 0.1 kept
    m = build_label_mapping(AUDIO, VIDEO, "encoder", encoder=FakeEncoder(sim), cache=False, min_weight=0.3)
    assert (m.matrix.max(axis=1) > 0).all() and ((m.matrix > 0).sum(axis=1) == 1).all()


def test_project_normalises_m_transpose_p():
    m = LabelMapping(np.array([[1.0, 0.5], [0.0, 1.0]]), ("a", "b"), ("x", "y"), "table")
    q = m.project(torch.tensor([0.5, 0.5]))
    assert torch.allclose(q, torch.tensor([0.5, 0.75]) / 1.25)  # M^T p = (0.5, 0.25 + 0.5)
    batch = m.project(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(batch, torch.tensor([[2 / 3, 1 / 3], [0.0, 1.0]]))
    zero = LabelMapping(np.zeros((2, 2)), ("a", "b"), ("x", "y"), "table")
    assert torch.allclose(zero.project(torch.tensor([0.3, 0.7])), torch.tensor([0.5, 0.5]))


def test_identity_table_gives_q_equal_p_audio():
    labels = ("a", "b", "c")
    m = build_label_mapping(labels, labels, "table", table={k: {k: 1.0} for k in labels})
    assert np.array_equal(m.matrix, np.eye(3)) and np.array_equal(identity_mapping(labels).matrix, np.eye(3))
    p = torch.tensor([0.2, 0.5, 0.3])
    assert torch.allclose(m.project(p), p)


def test_table_files_and_their_errors(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"engine": {"driving a car": 1.0}, "bell": {"ringing a bell": 0.9}}))
    m = build_label_mapping(AUDIO, VIDEO, "table", table=path)
    assert m.matrix[0, 0] == 1.0 and m.matrix[1, 1] == 0.9 and m.matrix[2].sum() == 0
    saved = m.save(tmp_path / "mapping.json")
    assert np.array_equal(LabelMapping.load(saved).matrix, m.matrix)
    # a saved mapping file works as a table too, but only for the same labels
    assert np.array_equal(build_label_mapping(AUDIO, VIDEO, "table", table=saved).matrix, m.matrix)
    with pytest.raises(DataFormatError, match="built for"):
        build_label_mapping(AUDIO[:2], VIDEO, "table", table=saved)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"engine": {"flying": 1.0}}))
    with pytest.raises(DataFormatError, match="unknown video label 'flying'"):
        build_label_mapping(AUDIO, VIDEO, "table", table=bad)
    bad.write_text(json.dumps({"engine": {"driving a car": 1.5}}))
    with pytest.raises(DataFormatError, match="weight 1.5"):
        build_label_mapping(AUDIO, VIDEO, "table", table=bad)
    bad.write_text("{not json")
    with pytest.raises(DataFormatError, match="line 1"):
        build_label_mapping(AUDIO, VIDEO, "table", table=bad)
    with pytest.raises(ConfigError, match="needs table"):
        build_label_mapping(AUDIO, VIDEO, "table")
    with pytest.raises(ConfigError, match="backend"):
        build_label_mapping(AUDIO, VIDEO, "clip")


def test_validation_rejects_bad_matrices():
    with pytest.raises(ConfigError, match="shape"):
        LabelMapping(np.ones((2, 3)), ("a", "b"), ("x", "y"), "table")
    with pytest.raises(ConfigError, match="non-finite"):
        LabelMapping(np.array([[np.nan, 0.0]]), ("a",), ("x", "y"), "table")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        LabelMapping(np.array([[-0.1, 0.0]]), ("a",), ("x", "y"), "table")
    with pytest.raises(ConfigError, match="distinct"):
        LabelMapping(np.ones((2, 1)), ("a", "a"), ("x",), "table")
    with pytest.raises(DataFormatError, match="missing field 'matrix'"):
        LabelMapping.from_dict({"audio_labels": ["a"], "video_labels": ["x"]})


class ScriptedScorer:
    """A scoring backend stand-in: log p(' Yes') - log p(' No') = +2 when the video label contains the audio word."""

    model_name = "scripted-scorer"

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def score_continuations(self, prompt, continuations):
        assert list(continuations) == [" Yes", " No"]
        self.prompts.append(prompt)
        audio = prompt.split("Audio event: ")[1].split(".")[0]
        video = prompt.split("a video of ")[1].split("?")[0]
        return [-0.1, -2.1] if audio in video else [-2.1, -0.1]


def test_llm_mapping_is_the_sigmoid_of_the_yes_no_margin(tmp_path):
    scorer = ScriptedScorer()
    m = build_label_mapping(AUDIO, VIDEO, "llm", llm=scorer, cache_dir=tmp_path)
    hi, lo = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(2.0))
    assert m.matrix[1, 1] == pytest.approx(hi) and m.matrix[0, 0] == pytest.approx(lo)
    assert m.backend == "llm" and len(scorer.prompts) == 12
    assert scorer.prompts[0] == LLM_PROMPT.format(audio="engine", video="driving a car") + "\nAnswer:"
    build_label_mapping(AUDIO, VIDEO, "llm", llm=scorer, cache_dir=tmp_path)
    assert len(scorer.prompts) == 12  # cached


def test_llm_mapping_through_a_tiny_random_llama(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from polymodal.llm import TransformersBackend

    pre = pre_tokenizers.Whitespace()
    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2}
    for a in AUDIO:
        for v in VIDEO:
            for w, _ in pre.pre_tokenize_str(LLM_PROMPT.format(audio=a, video=v) + "\nAnswer: Yes No"):
                vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                  eos_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, pad_token_id=1)
    backend = TransformersBackend(LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama")
    m = build_label_mapping(AUDIO, VIDEO, "llm", llm=backend, cache=False)
    assert m.shape == (3, 4) and np.isfinite(m.matrix).all()
    assert ((m.matrix > 0) & (m.matrix < 1)).all()
    lp_yes, lp_no = backend.score_continuations(LLM_PROMPT.format(audio="bell", video="swimming") + "\nAnswer:",
                                                [" Yes", " No"])
    assert m.matrix[1, 2] == pytest.approx(1 / (1 + math.exp(-(lp_yes - lp_no))), rel=1e-5)


def test_oracle_mapping_from_the_synthetic_relation():
    m = mapping_from_relation(audio_video_relation(), AUDIO_CLASSES, VIDEO_CLASSES)
    assert m.shape == (6, 10) and np.allclose(m.matrix.max(axis=1), 1.0)

"""OVG-HQ-Unify model and losses (spec video.md 3.3-3.4): shapes, causality, carried state, losses by hand."""

import math

import pytest
import torch

from polymodal.video.grounding.losses import (
    LossWeights,
    distill_kl,
    distill_loss,
    focal_loss,
    grounding_loss,
    span_l1,
    student_modality,
)
from polymodal.video.grounding.model import MEMORIES, OVGConfig, OVGHQUnify

torch.set_num_threads(1)
D_IN = 24


def _model(memory="ttt", refine=True, seed=0):
    torch.manual_seed(seed)
    m = OVGHQUnify(OVGConfig(input_dim=D_IN, width=32, heads=4, memory=memory, refine=refine, dropout=0.0,
                             input_dropout=0.0, window=8, anchor_lengths=(1, 2, 4, 8)))
    with torch.no_grad():  # non-zero refinement so PMB #2 matters in the checks
        if refine:
            m.refine_out.weight.normal_(0, 0.1)
    return m.eval()


def _inputs(B=2, n=20, W=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, W - 1 + n, D_IN, generator=g)
    mask = torch.ones(B, W - 1 + n, dtype=torch.bool)
    mask[:, : W - 1] = False
    x[:, : W - 1] = 0
    q = {"text": torch.randn(B, 5, D_IN, generator=g), "segment": torch.randn(B, 3, D_IN, generator=g),
         "image": torch.randn(B, 1, D_IN, generator=g)}
    return x, mask, q


@pytest.mark.parametrize("memory", MEMORIES)
def test_shapes_and_causality(memory):
    m = _model(memory)
    x, mask, q = _inputs()
    query = m.encode_query(q, "text")
    with torch.no_grad():
        out, _ = m(x, mask, query)
        assert out["logits"].shape == (2, 20, 4, 2) and out["spans"].shape == (2, 20, 4, 2)
        assert len(out["features"]) == 2 and out["features"][0].shape == (2, 20, 4, 32)
        cut = 7 + 11  # change clips from index 11 on: decisions 0..10 must not move
        x2 = x.clone()
        x2[:, cut:] = torch.randn_like(x2[:, cut:])
        out2, _ = m(x2, mask, query)
    torch.testing.assert_close(out2["logits"][:, :11], out["logits"][:, :11])
    torch.testing.assert_close(out2["spans"][:, :11], out["spans"][:, :11])
    assert not torch.allclose(out2["logits"][:, 11:], out["logits"][:, 11:])


@pytest.mark.parametrize("memory", ["ttt", "lstm"])
def test_carried_state_equals_one_pass(memory):
    m = _model(memory)
    x, mask, q = _inputs()
    query = m.encode_query(q, "hybrid")
    with torch.no_grad():
        out, st = m(x, mask, query)
        a, st1 = m(x[:, : 7 + 9], mask[:, : 7 + 9], query)  # decisions 0..8
        b, st2 = m(x[:, 9:], mask[:, 9:], query, st1)  # decisions 9..19 (7 clips of context)
    torch.testing.assert_close(torch.cat([a["logits"], b["logits"]], 1), out["logits"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.cat([a["spans"], b["spans"]], 1), out["spans"], atol=1e-5, rtol=1e-5)


def test_ttt_memory_carries_information_across_windows():
    """With the TTT memory a decision depends on clips older than its window; without memory (and without the
    PMB #2 refinement, whose TTT state is carried too) it does not."""
    x, mask, q = _inputs(n=20)
    for memory, refine, depends in (("ttt", False, True), ("lstm", False, True), ("none", True, True),
                                    ("none", False, False), ("attention", False, False)):
        m = _model(memory, refine)
        query = m.encode_query(q, "text")
        x2 = x.clone()
        x2[:, 7:9] = torch.randn_like(x2[:, 7:9])  # clips 0, 1: outside the window of decision 19
        with torch.no_grad():
            o1, _ = m(x, mask, query)
            o2, _ = m(x2, mask, query)
        assert torch.allclose(o1["logits"][:, -1], o2["logits"][:, -1]) is (not depends), (memory, refine)


def test_hybrid_query_and_modalities():
    m = _model()
    _, _, q = _inputs()
    tok, pad = m.encode_query(q, "hybrid")
    assert tok.shape == (2, 3 + 5, 32) and not pad.any()
    tok, pad = m.encode_query(q, "text", {"text": torch.tensor([[True] * 5, [True] * 3 + [False] * 2])})
    assert pad[1].tolist() == [False] * 3 + [True] * 2
    with pytest.raises(ValueError, match="modality"):
        m.encode_query(q, "audio")
    with pytest.raises(KeyError):
        m.encode_query({"text": q["text"]}, "hybrid")


def test_no_refinement_outputs_are_the_decoder_outputs():
    m = _model(refine=False)
    x, mask, q = _inputs()
    with torch.no_grad():
        out, st = m(x, mask, m.encode_query(q, "image"))
    assert out["logits"] is out["init_logits"] and st.refine is None


def test_bad_config():
    with pytest.raises(ValueError, match="memory"):
        OVGConfig(memory="gru")
    with pytest.raises(ValueError, match="window"):
        OVGConfig(window=4)


# ------------------------------------------------------------------------------------------------ losses
def test_focal_loss_hand_value():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])  # p_fg = 0.75, 0.5
    positive = torch.tensor([True, False])
    l_pos = -0.9 * (1 - 0.75) ** 2 * math.log(0.75)
    l_neg = -0.1 * (1 - 0.5) ** 2 * math.log(0.5)
    assert focal_loss(logits, positive).item() == pytest.approx((l_pos + l_neg) / 2, rel=1e-6)
    valid = torch.tensor([True, False])
    assert focal_loss(logits, positive, valid).item() == pytest.approx(l_pos, rel=1e-6)


def test_span_l1_only_on_positives():
    spans = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    tgt = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert span_l1(spans, tgt, torch.tensor([True, False])).item() == pytest.approx(1.5)
    assert span_l1(spans, tgt, torch.tensor([False, False])).item() == 0.0


def test_distillation_kl_default_equals_hand_value_and_quirk_differs():
    s = torch.tensor([[1.0, -1.0]])
    t = torch.tensor([[0.0, 2.0]])
    T = 2.0
    p = torch.softmax(t / T, -1)
    q = torch.softmax(s / T, -1)
    hand = float((p * (p.log() - q.log())).sum()) * T * T
    assert distill_kl(s, t, T).item() == pytest.approx(hand, rel=1e-6)
    quirk = distill_kl(s, t, T, replicate_double_softmax=True).item()
    q2 = torch.log_softmax(torch.softmax(s / T, -1), -1)
    assert quirk == pytest.approx(float((p * (p.log() - q2)).sum()) * T * T, rel=1e-6)
    assert abs(quirk - hand) > 1e-3


def test_distill_loss_is_mean_of_four_terms():
    torch.manual_seed(0)
    st = {"logits": torch.randn(2, 3, 4, 2), "spans": torch.randn(2, 3, 4, 2),
          "features": [torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)]}
    te = {k: (v + 1 if not isinstance(v, list) else [f + 1 for f in v]) for k, v in st.items()}
    total, terms = distill_loss(st, te)
    assert terms["span_mse"] == pytest.approx(1.0) and terms["feat0_mse"] == pytest.approx(1.0)
    assert total.item() == pytest.approx(sum(terms.values()) / 4, rel=1e-6)


def test_grounding_loss_weights_and_aux():
    m = _model()
    x, mask, q = _inputs()
    out, _ = m(x, mask, m.encode_query(q, "text"))
    pos = torch.zeros(2, 20, 4, dtype=torch.bool)
    pos[:, 5, 2] = True
    valid = torch.ones_like(pos)
    tgt = torch.zeros(2, 20, 4, 2)
    total, logs = grounding_loss(out, pos, tgt, valid, LossWeights(aux=False))
    assert total.item() == pytest.approx(10 * logs["cls"] + logs["reg"], rel=1e-5)
    total.backward()
    total2, logs2 = grounding_loss(out, pos, tgt, valid)
    assert "aux" in logs2 and total2.item() > total.item()


def test_student_modality_cycles():
    assert [student_modality(i) for i in range(5)] == ["hybrid", "segment", "text", "image", "hybrid"]

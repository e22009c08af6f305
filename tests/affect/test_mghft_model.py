"""MGHFT (spec 2.4-2.6 Checks): losses on hand-made batches, token selection counts, injection == addition,
derived positional table, stage-4 quirk flag, TGFA token 0, missing views at inference."""

import math

import pytest
import torch
import torch.nn.functional as F

from polymodal.affect.stickers import (
    MGHFT,
    PVT,
    TGFA,
    HashingBagEncoder,
    MissingViewsError,
    attend_repeated,
    global_text_fusion,
    info_nce,
    local_reattention,
    selection_counts,
    structure_loss,
)
from polymodal.affect.stickers.mghft import lift_attention

torch.set_num_threads(1)


def test_info_nce_constant_features_is_log_batch():
    a = torch.ones(5, 8)
    assert info_nce(a, a.clone(), 0.07).item() == pytest.approx(math.log(5), abs=1e-5)


def test_info_nce_aligned_orthogonal_pairs_is_zero_at_low_temperature():
    e = torch.eye(4, 16)
    assert info_nce(e, 3 * e, temperature=0.01).item() < 1e-6
    assert info_nce(e, e.roll(1, 0), temperature=0.01).item() > 10  # misaligned pairs are heavily penalised


def test_structure_loss_zero_for_equal_similarity_matrices():
    v = torch.randn(6, 10)
    q, _ = torch.linalg.qr(torch.randn(10, 10))
    assert structure_loss(v, v @ q).abs().item() < 1e-5  # a rotation keeps every cosine
    assert structure_loss(v, torch.randn(6, 10)).item() > 0


def test_structure_loss_hand_computed():
    v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # cos matrix I -> sims [[1, .5], [.5, 1]]
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # cos all 1 -> sims all 1 -> uniform rows
    pv = torch.softmax(torch.tensor([1.0, 0.5]), 0)
    expected = 2 * (0.5 * (math.log(0.5) - math.log(pv[0])) + 0.5 * (math.log(0.5) - math.log(pv[1])))
    assert structure_loss(v, t).item() == pytest.approx(expected, abs=1e-6)


def test_token_selection_counts_default_96px():
    assert selection_counts((1, 2, 5, 8), (8, 4, 2, 1), alpha=8) == [512, 256, 160, 64]
    pvt = PVT(img_size=96)
    stages = pvt.forward_stages(torch.rand(2, 3, 96, 96))
    assert [s.tokens.shape[1] for s in stages] == [576, 144, 36, 9]
    counts = [local_reattention(s, 8).shape[1] for s in stages]
    assert counts == [512, 256, 160, 64]


def test_token_selection_too_small_image_fails_clearly():
    with pytest.raises(ValueError, match="too small"):
        MGHFT(7, img_size=64)


def test_lift_attention_rows_stay_stochastic_and_spread_uniformly():
    attn = torch.softmax(torch.randn(1, 2, 17, 5), -1)  # 4x4 grid, sr 2 -> 4 reduced + CLS
    lifted = lift_attention(attn, (4, 4), 2)
    assert lifted.shape == (1, 2, 17, 17)
    assert torch.allclose(lifted.sum(-1), torch.ones(1, 2, 17))
    assert torch.allclose(lifted[..., 0], attn[..., -1])  # CLS key moved first
    assert torch.allclose(lifted[..., 1], attn[..., 0] / 4)  # token (0,0) lies in reduced cell 0


def test_attention_over_one_repeated_vector_equals_addition():
    torch.manual_seed(0)
    tokens, text = torch.randn(3, 50, 16), torch.randn(3, 16)
    out = tokens + attend_repeated(tokens, text)
    assert torch.allclose(out, tokens + text[:, None, :], atol=1e-6)


def test_global_text_fusion_formula():
    g, t = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    expected = g + torch.softmax(g @ t.transpose(1, 2), -1) @ t
    assert torch.allclose(global_text_fusion(g, t), expected)


def test_positional_table_derived_996_and_from_config():
    m = MGHFT(7, embed_dim=32, fusion_dim=16, fusion_heads=2, fusion_mlp=32)
    assert m.n_visual == 996 and m.tgfa.pos.shape[1] == 996
    m2 = MGHFT(7, img_size=128, alpha=4, embed_dim=32, fusion_dim=16, fusion_heads=2, fusion_mlp=32)
    assert m2.n_visual == 4 + 4 * (64 + 32 + 20 + 8) == m2.tgfa.pos.shape[1]


def test_tgfa_shape_and_token0_selection():
    torch.manual_seed(0)
    tg = TGFA(24, dim=16, heads=2, mlp=32, n_visual=10, dropout=0.0).eval()
    vis, txt = torch.randn(3, 10, 24), torch.randn(3, 8, 24)
    out = tg(vis, txt)
    assert out.shape == (3, 16)
    assert torch.allclose(out, tg(vis, txt, return_tokens=True)[:, 0], atol=1e-5)


def _small(**kw):
    torch.manual_seed(0)
    return MGHFT(7, embed_dim=32, fusion_dim=16, fusion_heads=2, fusion_mlp=32, drop_path=0.0, dropout=0.0, **kw).eval()


def test_forward_backward_and_selected_counts():
    m = _small()
    m.train()
    out = m(torch.rand(4, 3, 96, 96), torch.randn(4, 4, 384), return_parts=True)
    assert out["logits"].shape == (4, 7)
    assert out["selected"] == [512, 256, 160, 64]
    assert out["visual_tokens"].shape == (4, 996, 32) and out["text_tokens"].shape == (4, 8, 32)
    loss = m.loss(out, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss) and m.l_proj.weight.grad is not None


def test_stage4_quirk_changes_only_the_fourth_local_text_token():
    x, v = torch.rand(2, 3, 96, 96), torch.randn(2, 4, 384)
    a = _small()
    b = _small(replicate_stage4_text_quirk=True)
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        la, lb = a(x, v, return_parts=True)["local_text"], b(x, v, return_parts=True)["local_text"]
    assert torch.allclose(la[:, :3], lb[:, :3])
    assert not torch.allclose(la[:, 3], lb[:, 3])
    assert torch.allclose(lb[:, 3], lb[:, 2])


def test_no_contrastive_and_mean_fusion_variants():
    x, v = torch.rand(2, 3, 96, 96), torch.randn(2, 4, 384)
    assert _small(use_contrastive=False)(x, v)["contrastive"].item() == 0.0
    assert _small(fusion="mean")(x, v)["logits"].shape == (2, 7)


def test_missing_views_at_inference_is_a_clear_error():
    m = _small()
    with pytest.raises(MissingViewsError, match="four view"):
        m(torch.rand(1, 3, 96, 96), None)


def test_tiny_text_encoder_takes_hashed_ids():
    m = _small(text_encoder=HashingBagEncoder(384, buckets=64))
    ids = torch.randint(0, 65, (2, 4, 12))
    out = m(torch.rand(2, 3, 96, 96), ids)
    F.cross_entropy(out["logits"], torch.tensor([1, 2])).backward()
    assert m.text_encoder.bag.weight.grad is not None


def test_text_norm_makes_l2_normalised_view_embeddings_enter_at_full_scale():
    # MiniLM embeddings are L2-normalised (components ~0.05); the paper's BERT features have norms ~10-15. Without the
    # LayerNorm the text vectors were ~10x weaker than the visual tokens they are added to (the defect fixed here).
    v = F.normalize(torch.randn(3, 4, 384), dim=-1)
    m = _small()
    with torch.no_grad():
        assert torch.allclose(m.encode_text(v), m.encode_text(15.0 * v), rtol=1e-2, atol=1e-2)  # scale-free (up to LN eps)
        raw = _small(text_norm=False)
        raw.load_state_dict(m.state_dict(), strict=False)
        assert m.encode_text(v).std() > 5 * raw.encode_text(v).std()
        assert torch.allclose(raw.encode_text(v), raw.l_proj(v))


def test_fusion_parameters_are_everything_but_the_backbone():
    m = _small()
    fusion = {id(p) for p in m.fusion_parameters()}
    backbone = {id(p) for p in m.backbone.parameters()}
    assert not fusion & backbone
    assert fusion | backbone == {id(p) for p in m.parameters()}
    assert id(m.l_proj.weight) in fusion and id(m.head.weight) in fusion and id(m.tgfa.pos) in fusion

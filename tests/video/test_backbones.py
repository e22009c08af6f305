import pytest
import torch

from polymodal.video import backbones as B


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_clip_models_shapes_and_features():
    x = torch.rand(2, 8, 3, 32, 32)
    for m in (B.make_student(10), B.make_cnn_teacher(10), B.make_vit_teacher(10)):
        out = m.forward_features(x)
        assert out.logits.shape == (2, 10) and out.pooled.shape == (2, m.feat_dim)
        assert out.fmap.dim() == 5 and out.fmap.shape[1] == m.feat_dim
        assert torch.equal(m.eval()(x), m.forward_features(x).logits)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        B.make_student(10)(torch.rand(8, 3, 32, 32))
    with pytest.raises(ValueError, match="built for 8 frames"):
        B.make_vit_teacher(10)(torch.rand(1, 4, 3, 32, 32))


def test_sizes_student_much_smaller_than_teachers():
    x = torch.rand(1, 8, 3, 32, 32)
    s, c, v = B.make_student(10), B.make_cnn_teacher(10), B.make_vit_teacher(10)
    ps, pc, pv = (B.count_parameters(m) for m in (s, c, v))
    assert ps < pc < pv
    assert B.count_macs(s, x) < B.count_macs(c, x)


def test_count_macs_by_hand():
    lin = torch.nn.Linear(4, 3)
    assert B.count_macs(lin, torch.rand(5, 4)) == 5 * 3 * 4
    conv = torch.nn.Conv2d(2, 6, 3, padding=1, groups=2)
    assert B.count_macs(conv, torch.rand(1, 2, 5, 5)) == 6 * 25 * 1 * 9
    att = B.Attention(8, 2)
    # qkv 3*8*8 per token + proj 8*8 per token + 2 * n^2 * d matmuls, n = 5 tokens
    assert B.count_macs(att, torch.rand(1, 5, 8)) == 5 * 24 * 8 + 5 * 8 * 8 + 2 * 25 * 8


def test_temporal_attention_mixes_frames_and_vit_is_not_frame_permutation_invariant():
    torch.manual_seed(0)
    v = B.make_vit_teacher(4).eval()
    x = torch.rand(1, 8, 3, 32, 32)
    y = v(x)
    assert not torch.allclose(y, v(x.flip(1)), atol=1e-5)  # learned temporal positions: order matters


def test_audio_cnn():
    a = B.AudioCNN(6).eval()
    assert a(torch.randn(3, 16000)).shape == (3, 6)
    assert a.features(torch.randn(2, 8000)).shape == (2, a.feat_dim)


def test_vit_stems_share_the_token_grid_and_strided_is_cheap():
    x = torch.rand(1, 8, 3, 32, 32)
    macs = {}
    for stem in ("linear", "conv", "strided"):
        v = B.make_vit_teacher(10, stem=stem)
        out = v.forward_features(x)
        assert out.fmap.shape == (1, 128, 4, 4, 4) and out.logits.shape == (1, 10)
        macs[stem] = B.count_macs(v, x)
    assert macs["linear"] < macs["strided"] < 1.1 * macs["linear"] < macs["conv"]
    assert B.make_vit_teacher(10, size=24, stem="strided")(torch.rand(1, 8, 3, 24, 24)).shape == (1, 10)
    with pytest.raises(ValueError, match="stem must be"):
        B.TinyVideoViT(10, stem="patchify")
    with pytest.raises(ValueError, match="power-of-two"):
        B.TinyVideoViT(10, size=24, tubelet=(2, 6, 6), stem="strided")

"""Dual-Teacher KD pieces (src/polymodal/video/distill.py; spec video.md 1.3 and the Checks of 1.5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from polymodal.video.backbones import count_parameters, make_cnn_teacher, make_student, make_vit_teacher
from polymodal.video.distill import (
    VARIANTS,
    DualTeacherKD,
    FrozenProjection,
    StructureDiscrepancyBranch,
    TeacherOutputs,
    datw_weights,
    kd_kl,
    make_variant,
    orthogonal_projection,
    rkd_loss,
    teacher_confidence,
    teacher_discrepancy,
    teacher_outputs,
)

torch.set_num_threads(1)
K = 10


def _models(seed: int = 0):
    torch.manual_seed(seed)
    return make_student(K), make_cnn_teacher(K), make_vit_teacher(K, frames=4, size=16)


def _clips(b: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 4, 3, 16, 16, generator=g), torch.randint(0, K, (b,), generator=g)


# ------------------------------------------------------------------------------------------ DATW
def test_datw_matches_hand_computation():
    z_cnn = torch.tensor([[2.0, 0.0, 0.0]])
    z_vit = torch.tensor([[0.0, 1.0, 0.0]])
    z_s = torch.tensor([[0.0, 0.0, 0.0]])
    tau = 1.0
    scores = []
    for z in (z_cnn, z_vit):
        p = torch.softmax(z / tau, -1)[0]
        c = float(p.max())
        d = float((p * (p / (1 / 3)).log()).sum())  # KL(p || uniform)
        scores.append(c * d)
    expected = torch.softmax(torch.tensor(scores), 0)
    w = datw_weights(z_cnn, z_vit, z_s, tau=tau, kappa=1.0)
    assert torch.allclose(w[0], expected, atol=1e-6)
    # kappa sharpens: smaller kappa pushes further toward the higher score
    w_sharp = datw_weights(z_cnn, z_vit, z_s, tau=tau, kappa=0.1)
    assert w_sharp[0, 0] > w[0, 0] > 0.5


@pytest.mark.parametrize("confidence", ["maxprob", "neg_entropy"])
@pytest.mark.parametrize("discrepancy", ["kl", "cosine"])
def test_datw_is_a_per_sample_convex_combination_without_gradient(confidence, discrepancy):
    g = torch.Generator().manual_seed(1)
    z_cnn, z_vit = torch.randn(16, K, generator=g) * 3, torch.randn(16, K, generator=g) * 3
    z_s = torch.randn(16, K, generator=g).requires_grad_(True)
    w = datw_weights(z_cnn, z_vit, z_s, tau=4.0, kappa=1.0, confidence=confidence, discrepancy=discrepancy)
    assert w.shape == (16, 2)
    assert torch.all(w >= 0) and torch.allclose(w.sum(1), torch.ones(16), atol=1e-6)
    assert not w.requires_grad and w.grad_fn is None
    assert w[:, 0].std() > 0  # per sample, not one weight for the batch


def test_datw_moves_toward_the_more_confident_teacher():
    # cosine discrepancy is scale-free: both teachers point the same way (same discrepancy to the student), the
    # CNN teacher's logits are 3x larger, so it is more confident
    v = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    z_s = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    assert torch.isclose(teacher_discrepancy(3 * v, z_s, kind="cosine"), teacher_discrepancy(v, z_s, kind="cosine"))
    for conf in ("maxprob", "neg_entropy"):
        w = datw_weights(3 * v, v, z_s, tau=1.0, confidence=conf, discrepancy="cosine")
        assert w[0, 0] > 0.5, conf
        w = datw_weights(v, 3 * v, z_s, tau=1.0, confidence=conf, discrepancy="cosine")
        assert w[0, 1] > 0.5, conf


@pytest.mark.parametrize("discrepancy", ["kl", "cosine"])
def test_datw_moves_toward_the_more_discrepant_teacher(discrepancy):
    # the two teachers are permutations of each other (equal confidence); the student agrees with the CNN teacher
    z_cnn = torch.tensor([[4.0, 1.0, 0.0, 0.0]])
    z_vit = torch.tensor([[1.0, 4.0, 0.0, 0.0]])
    z_s = torch.tensor([[3.0, 0.5, 0.0, 0.0]])
    assert torch.isclose(teacher_confidence(z_cnn), teacher_confidence(z_vit))
    w = datw_weights(z_cnn, z_vit, z_s, tau=1.0, discrepancy=discrepancy)
    assert w[0, 1] > 0.5


def test_datw_more_confident_and_more_discrepant_teacher_wins():
    z_s = torch.tensor([[2.0, 0.0, 0.0, 0.0]])
    z_cnn = torch.tensor([[1.5, 0.5, 0.0, 0.0]])  # agrees with the student, unsure
    z_vit = torch.tensor([[0.0, 6.0, 0.0, 0.0]])  # disagrees, confident
    for conf in ("maxprob", "neg_entropy"):
        for disc in ("kl", "cosine"):
            assert datw_weights(z_cnn, z_vit, z_s, tau=4.0, confidence=conf, discrepancy=disc)[0, 1] > 0.5


def test_student_equal_to_cnn_teacher_gives_zero_cnn_discrepancy():
    g = torch.Generator().manual_seed(3)
    z_cnn, z_vit = torch.randn(8, K, generator=g), torch.randn(8, K, generator=g)
    for disc in ("kl", "cosine"):
        assert torch.allclose(teacher_discrepancy(z_cnn, z_cnn.clone(), kind=disc), torch.zeros(8), atol=1e-5)
        w = datw_weights(z_cnn, z_vit, z_cnn.clone(), discrepancy=disc)
        assert torch.all(w[:, 1] > 0.5)


def test_identical_teachers_give_the_teacher_logits_as_target():
    student, cnn, vit = _models()
    kd = DualTeacherKD(student, cnn, vit)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, K, generator=g)
    t = TeacherOutputs(z, None, z.clone(), None)
    w = kd.target_weights(t, torch.randn(5, K, generator=g))
    assert torch.allclose(kd.combine(t, w), z, atol=1e-6)


def test_kd_kl_hand_value():
    zt, zs = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    p = torch.softmax(zt / 2, -1)[0]
    expected = 4 * float((p * (p / 0.5).log()).sum())
    assert math.isclose(float(kd_kl(zt, zs, tau=2.0)), expected, rel_tol=1e-5)
    assert float(kd_kl(zt, zt, 4.0)) == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------------------------------ RKD
def test_rkd_invariant_to_scaling_and_translating_student_features():
    g = torch.Generator().manual_seed(5)
    s, t = torch.randn(12, 8, generator=g), torch.randn(12, 5, generator=g)
    base = rkd_loss(s, t)
    assert base > 0
    for a, b in ((3.0, 0.0), (0.2, 5.0), (1.0, -2.0)):
        assert torch.isclose(rkd_loss(a * s + b * torch.ones(8), t), base, rtol=1e-4, atol=1e-6)


def test_rkd_zero_for_affine_copy_of_teacher():
    g = torch.Generator().manual_seed(6)
    t = torch.randn(10, 6, generator=g)
    b = torch.randn(6, generator=g)
    for a in (1.0, 2.5, 0.3):
        assert float(rkd_loss(a * t + b, t)) == pytest.approx(0.0, abs=1e-6)


def test_rkd_weights_and_gradient_only_to_student():
    from polymodal.video.distill import rkd_angle, rkd_distance

    g = torch.Generator().manual_seed(7)
    s = torch.randn(6, 4, generator=g).requires_grad_(True)
    t = torch.randn(6, 3, generator=g).requires_grad_(True)
    total = rkd_loss(s, t)
    assert torch.isclose(total, rkd_distance(s, t) + 2 * rkd_angle(s, t))
    total.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


# ------------------------------------------------------------------------------------------ phi, SDB
def test_projections_are_frozen_and_orthogonal():
    w = orthogonal_projection(128, 32, seed=0)
    assert w.shape == (32, 128) and torch.allclose(w @ w.T, torch.eye(32), atol=1e-5)
    assert torch.equal(w, orthogonal_projection(128, 32, seed=0))
    assert FrozenProjection(128, 128).kind == "identity"
    p = FrozenProjection(64, 128)
    assert p.kind == "orthogonal" and not list(p.parameters())
    pca = FrozenProjection(16, 4, "pca")
    with pytest.raises(RuntimeError, match="not fitted"):
        pca(torch.randn(2, 16))
    feats = torch.randn(50, 16)
    pca.fit(feats)
    out = pca(feats)
    assert out.shape == (50, 4) and torch.allclose(out.mean(0), torch.zeros(4), atol=1e-5)
    var = out.var(0)
    assert torch.all(var[:-1] >= var[1:] - 1e-5)  # principal directions in order


def test_structure_branch_shape():
    sdb = StructureDiscrepancyBranch(64, 128)
    assert sdb(torch.randn(3, 64, 4, 2, 2)).shape == (3, 128)


# ------------------------------------------------------------------------------------------ the module
def test_loss_parts_and_switches():
    student, cnn, vit = _models()
    x, y = _clips()
    kd = DualTeacherKD(student, cnn, vit)
    out = kd(x, y)
    for k in ("ce", "kd", "sdd", "rkd", "fitnets", "total"):
        assert out[k].dim() == 0
    assert out["weights"].shape == (6, 2) and not out["weights"].requires_grad
    assert torch.isclose(out["total"], out["ce"] + out["kd"] + out["sdd"] + out["rkd"])
    assert out["kd"] > 0 and out["sdd"] > 0 and out["rkd"] > 0
    ce = out["ce"].detach()
    off = DualTeacherKD(student, cnn, vit, alpha=0.0, beta=0.0, gamma=0.0)
    assert off.sdb is None
    o = off(x, y)
    assert o["kd"] == 0 and o["sdd"] == 0 and o["rkd"] == 0 and torch.equal(o["total"], o["ce"])
    assert torch.allclose(o["ce"], ce)
    for switch, part in (("alpha", "kd"), ("beta", "sdd"), ("gamma", "rkd")):
        o = DualTeacherKD(student, cnn, vit, **{switch: 0.0})(x, y)
        assert o[part] == 0
        rest = [p for p in ("kd", "sdd", "rkd") if p != part]
        assert torch.allclose(o["total"], o["ce"] + o[rest[0]] + o[rest[1]], atol=1e-6)
    o = DualTeacherKD(student, cnn, vit, alpha=0.5, beta=2.0, gamma=3.0)(x, y)
    assert torch.allclose(o["total"], o["ce"] + 0.5 * o["kd"] + 2 * o["sdd"] + 3 * o["rkd"], atol=1e-6)


def test_teachers_frozen_and_gradients_reach_student_and_sdb():
    student, cnn, vit = _models()
    x, y = _clips()
    kd = DualTeacherKD(student, cnn, vit)
    kd.train()
    kd(x, y)["total"].backward()
    assert all(p.grad is None for p in (*cnn.parameters(), *vit.parameters()))
    assert not cnn.training and not vit.training
    assert student.head.weight.grad is not None and kd.sdb.proj.weight.grad is not None
    assert not any(n.startswith(("_teachers", "cnn", "vit")) for n, _ in kd.named_parameters())
    assert all(p.requires_grad is False for p in kd.phi.parameters())


def test_cached_teacher_outputs_equal_live_ones():
    student, cnn, vit = _models()
    x, y = _clips()
    kd = DualTeacherKD(student, cnn, vit)
    cache = teacher_outputs(cnn, vit, x, batch_size=4)
    idx = torch.tensor([4, 1, 2])
    live = kd.teacher_forward(x[idx])
    for a, b in zip(cache.index(idx), live, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    torch.manual_seed(0)
    student.eval()
    o1 = kd(x[idx], y[idx], cache.index(idx))
    o2 = kd(x[idx], y[idx])
    assert torch.allclose(o1["total"], o2["total"], atol=1e-5)


def test_export_drops_the_structure_branch_and_keeps_outputs():
    student, cnn, vit = _models()
    x, y = _clips()
    kd = DualTeacherKD(student, cnn, vit)
    assert any(k.startswith("sdb.") for k in kd.state_dict())
    opt = torch.optim.SGD(kd.parameters(), lr=0.05)
    kd.train()
    for _ in range(2):
        opt.zero_grad()
        kd(x, y)["total"].backward()
        opt.step()
    exported = kd.export()
    sd = exported.state_dict()
    assert not any("sdb" in k or "nonlocal" in k or "phi" in k for k in sd)
    plain = make_student(K)
    plain.load_state_dict(sd, strict=True)
    assert count_parameters(exported) == count_parameters(plain) == count_parameters(make_student(K))
    assert count_parameters(kd) == count_parameters(student) + kd.training_only_parameters()
    plain.eval()
    kd.eval()
    with torch.no_grad():
        assert torch.equal(exported(x), plain(x))
        assert torch.equal(exported(x), kd.predict(x))


def test_variants_build_and_run():
    student, cnn, vit = _models()
    x, y = _clips()
    for name in VARIANTS:
        kd = make_variant(name, student, cnn, vit, tau=4.0)
        out = kd(x, y)
        assert torch.isfinite(out["total"])
        if name == "kd-avg":
            assert torch.allclose(out["weights"], torch.full((6, 2), 0.5))
        if name == "kd-cnn":
            assert kd.vit_teacher is None and torch.equal(out["weights"][:, 1], torch.zeros(6))
        if name == "fitnets":
            assert out["fitnets"] > 0 and out["kd"] == 0 and torch.isclose(out["total"], out["ce"] + 10 * out["fitnets"])
    with pytest.raises(ValueError, match="both teachers"):
        DualTeacherKD(student, cnn, None, teachers="cnn")
    with pytest.raises(ValueError, match="ViT teacher"):
        DualTeacherKD(student, None, None, teachers="vit", beta=0.0)


def test_teacher_frames_downsample():
    torch.manual_seed(0)
    student, cnn = make_student(K), make_cnn_teacher(K)
    vit = make_vit_teacher(K, frames=2, size=16)
    x, y = _clips()  # 4 frames; the ViT sees frames 0 and 2
    kd = DualTeacherKD(student, cnn, vit, teacher_frames_downsample=2)
    t = kd.teacher_forward(x)
    vit.eval()
    assert torch.allclose(t.vit_logits, vit(x[:, ::2]), atol=1e-5)
    cache = teacher_outputs(cnn, vit, x, teacher_frames_downsample=2)
    assert torch.allclose(cache.vit_logits, t.vit_logits, atol=1e-5)
    assert torch.isfinite(kd(x, y)["total"])


def test_pca_phi_needs_fitting():
    student, cnn, vit = _models()
    x, y = _clips()
    kd = DualTeacherKD(student, cnn, vit, phi="pca", feat_dim=4)
    with pytest.raises(RuntimeError, match="fit_projections"):
        kd(x, y)
    cache = teacher_outputs(cnn, vit, x)
    kd.fit_projections(cache.cnn_features, cache.vit_features)
    assert torch.isfinite(kd(x, y, cache)["total"])


def test_ce_matches_plain_cross_entropy():
    student, cnn, vit = _models()
    x, y = _clips()
    student.eval()
    out = DualTeacherKD(student, cnn, vit)(x, y)
    assert torch.allclose(out["ce"], F.cross_entropy(student(x), y), atol=1e-6)

"""Test-time adapters (src/polymodal/video/tta.py; spec video.md 2.4 and the Checks of 2.7; issue 8 acceptance)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from polymodal.video.backbones import make_student
from polymodal.video.label_mapping import identity_mapping
from polymodal.video.tta import (
    AudioAssistedTTA,
    SourceOnly,
    Tent,
    ViTTA,
    adaptable_parameters,
    audio_pl_fixed1,
    audio_pl_fixedK,
    compute_source_statistics,
    flexible_cycle,
    norm_modules,
    prediction_consistency,
    softmax_entropy,
    temporal_views,
)

torch.set_num_threads(1)
LABELS = ("left", "centre", "right")


# ------------------------------------------------------------------------------------------ toy world
def toy_clips(n: int, seed: int = 0, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips (n, 4, 3, 8, 8): a bright vertical bar in the left / centre / right third = class 0 / 1 / 2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.3 + noise * torch.rand(n, 4, 3, 8, 8, generator=g)
    for i, c in enumerate(y.tolist()):
        cols = slice(c * 3, c * 3 + 2)
        x[i, :, :, :, cols] += 0.5
    return x.clamp(0, 1), y


class ToyVideo(nn.Module):
    """Conv3d -> BN -> ReLU -> flatten -> Linear: a position-sensitive toy clip classifier with BN."""

    def __init__(self, n_classes: int = 3):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
        self.bn = nn.BatchNorm3d(4)
        self.head = nn.Linear(4 * 8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x.transpose(1, 2))))  # (B, 4, T, H, W)
        return self.head(h.mean(dim=(2, 3)).flatten(1))  # keep the column profile


class OracleAudio(nn.Module):
    """An 'audio model' whose waveform is the one-hot label scaled: logits = 10 * wave (identity label space)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return 10.0 * wave + 0 * self.dummy


def trained_toy(seed: int = 0) -> ToyVideo:
    torch.manual_seed(seed)
    model = ToyVideo()
    x, y = toy_clips(96, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ------------------------------------------------------------------------------------------ cycle
def scripted(losses, agree=None):
    calls = []

    def step(k):
        calls.append(k)
        return losses[k - 1], (agree[k - 1] if agree else False)

    return step, calls


def test_cycle_decreasing_loss_runs_to_the_bound():
    step, calls = scripted([1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05])
    res = flexible_cycle(step, k_max=5, eps=1e-3)
    assert (res.steps, res.stop, calls) == (5, "k_max", [1, 2, 3, 4, 5])
    assert res.losses == [1.0, 0.8, 0.6, 0.4, 0.2]


@pytest.mark.parametrize("losses", [[1.0, 1.0, 1.0, 1.0, 1.0], [1.0, 0.9995, 0.9], [1.0, 1.2, 1.5, 2.0, 3.0]],
                         ids=["flat", "below-eps", "increasing"])
def test_cycle_stops_when_the_loss_stops_decreasing(losses):
    step, calls = scripted(losses)
    res = flexible_cycle(step, k_max=5, eps=1e-3)
    assert (res.steps, res.stop, calls) == (2, "loss_plateau", [1, 2])


def test_cycle_stops_on_agreement_and_always_takes_one_step():
    step, calls = scripted([1.0, 0.5, 0.2], agree=[True, True, True])
    assert flexible_cycle(step, k_max=5).steps == 1 and calls == [1]
    step, calls = scripted([1.0, 0.5, 0.2, 0.1], agree=[False, False, True, True])
    res = flexible_cycle(step, k_max=5)
    assert (res.steps, res.stop) == (3, "agreement")
    step, calls = scripted([1.0, 2.0])
    assert flexible_cycle(step, k_max=1).steps == 1 and calls == [1]


def test_cycle_fixed_steps_ignore_the_stop_rules():
    step, calls = scripted([1.0, 1.0, 1.0], agree=[True, True, True])
    res = flexible_cycle(step, k_max=5, fixed_steps=3)
    assert (res.steps, res.stop, calls) == (3, "fixed", [1, 2, 3])
    with pytest.raises(ValueError, match="k_max"):
        flexible_cycle(step, k_max=0)


# ------------------------------------------------------------------------------------------ pieces
def test_entropy_consistency_and_views():
    logits = torch.tensor([[0.0, 0.0], [100.0, 0.0]])
    ent = softmax_entropy(logits)
    assert ent[0] == pytest.approx(torch.log(torch.tensor(2.0)).item()) and ent[1] == pytest.approx(0, abs=1e-6)
    assert prediction_consistency(torch.zeros(2, 3)) == 0
    # views p = (1, 0) and (0, 1): mean (.5, .5); |diff| = .5 everywhere
    assert prediction_consistency(torch.tensor([[50.0, 0.0], [0.0, 50.0]])).item() == pytest.approx(0.5)
    clip = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 2, 2).contiguous()
    v = temporal_views(clip, 3, torch.Generator().manual_seed(0))
    assert v.shape == (3, 8, 3, 2, 2)
    frames = v[:, :, 0, 0, 0]
    assert (frames[:, 1:] >= frames[:, :-1]).all() and ((frames - torch.arange(8.0)).abs() <= 1).all()
    assert torch.equal(temporal_views(clip, 1)[0], clip)


def test_identity_mapping_gives_q_equal_p_audio():
    model = ToyVideo()
    tta = AudioAssistedTTA(model, OracleAudio(), identity_mapping(LABELS))
    wave = torch.tensor([0.1, 0.3, -0.2])
    p_audio, q = tta.audio_distribution(wave)
    assert torch.allclose(q, p_audio) and torch.allclose(p_audio, (10 * wave).softmax(0))


def test_norm_affine_set_is_exactly_the_norm_parameters():
    model = make_student(10)
    names = [n for n, _ in adaptable_parameters(model, "norm_affine")]
    norms = norm_modules(model)
    assert len(names) == 2 * len(norms) and all(n.endswith((".weight", ".bias")) for n in names)
    assert len(adaptable_parameters(model, "all")) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="adapt"):
        adaptable_parameters(model, "heads")


# ------------------------------------------------------------------------------------------ adapters
def make_adapter(kind: str, model: nn.Module, adapt: str = "norm_affine"):
    mapping = identity_mapping(LABELS)
    if kind == "source":
        return SourceOnly(model)
    if kind == "tent":
        return Tent(model, adapt=adapt, lr=1e-2)
    if kind == "vitta":
        return ViTTA(model, adapt=adapt, lr=1e-2)
    if kind == "audio-tta":
        return AudioAssistedTTA(model, OracleAudio(), mapping, adapt=adapt, lr=1e-2, eps=-1.0)
    if kind == "fixed1":
        return audio_pl_fixed1(model, OracleAudio(), mapping, adapt=adapt, lr=1e-2)
    return audio_pl_fixedK(model, OracleAudio(), mapping, k=3, adapt=adapt, lr=1e-2)


KINDS = ["source", "tent", "vitta", "audio-tta", "fixed1", "fixedK"]


def run_stream(adapter, n: int = 6, seed: int = 5):
    x, y = toy_clips(n, seed=seed)
    preds, infos = [], []
    for i in range(n):
        wave = nn.functional.one_hot(y[i], 3).float()
        label, info = adapter.adapt_and_predict(x[i], wave)
        preds.append(label)
        infos.append(info)
    return torch.tensor(preds), y, infos


@pytest.mark.parametrize("kind", KINDS)
def test_norm_affine_adaptation_changes_only_norm_parameters(kind):
    model = trained_toy()
    before = state_copy(model)
    adapter = make_adapter(kind, model)
    run_stream(adapter)
    allowed = {"bn.weight", "bn.bias"}
    after = model.state_dict()
    for k, v in before.items():
        if k == "bn.num_batches_tracked":
            continue
        if k not in allowed:
            assert torch.equal(after[k], v), f"{kind}: {k} changed"
    if kind != "source":
        assert any(not torch.equal(after[k], before[k]) for k in allowed), f"{kind}: nothing adapted"


@pytest.mark.parametrize("kind", ["tent", "vitta", "audio-tta"])
def test_adapt_all_may_change_other_parameters(kind):
    model = trained_toy()
    before = state_copy(model)
    run_stream(make_adapter(kind, model, adapt="all"))
    assert not torch.equal(model.state_dict()["conv.weight"], before["conv.weight"])


@pytest.mark.parametrize("kind", KINDS)
def test_reset_restores_the_initial_state_exactly(kind):
    model = trained_toy()
    before = state_copy(model)
    adapter = make_adapter(kind, model)
    run_stream(adapter)
    adapter.reset()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{kind}: {k} not restored"
    if adapter.optimizer is not None:
        assert adapter.optimizer.state_dict()["state"] == {}
    # the same stream after a reset gives the same predictions (deterministic, views re-seeded)
    p1, _, _ = run_stream(adapter)
    adapter.reset()
    p2, _, _ = run_stream(adapter)
    assert torch.equal(p1, p2)


def test_episodic_resets_before_every_clip():
    model = trained_toy()
    before = state_copy(model)
    adapter = AudioAssistedTTA(model, OracleAudio(), identity_mapping(LABELS), lr=1e-2, episodic=True)
    x, y = toy_clips(2, seed=3)
    adapter.adapt_and_predict(x[0], nn.functional.one_hot(y[0], 3).float())
    adapted = state_copy(model)
    adapter.adapt_and_predict(x[1], nn.functional.one_hot(y[1], 3).float())
    # the second clip started from the initial state: its result equals a fresh adapter's on that clip alone
    fresh_model = trained_toy()
    fresh = AudioAssistedTTA(fresh_model, OracleAudio(), identity_mapping(LABELS), lr=1e-2)
    fresh.generator = torch.Generator().manual_seed(0)
    adapter_state = state_copy(model)
    fresh.adapt_and_predict(x[1], nn.functional.one_hot(y[1], 3).float())
    assert all(torch.equal(adapter_state[k], v) for k, v in fresh_model.state_dict().items())
    assert any(not torch.equal(adapted[k], before[k]) for k in ("bn.weight", "bn.bias"))


def test_cycle_bounds_and_info_on_a_real_adapter():
    model = trained_toy()
    adapter = AudioAssistedTTA(model, OracleAudio(), identity_mapping(LABELS), k_max=3, eps=-1.0, lr=1e-3)
    _, y, infos = run_stream(adapter, n=6)
    for info, label in zip(infos, y.tolist(), strict=True):
        assert info["accepted"] and info["source"] == "audio" and info["pseudo_label"] == label
        assert 1 <= info["steps"] <= 3 and len(info["losses"]) == info["steps"]
        assert info["stop"] in ("agreement", "k_max")
        if info["stop"] == "k_max":
            assert info["steps"] == 3
    fixed = audio_pl_fixedK(trained_toy(), OracleAudio(), identity_mapping(LABELS), k=4)
    _, _, infos = run_stream(fixed, n=3)
    assert all(i["steps"] == 4 and i["stop"] == "fixed" for i in infos)


def test_rejected_pseudo_labels_fall_back_or_skip():
    mapping = identity_mapping(LABELS)
    x, _ = toy_clips(1, seed=2)
    flat = torch.zeros(3)  # p_audio uniform -> q max 1/3 < 0.5
    skip = AudioAssistedTTA(trained_toy(), OracleAudio(), mapping, fallback="skip")
    _, info = skip.adapt_and_predict(x[0], flat)
    assert (info["accepted"], info["source"], info["steps"], info["stop"]) == (False, None, 0, "skipped")
    video = AudioAssistedTTA(trained_toy(), OracleAudio(), mapping, fallback="video_confident", theta_video=0.0)
    _, info = video.adapt_and_predict(x[0], flat)
    assert (info["accepted"], info["source"]) == (False, "video") and info["steps"] >= 1
    never = AudioAssistedTTA(trained_toy(), OracleAudio(), mapping, fallback="video_confident", theta_video=1.0)
    assert never.adapt_and_predict(x[0], flat)[1]["stop"] == "skipped"


def test_clean_inputs_with_correct_pseudo_labels_do_not_reduce_accuracy():
    x, y = toy_clips(30, seed=9, noise=0.6)
    source = SourceOnly(trained_toy())
    src_acc = float(torch.tensor([source.adapt_and_predict(x[i])[0] for i in range(30)]).eq(y).float().mean())
    adapter = AudioAssistedTTA(trained_toy(), OracleAudio(), identity_mapping(LABELS), lr=1e-2)
    preds = [adapter.adapt_and_predict(x[i], nn.functional.one_hot(y[i], 3).float())[0] for i in range(30)]
    acc = float(torch.tensor(preds).eq(y).float().mean())
    assert src_acc > 0.5
    assert acc >= src_acc


def test_vitta_alignment_uses_source_statistics():
    model = trained_toy()
    x, _ = toy_clips(24, seed=1)
    stats = compute_source_statistics(model, x, ["bn"])
    mean, var = stats["bn"]
    assert mean.shape == (4,) and (var >= 0).all()
    # BN running buffers approximate the same statistics of the BN input on the training clips
    with torch.no_grad():
        h = model.conv(x.transpose(1, 2))
    assert torch.allclose(mean, h.mean(dim=(0, 2, 3, 4)), atol=1e-5)
    assert torch.allclose(var, h.var(dim=(0, 2, 3, 4), unbiased=False), atol=1e-5)
    vitta = ViTTA(model, layers=["bn"], source_stats=stats, lambda_consistency=0.0)
    vitta(x[:1])
    loss = vitta.alignment_loss  # EMA exists after one clip
    assert set(vitta.ema) == {"bn"} and callable(loss)


def test_adapters_validate_arguments():
    model = ToyVideo()
    with pytest.raises(ValueError, match="fallback"):
        AudioAssistedTTA(model, OracleAudio(), identity_mapping(LABELS), fallback="maybe")
    with pytest.raises(ValueError, match="bn_mode"):
        Tent(model, bn_mode="frozen")
    with pytest.raises(ValueError, match="k_max"):
        AudioAssistedTTA(model, OracleAudio(), identity_mapping(LABELS), k_max=0)

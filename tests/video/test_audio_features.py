import math

import torch

from polymodal.video.audio import LogMel, hz_to_mel, mel_filterbank, mel_to_hz


def test_mel_scale_round_trip_and_known_value():
    assert abs(float(hz_to_mel(1000.0)) - 999.985) < 0.01  # HTK: 1000 Hz ~ 1000 mel
    f = torch.tensor([0.0, 440.0, 8000.0], dtype=torch.float64)
    assert torch.allclose(mel_to_hz(hz_to_mel(f)), f)


def test_filterbank_triangles():
    fb = mel_filterbank(8, 512, 16000)
    assert fb.shape == (8, 257) and float(fb.min()) >= 0 and float(fb.max()) <= 1 + 1e-6
    peaks = fb.argmax(dim=1)
    assert torch.all(peaks[1:] > peaks[:-1])  # centres increase


def test_logmel_shape_and_a_tone_lights_its_band():
    lm = LogMel()
    assert lm.win_length == 400 and lm.hop_length == 160 and lm.n_fft == 512
    t = torch.arange(16000) / 16000
    out = lm(torch.sin(2 * math.pi * 1000 * t))
    assert out.shape == (1, 1, 64, 101)
    band = int(out[0, 0].mean(dim=1).argmax())
    centres = mel_to_hz(torch.linspace(0, float(hz_to_mel(8000.0)), 66, dtype=torch.float64))[1:-1]
    assert abs(float(centres[band]) - 1000) < 150

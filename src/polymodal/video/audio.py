"""Log-mel spectrograms with ``torch.stft`` and a hand-built mel filterbank (spec video.md 2.5: 64 mel bands,
25 ms window, 10 ms hop, 16 kHz). torchaudio has no CPU build here, so this is the family's audio front end."""

from __future__ import annotations

import math

import torch
from torch import nn


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0, f_max: float | None = None
                   ) -> torch.Tensor:
    """Triangular filters ``(n_mels, n_fft // 2 + 1)`` equally spaced on the HTK mel scale (peak 1, no area norm)."""
    f_max = float(f_max if f_max is not None else sample_rate / 2)
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate/2, got {f_min}, {f_max}, {sample_rate}")
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    edges = mel_to_hz(mels)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0).to(torch.float32)


class LogMel(nn.Module):
    """Waveform ``(B, n)`` or ``(n,)`` -> log-mel ``(B, 1, n_mels, frames)``; a module so it moves with the model."""

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0,
                 eps: float = 1e-6):
        super().__init__()
        self.sample_rate = sample_rate
        self.win_length = int(round(sample_rate * win_ms / 1000))
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = 2 ** math.ceil(math.log2(self.win_length))
        self.eps = eps
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.register_buffer("fbank", mel_filterbank(n_mels, self.n_fft, sample_rate), persistent=False)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() == 1:
            wave = wave[None]
        if wave.dim() != 2:
            raise ValueError(f"LogMel expects (n,) or (B, n) waveforms, got shape {tuple(wave.shape)}")
        spec = torch.stft(wave, self.n_fft, hop_length=self.hop_length, win_length=self.win_length,
                          window=self.window, center=True, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (B, freq, frames)
        mel = torch.einsum("mf,bft->bmt", self.fbank, power)
        return torch.log(mel + self.eps)[:, None]

"""Trained HAR baselines (spec 5): a random forest on the signal-tool features of every position and a small
1D-CNN (3 conv blocks, 64 channels, kernel 5, global average pool) on the raw acc+gyro channels, plain PyTorch.

Both train on the training participants' clean windows (leave-participants-out, spec 4.4) and are evaluated on
the same windows as the agents. A missing position is zero-filled and NaNs are zero-filled after standardisation
(a trained model has no other way to read them; that is part of what the fault sweep measures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from polymodal.sensing import signal_tools as st
from polymodal.sensing.imu import ACTIVITIES

_LABEL_INDEX = {a: i for i, a in enumerate(ACTIVITIES)}


def _tools_vector(x: np.ndarray | None, fs: float, length: int | None) -> np.ndarray:
    if x is None:
        return np.zeros(length or 0)
    tools = st.analyse_position(x[:, 0:3], x[:, 3:6], fs)
    return st.feature_vector(tools)


def window_feature_vector(window: Mapping[str, np.ndarray | None], positions: Sequence[str], fs: float = 50.0,
                          length: int | None = None) -> np.ndarray:
    """Concatenated tool features of ``positions`` (zeros for a missing position; ``length`` per position)."""
    if length is None:
        length = len(_tools_vector(np.zeros((100, 9)) + 1.0, fs, None))
    parts = []
    for p in positions:
        v = _tools_vector(window.get(p), fs, length)
        parts.append(v if len(v) == length else np.zeros(length))
    return np.nan_to_num(np.concatenate(parts))


class RandomForestHAR:
    """``RandomForestHAR().fit(windows, labels)``; ``predict(window) -> label`` (sklearn RandomForestClassifier)."""

    def __init__(self, positions: Sequence[str] = ("arm", "wrist", "belt", "pocket"), n_estimators: int = 100,
                 seed: int = 0, fs: float = 50.0):
        from sklearn.ensemble import RandomForestClassifier

        self.positions = tuple(positions)
        self.fs = fs
        self.model = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
        self._length = len(_tools_vector(np.ones((100, 9)), fs, None))

    def featurise(self, windows: Sequence[Mapping[str, np.ndarray | None]]) -> np.ndarray:
        return np.stack([window_feature_vector(w, self.positions, self.fs, self._length) for w in windows])

    def fit(self, windows: Sequence[Mapping[str, np.ndarray]], labels: Sequence[str]) -> RandomForestHAR:
        self.model.fit(self.featurise(windows), np.asarray(labels))
        return self

    def predict_many(self, windows: Sequence[Mapping[str, np.ndarray | None]]) -> list[str]:
        return [str(v) for v in self.model.predict(self.featurise(windows))]

    def predict(self, window: Mapping[str, np.ndarray | None]) -> str:
        return self.predict_many([window])[0]


class CNN1D(nn.Module):
    """3 × (Conv1d k=5, 64 ch, BatchNorm, ReLU) + global average pool + linear (spec 5)."""

    def __init__(self, in_channels: int, n_classes: int = len(ACTIVITIES), width: int = 64, kernel: int = 5):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(3):
            layers += [nn.Conv1d(c, width, kernel, padding=kernel // 2), nn.BatchNorm1d(width), nn.ReLU()]
            c = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, T)
        return self.head(self.features(x).mean(dim=-1))


class CNNHAR:
    """Train/predict wrapper: input = acc+gyro (6 channels) of every position stacked, standardised per channel."""

    def __init__(self, positions: Sequence[str] = ("arm", "wrist", "belt", "pocket"), epochs: int = 30,
                 batch_size: int = 64, lr: float = 1e-3, seed: int = 0, device: str = "cpu"):
        self.positions = tuple(positions)
        self.epochs, self.batch_size, self.lr, self.seed = epochs, batch_size, lr, seed
        self.device = torch.device(device)
        self.model: CNN1D | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.losses: list[float] = []

    def _stack(self, windows: Sequence[Mapping[str, np.ndarray | None]], size: int) -> np.ndarray:
        out = np.zeros((len(windows), 6 * len(self.positions), size), dtype=np.float32)
        for i, w in enumerate(windows):
            for j, p in enumerate(self.positions):
                x = w.get(p)
                if x is not None:
                    out[i, 6 * j : 6 * j + 6] = np.asarray(x, dtype=np.float32)[:, 0:6].T
        return out

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return np.nan_to_num((x - self.mean) / self.std).astype(np.float32)

    def fit(self, windows: Sequence[Mapping[str, np.ndarray]], labels: Sequence[str], *, progress=None) -> CNNHAR:
        torch.manual_seed(self.seed)
        size = len(next(iter(windows[0].values())))
        x = self._stack(windows, size)
        self.mean = np.nanmean(x, axis=(0, 2), keepdims=True)
        self.std = np.nanstd(x, axis=(0, 2), keepdims=True) + 1e-6
        xt = torch.from_numpy(self._standardise(x)).to(self.device)
        yt = torch.tensor([_LABEL_INDEX[str(v)] for v in labels], device=self.device)
        self.model = CNN1D(xt.shape[1]).to(self.device)
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            self.model.train()
            perm = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for k in range(0, len(xt), self.batch_size):
                idx = perm[k : k + self.batch_size].to(self.device)
                loss = nn.functional.cross_entropy(self.model(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            self.losses.append(total / len(xt))
            if progress is not None:
                progress.advance()
        return self

    @torch.no_grad()
    def predict_many(self, windows: Sequence[Mapping[str, np.ndarray | None]]) -> list[str]:
        assert self.model is not None, "fit first"
        self.model.eval()
        size = next(len(v) for w in windows for v in w.values() if v is not None)
        x = torch.from_numpy(self._standardise(self._stack(windows, size))).to(self.device)
        return [ACTIVITIES[int(i)] for i in self.model(x).argmax(dim=1).cpu()]

    def predict(self, window: Mapping[str, np.ndarray | None]) -> str:
        return self.predict_many([window])[0]

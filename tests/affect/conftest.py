"""Fixtures shared by the AffectSeek tests."""

import pytest

from polymodal.affect.vqau import make_benchmark
from polymodal.text import SentenceEncoder


@pytest.fixture(scope="module")
def encoder():
    return SentenceEncoder()


@pytest.fixture(scope="module")
def bench():
    return make_benchmark(n_videos=2, seed=3, min_seconds=120, max_seconds=180)

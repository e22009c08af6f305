"""Test-wide settings: no progress bars, a private cache, two torch threads."""

import os

import pytest

os.environ.setdefault("POLYMODAL_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    if "POLYMODAL_CACHE" not in os.environ or os.environ.get("POLYMODAL_TEST_KEEP_CACHE") != "1":
        monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))

"""Hugging Face libraries in offline mode: no hub traffic at run time (ARCHITECTURE, "Pretrained parts, offline")."""

from __future__ import annotations

import importlib.util
import os

from polymodal.core.errors import PolymodalError


class MissingDependencyError(PolymodalError, ImportError):
    """An optional package is not installed; the message says how to install it."""


def hf_offline() -> None:
    """Keep transformers / sentence-transformers / huggingface_hub off the network unless the user opted in.

    Set before those libraries are imported; a user who wants hub downloads sets ``HF_HUB_OFFLINE=0`` themselves.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if os.environ.get("POLYMODAL_PROGRESS", "1") in ("0", "false", "no"):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def require(module: str, install: str) -> None:
    """Raise :class:`MissingDependencyError` with the install command when ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"the package providing '{module}' is not installed; install it with: {install}")


def quiet_transformers() -> None:
    """Silence transformers' own progress bars and info logs when polymodal's progress bars are off."""
    if os.environ.get("POLYMODAL_PROGRESS", "1") not in ("0", "false", "no"):
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

"""Shared text engine: sentence embeddings (all-MiniLM-L6-v2 bundled offline)."""

from polymodal.text.encoder import DEFAULT_MODEL, SentenceEncoder, bundled_minilm_path

__all__ = ["DEFAULT_MODEL", "SentenceEncoder", "bundled_minilm_path"]

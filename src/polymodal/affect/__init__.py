"""Affect family: skeleton-based emotion recognition, MGHFT sticker emotion, AffectSeek (see docs/methods/)."""

"""Sensing family recipes: ``sensing-agents`` (imported for its ``@recipe`` registration)."""

from polymodal.sensing import recipe  # noqa: F401

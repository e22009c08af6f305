"""Exceptions a user can act on. Each message names what was wrong and where."""

from __future__ import annotations


class PolymodalError(Exception):
    """Base class of every error polymodal raises on purpose."""


class ConfigError(PolymodalError, ValueError):
    """A configuration value is missing, unknown or out of bounds; the message names the field."""


class DataFormatError(PolymodalError, ValueError):
    """An input file does not have the expected format.

    ``path`` and ``line`` (1-based, when known) say where; ``expected`` says what should have been there.
    """

    def __init__(self, path: object, message: str, line: int | None = None, expected: str | None = None):
        self.path = str(path)
        self.line = line
        self.expected = expected
        where = self.path if line is None else f"{self.path}, line {line}"
        text = f"{where}: {message}"
        if expected:
            text += f" (expected {expected})"
        super().__init__(text)


class DownloadError(PolymodalError):
    """A download failed, or its checksum did not match."""


class UnknownRecipeError(PolymodalError, KeyError):
    """No recipe is registered under that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def read_input_bytes(path) -> bytes:
    """A user's input file as bytes; a missing or unreadable file is a DataFormatError naming it."""
    from pathlib import Path

    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except OSError as e:
        raise DataFormatError(path, f"cannot read the file: {e}") from None

"""Errors of the language-model engine. Each says what went wrong and what the user can do about it."""

from __future__ import annotations

from polymodal.core.errors import PolymodalError


class LLMError(PolymodalError):
    """Base class of language-model errors."""


class ModelNotFoundError(LLMError, FileNotFoundError):
    """The model file or directory does not exist or holds no weights."""


class BackendUnreachableError(LLMError, ConnectionError):
    """The HTTP server could not be reached (refused, DNS, reset) after all retries."""


class BackendTimeoutError(LLMError, TimeoutError):
    """The server did not answer within the timeout, after all retries."""


class BackendHTTPError(LLMError):
    """The server answered with an HTTP error status; ``status`` holds it."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class MalformedResponseError(LLMError, ValueError):
    """The server's reply is not the JSON shape of an OpenAI chat completion."""


class ContextTooLongError(LLMError, ValueError):
    """The prompt plus the requested new tokens exceed the model's context window."""

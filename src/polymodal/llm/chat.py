"""The one chat protocol every backend speaks (local transformers, OpenAI-compatible HTTP, llama-cpp, scripted).

A conversation is a list of ``{"role": "system"|"user"|"assistant", "content": str}`` dicts, as in the OpenAI
API. ``chat`` returns a :class:`ChatReply` with the text, token counts and latency. Local backends additionally
implement :class:`ScoringBackend`: next-token log-probabilities and continuation scores for option scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from polymodal.core.errors import ConfigError

Message = dict[str, str]
ROLES = ("system", "user", "assistant")


@dataclass
class ChatReply:
    """One completion. Token counts are the backend's own (``None`` when a server does not report them)."""

    text: str
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float
    finish_reason: str  # "stop" | "length" | whatever the server said
    model: str
    backend: str

    def to_dict(self) -> dict:
        return asdict(self)


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that turns messages into a reply. Temperature 0 means greedy; ``seed`` is passed through."""

    name: str

    def chat(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int | None = None,
        stop: Sequence[str] | None = None,
    ) -> ChatReply: ...


@runtime_checkable
class ScoringBackend(ChatBackend, Protocol):
    """A local backend that exposes log-probabilities.

    ``prompt`` is either raw text or a message list (rendered with the chat template and the assistant header).
    """

    def next_token_logprobs(self, prompt: str | Sequence[Message], top_k: int = 10) -> dict[str, float]: ...

    def score_continuations(self, prompt: str | Sequence[Message], continuations: Sequence[str]) -> list[float]: ...


def check_messages(messages: Sequence[Message]) -> list[Message]:
    """Validate a message list; errors name the offending index and field."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise ConfigError(f"messages: expected a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    if not messages:
        raise ConfigError("messages: the list is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ConfigError(f"messages[{i}]: expected a dict with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ConfigError(f"messages[{i}].role: {role!r} is not one of {ROLES}")
        if not isinstance(content, str):
            raise ConfigError(f"messages[{i}].content: expected a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def check_generation(max_tokens: int, temperature: float) -> None:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens: must be a positive integer, got {max_tokens!r}")
    if temperature < 0:
        raise ConfigError(f"temperature: must be >= 0, got {temperature!r}")


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """Truncate ``text`` at the earliest stop string; returns (text, whether a stop string was found)."""
    if not stop:
        return text, False
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)

"""A scripted backend: canned replies (a list, or a function of the messages) for unit tests of orchestration.

Real runs use a real model; this exists so pipeline routing, schema repair and trace writing can be tested
deterministically and fast. It records every call it receives in ``calls``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from polymodal.core.errors import PolymodalError
from polymodal.llm.chat import ChatReply, Message, check_generation, check_messages


class ScriptExhaustedError(PolymodalError):
    """The scripted backend was asked for more replies than it was given."""


class ScriptedBackend:
    """``ScriptedBackend(["reply 1", "reply 2"])`` or ``ScriptedBackend(lambda messages: "...")``.

    Token counts are whitespace word counts (a stand-in; scripted replies have no tokenizer).
    """

    def __init__(self, replies: Sequence[str] | Callable[[list[Message]], str], *, name: str = "scripted"):
        self._fn = replies if callable(replies) else None
        self._queue = [] if callable(replies) else list(replies)
        self.name = name
        self.model_name = name
        self.calls: list[dict] = []

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        check_generation(max_tokens, temperature)
        msgs = check_messages(messages)
        t0 = time.perf_counter()
        self.calls.append({"messages": msgs, "max_tokens": max_tokens, "temperature": temperature, "seed": seed})
        if self._fn is not None:
            text = self._fn(msgs)
        elif self._queue:
            text = self._queue.pop(0)
        else:
            raise ScriptExhaustedError(
                f"scripted backend {self.name!r}: no reply left for call {len(self.calls)}; "
                f"last user message: {msgs[-1]['content'][:120]!r}"
            )
        prompt_words = sum(len(m["content"].split()) for m in msgs)
        return ChatReply(text=str(text), prompt_tokens=prompt_words, completion_tokens=len(str(text).split()),
                         latency_s=time.perf_counter() - t0, finish_reason="stop", model=self.name,
                         backend="scripted")

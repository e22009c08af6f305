"""The multi-view interpreter (MGHFT spec 2.3): one description per sticker with four headed sections.

A pluggable step: :class:`TemplateInterpreter` writes descriptions from what the data already knows (the synthetic
generator's attributes, or a caption) without any model; :class:`LLMInterpreter` asks any chat backend of
``polymodal.llm`` (transformers, OpenAI-compatible server, scripted) for the four sections and validates the
reply with :func:`split_views` (one retry, then an error or the template fallback). The paper uses an MLLM that
sees the image; offline no vision-language model exists, so the LLM gets a textual sticker context (caption, OCR,
topic) [reconstruction].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from polymodal.affect.stickers.views import VIEW_NAMES, MissingViewsError, header, join_views, split_views

SYSTEM_PROMPT = ("You describe chat stickers for an emotion recognition system. Answer with exactly four sections, "
                 "each starting on its own line with its header: " + ", ".join(header(v) for v in VIEW_NAMES) + ".")


class Interpreter(Protocol):
    def describe(self, context: str) -> str: ...


@dataclass
class TemplateInterpreter:
    """A model-free interpreter: ``describe(context)`` puts a caption (or a dict of per-view texts) under the four
    headers; used for the embedded synthetic data, whose descriptions are written by the generator."""

    def describe(self, context: str | dict[str, str]) -> str:
        if isinstance(context, dict):
            missing = [v for v in VIEW_NAMES if v not in context]
            if missing:
                raise MissingViewsError(f"template context lacks {', '.join(missing)}")
            return join_views(context)
        return join_views([context] * len(VIEW_NAMES))


@dataclass
class LLMInterpreter:
    """Ask a chat backend (``polymodal.llm``: ``chat(messages, max_tokens=, temperature=) -> reply.text``) for the
    four headed sections. A reply without all four headers is retried once with a corrective message; after
    that, ``fallback`` (e.g. a :class:`TemplateInterpreter`) answers, or :class:`MissingViewsError` is raised.
    ``trace`` keeps every prompt and raw reply."""

    backend: object
    max_tokens: int = 320
    temperature: float = 0.0
    fallback: TemplateInterpreter | None = None
    trace: list[dict] = field(default_factory=list)

    def prompt(self, context: str) -> list[dict]:
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Sticker: {context}\nDescribe the sticker's intention (the emotion "
                 "it conveys), its style, its main role and its gesture."}]

    def describe(self, context: str) -> str:
        messages = self.prompt(context)
        for attempt in range(2):
            reply = self.backend.chat(messages, max_tokens=self.max_tokens, temperature=self.temperature)
            text = reply.text
            try:
                split_views(text)
                self.trace.append({"context": context, "attempt": attempt, "reply": text, "ok": True})
                return text.strip()
            except MissingViewsError as e:
                self.trace.append({"context": context, "attempt": attempt, "reply": text, "ok": False,
                                   "error": str(e)})
                messages = [*messages, {"role": "assistant", "content": text},
                            {"role": "user", "content": f"{e}. Rewrite the answer with all four headers: "
                             + ", ".join(header(v) for v in VIEW_NAMES)}]
        if self.fallback is not None:
            self.trace.append({"context": context, "fallback": True})
            return self.fallback.describe(context)
        raise MissingViewsError(f"the interpreter's backend did not produce the four sections after a retry: "
                                f"{self.trace[-1]['error']}")

    def describe_many(self, contexts: list[str]) -> list[str]:
        return [self.describe(c) for c in contexts]

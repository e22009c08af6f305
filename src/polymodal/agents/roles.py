"""A role: a name, a system-prompt template, a user-prompt template and an optional pydantic output schema.

``Role.ask`` renders the templates from the pipeline state, calls a chat backend (temperature 0 by default, the
seed passed through), and — when a schema is given — extracts and validates the JSON reply. On a parse or
validation failure it asks once more, quoting the error; if that fails too it uses the role's ``fallback``
(recorded in the trace) or raises :class:`StructuredOutputError` naming the fields.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from polymodal.agents.structured import (
    StructuredOutputError,
    describe_validation_error,
    parse_reply,
    schema_hint,
)
from polymodal.agents.trace import Trace
from polymodal.core.errors import ConfigError
from polymodal.llm.chat import ChatBackend, ChatReply, Message


def render_template(template: str, variables: Mapping[str, Any], *, where: str) -> str:
    """``str.format`` over ``variables``; a missing name is an error naming the template and the name."""
    names = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    missing = sorted({n.split(".")[0].split("[")[0] for n in names} - set(variables))
    if missing:
        raise ConfigError(f"{where}: the template uses {missing} but the state has only {sorted(variables)}")
    return template.format_map(dict(variables))


@dataclass
class RoleResult:
    """What one role call produced: the final text, the parsed object (if a schema), every raw reply."""

    role: str
    text: str
    parsed: BaseModel | None
    replies: list[ChatReply]
    repaired: bool = False
    fallback_used: bool = False

    @property
    def value(self) -> Any:
        return self.parsed if self.parsed is not None else self.text


@dataclass
class Role:
    name: str
    system: str
    prompt: str = "{input}"
    schema: type[BaseModel] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    stop: list[str] | None = None
    repair: bool = True
    fallback: Callable[[Mapping[str, Any]], BaseModel | dict] | None = field(default=None, repr=False)

    def messages(self, variables: Mapping[str, Any]) -> list[Message]:
        system = render_template(self.system, variables, where=f"role {self.name!r} system prompt")
        user = render_template(self.prompt, variables, where=f"role {self.name!r} prompt")
        if self.schema is not None:  # at the end of the user turn: small models follow it there, not in the system
            user = f"{user}\n\n{schema_hint(self.schema)}"
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _call(self, backend: ChatBackend, messages: list[Message], trace: Trace | None, seed: int | None,
              attempt: int) -> ChatReply:
        reply = backend.chat(messages, max_tokens=self.max_tokens, temperature=self.temperature, seed=seed,
                             stop=self.stop)
        if trace is not None:
            trace.record("llm_call", role=self.name, attempt=attempt, backend=reply.backend, model=reply.model,
                         messages=messages, reply=reply.text, prompt_tokens=reply.prompt_tokens,
                         completion_tokens=reply.completion_tokens, latency_s=round(reply.latency_s, 4),
                         finish_reason=reply.finish_reason)
        return reply

    def ask(self, backend: ChatBackend, variables: Mapping[str, Any], *, trace: Trace | None = None,
            seed: int | None = None) -> RoleResult:
        messages = self.messages(variables)
        reply = self._call(backend, messages, trace, seed, attempt=1)
        if self.schema is None:
            return RoleResult(self.name, reply.text, None, [reply])
        try:
            parsed = parse_reply(reply.text, self.schema)
            self._record_parsed(trace, parsed, attempt=1)
            return RoleResult(self.name, reply.text, parsed, [reply])
        except StructuredOutputError as first:
            error = first
            self._record_error(trace, error, attempt=1)
        replies = [reply]
        if self.repair:
            repair_messages = [*messages, {"role": "assistant", "content": reply.text},
                               {"role": "user", "content": f"That reply was not valid: {error}. "
                                                           f"{schema_hint(self.schema)}"}]
            reply2 = self._call(backend, repair_messages, trace, seed, attempt=2)
            replies.append(reply2)
            try:
                parsed = parse_reply(reply2.text, self.schema)
                self._record_parsed(trace, parsed, attempt=2)
                return RoleResult(self.name, reply2.text, parsed, replies, repaired=True)
            except StructuredOutputError as second:
                error = second
                self._record_error(trace, error, attempt=2)
        if self.fallback is not None:
            parsed = self._run_fallback(variables)
            if trace is not None:
                trace.record("fallback", role=self.name, reason=str(error), parsed=parsed)
            return RoleResult(self.name, replies[-1].text, parsed, replies, fallback_used=True)
        tries = "after one repair attempt" if self.repair else "(repair disabled)"
        raise StructuredOutputError(f"role {self.name!r}: the reply did not match {self.schema.__name__} {tries}: "
                                    f"{error}", fields=error.fields, raw=error.raw, role=self.name)

    def _run_fallback(self, variables: Mapping[str, Any]) -> BaseModel:
        value = self.fallback(variables)
        if isinstance(value, BaseModel):
            return value
        try:
            return self.schema.model_validate(value)
        except ValidationError as exc:
            message, fields = describe_validation_error(exc)
            raise StructuredOutputError(f"role {self.name!r}: its fallback returned an invalid "
                                        f"{self.schema.__name__}: {message}", fields=fields, role=self.name) from None

    def _record_parsed(self, trace: Trace | None, parsed: BaseModel, attempt: int) -> None:
        if trace is not None:
            trace.record("parsed", role=self.name, attempt=attempt, parsed=parsed)

    def _record_error(self, trace: Trace | None, error: StructuredOutputError, attempt: int) -> None:
        if trace is not None:
            trace.record("parse_error", role=self.name, attempt=attempt, error=str(error), fields=error.fields)

"""Chat backend for any OpenAI-compatible HTTP server (vLLM, llama.cpp server, Ollama, hosted APIs).

POST ``{base_url}/chat/completions``. The API key is read from an environment variable at request time and never
stored in the object, logged or put in an error message. Connection failures, timeouts, 429 and 5xx answers are
retried with exponential backoff (``backoff * 2**attempt``, capped, honouring ``Retry-After``); other 4xx answers
fail at once. Every failure ends in one of the exceptions of :mod:`polymodal.llm.errors`, never a hang.
"""

from __future__ import annotations

import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from polymodal.core.errors import ConfigError
from polymodal.llm.chat import ChatReply, Message, check_generation, check_messages
from polymodal.llm.errors import (
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextTooLongError,
    MalformedResponseError,
)

RETRY_STATUSES = (408, 409, 429, 500, 502, 503, 504)
_CONTEXT_HINTS = ("context length", "context_length", "maximum context", "too many tokens", "context window",
                  "prompt is too long", "exceeds the context")


def _snippet(body: bytes | str, n: int = 300) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


class OpenAICompatibleBackend:
    """``OpenAICompatibleBackend("http://127.0.0.1:8000/v1", model="my-model")``.

    ``api_key_env`` names the environment variable holding the key (default ``OPENAI_API_KEY``; unset means no
    ``Authorization`` header, as local servers expect). ``timeout`` is per request in seconds; ``max_retries``
    retries after the first attempt.
    """

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, max_backoff: float = 8.0,
                 extra_body: dict | None = None, name: str | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"field 'base_url': {base_url!r} must start with http:// or https://")
        if not model:
            raise ConfigError("field 'model': the server's model name is required")
        if timeout <= 0 or max_retries < 0 or backoff < 0:
            raise ConfigError("fields 'timeout' (> 0), 'max_retries' (>= 0) and 'backoff' (>= 0) are out of bounds")
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key_env = api_key_env
        self.timeout, self.max_retries = float(timeout), int(max_retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.extra_body = dict(extra_body or {})
        self.name = name or "openai"
        self._sleep = sleep
        self.attempts_made = 0  # requests sent by the last call (for tests and traces)

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = min(self.backoff * (2**attempt), self.max_backoff)
        if retry_after:
            try:
                delay = min(max(delay, float(retry_after)), self.max_backoff)
            except ValueError:
                pass
        return delay

    def _post(self, payload: dict) -> dict:
        data = json.dumps(payload).encode("utf-8")
        last: Exception | None = None
        self.attempts_made = 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt - 1, getattr(last, "retry_after", None)))
            self.attempts_made += 1
            req = urllib.request.Request(self.url, data=data, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    body = resp.read()
            except urllib.error.HTTPError as exc:
                body = exc.read() if exc.fp is not None else b""
                status = exc.code
                message = _snippet(body)
                if status == 400 and any(h in message.lower() for h in _CONTEXT_HINTS):
                    raise ContextTooLongError(f"{self.url}: the server says the prompt is too long: {message}") from None
                if status in (401, 403):
                    hint = (f"check the API key in ${self.api_key_env}" if self.api_key_env else "the server wants a key")
                    raise BackendHTTPError(f"{self.url}: HTTP {status} (not authorised; {hint}): {message}", status) from None
                err = BackendHTTPError(f"{self.url}: HTTP {status} after {attempt + 1} attempt(s): {message}", status)
                err.retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if status not in RETRY_STATUSES:
                    raise err from None
                last = err
                continue
            except TimeoutError as exc:
                last = BackendTimeoutError(
                    f"{self.url}: no answer within {self.timeout:g} s after {attempt + 1} attempt(s); "
                    "raise 'timeout' for slow servers or long generations"
                )
                last.__cause__ = exc
                continue
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    last = BackendTimeoutError(f"{self.url}: no answer within {self.timeout:g} s after "
                                               f"{attempt + 1} attempt(s)")
                else:
                    last = BackendUnreachableError(
                        f"{self.url}: server unreachable after {attempt + 1} attempt(s) ({exc.reason}); "
                        "is it running, and is base_url right (usually ending in /v1)?"
                    )
                continue
            except (ConnectionError, OSError, http.client.HTTPException) as exc:
                last = BackendUnreachableError(f"{self.url}: connection failed after {attempt + 1} attempt(s) ({exc})")
                continue
            return self._parse_json(body)
        assert last is not None
        raise last

    def _parse_json(self, body: bytes) -> dict:
        try:
            obj = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MalformedResponseError(f"{self.url}: the reply is not JSON: {_snippet(body)!r}") from None
        if not isinstance(obj, dict):
            raise MalformedResponseError(f"{self.url}: expected a JSON object, got {type(obj).__name__}")
        return obj

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        check_generation(max_tokens, temperature)
        payload: dict = {"model": self.model_name, "messages": check_messages(messages),
                         "max_tokens": max_tokens, "temperature": float(temperature), **self.extra_body}
        if seed is not None:
            payload["seed"] = int(seed)
        if stop:
            payload["stop"] = list(stop)
        t0 = time.perf_counter()
        obj = self._post(payload)
        latency = time.perf_counter() - t0
        try:
            choice = obj["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise MalformedResponseError(
                f"{self.url}: missing choices[0].message.content in the reply: {_snippet(json.dumps(obj))}"
            ) from None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise MalformedResponseError(f"{self.url}: choices[0].message.content is {type(text).__name__}, not a string")
        usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
        return ChatReply(text=text.strip(), prompt_tokens=usage.get("prompt_tokens"),
                         completion_tokens=usage.get("completion_tokens"), latency_s=latency,
                         finish_reason=str(choice.get("finish_reason") or "stop"),
                         model=str(obj.get("model") or self.model_name), backend=self.name)

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleBackend(base_url={self.base_url!r}, model={self.model_name!r}, key_env={self.api_key_env!r})"

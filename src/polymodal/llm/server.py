"""A small OpenAI-compatible HTTP server (``/v1/chat/completions``, ``/v1/models``) around any chat backend.

Uses: serve the local SmolLM2 to agent runs in other processes (``polymodal llm serve``); and, in tests and
benchmarks, a real server on 127.0.0.1 for :class:`~polymodal.llm.openai_backend.OpenAICompatibleBackend`,
with injectable faults (an HTTP status, a delay, a malformed body) to exercise retries and error handling.
Standard library only; requests are served one at a time (a torch model is not re-entrant).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from polymodal.core.errors import ConfigError
from polymodal.llm.chat import ChatBackend
from polymodal.llm.errors import ContextTooLongError


@dataclass
class Fault:
    """What the server does to the next request instead of (or before) answering it."""

    status: int | None = None  # answer with this HTTP status and an error body
    delay: float = 0.0  # sleep this long first (a timeout test)
    body: bytes | None = None  # answer 200 with this raw body (a malformed-reply test)
    retry_after: float | None = None  # Retry-After header on a status fault


class ChatServer:
    """``with ChatServer(backend) as server: OpenAICompatibleBackend(server.url, model=server.model_name)``."""

    def __init__(self, backend: ChatBackend, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
                 model_name: str | None = None, record_requests: bool = False):
        self.backend = backend
        self.model_name = model_name or getattr(backend, "model_name", None) or backend.name
        self.api_key = api_key
        self.faults: deque[Fault] = deque()
        # path, headers (incl. Authorization) and body of the last 1000 requests: for tests only, off by default
        self.record_requests = record_requests
        self.requests: deque[dict] = deque(maxlen=1000)
        # Every model call runs on this one worker thread: a fresh torch thread per request would start a new
        # OpenMP team each time (measured ~2x slower decoding when the caller's thread already ran torch).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polymodal-chat-model")
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="polymodal-chat-server", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._worker.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling -------------------------------------------------------------------------------------
    def _completion(self, body: dict) -> tuple[int, dict]:
        messages = body.get("messages")
        try:
            reply = self.backend.chat(
                messages, max_tokens=int(body.get("max_tokens") or 256),
                temperature=float(body.get("temperature") or 0.0), seed=body.get("seed"), stop=body.get("stop"),
            )
        except ContextTooLongError as exc:
            return 400, {"error": {"message": f"maximum context length exceeded: {exc}",
                                   "type": "invalid_request_error", "code": "context_length_exceeded"}}
        except (ConfigError, TypeError, ValueError) as exc:
            return 400, {"error": {"message": str(exc), "type": "invalid_request_error"}}
        except Exception as exc:  # the model failed: answer 500 rather than dropping the connection
            return 500, {"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error"}}
        return 200, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "finish_reason": reply.finish_reason}],
            "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                      "total_tokens": (reply.prompt_tokens or 0) + (reply.completion_tokens or 0)},
        }

    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: tests and benchmarks read their own output
                pass

            def _send(self, status: int, payload: dict | bytes, headers: dict | None = None) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            def do_GET(self) -> None:
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = None
                if server.record_requests:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                fault = server.faults.popleft() if server.faults else None
                if fault is not None and fault.delay:
                    time.sleep(fault.delay)
                if fault is not None and fault.status is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                    self._send(fault.status, {"error": {"message": f"injected fault {fault.status}"}}, headers)
                    return
                if fault is not None and fault.body is not None:
                    self._send(200, fault.body)
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._send(401, {"error": {"message": "invalid or missing API key"}})
                    return
                if not isinstance(body, dict):
                    self._send(400, {"error": {"message": "the request body is not a JSON object"}})
                    return
                status, payload = server._worker.submit(server._completion, body).result()
                self._send(status, payload)

        return Handler

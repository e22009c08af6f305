"""OpenAICompatibleBackend against a real HTTP server on 127.0.0.1 (polymodal.llm.server.ChatServer)."""

import json
import socket
import time

import pytest

from polymodal.llm import (
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextTooLongError,
    MalformedResponseError,
    OpenAICompatibleBackend,
    ScriptedBackend,
)
from polymodal.llm.server import ChatServer, Fault

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture()
def server():
    with ChatServer(ScriptedBackend(lambda msgs: f"echo: {msgs[-1]['content']}"), model_name="stub-model",
                    record_requests=True) as s:
        yield s


def client(server, **kw):
    slept = []
    kw.setdefault("sleep", slept.append)
    b = OpenAICompatibleBackend(server.url, model="stub-model", **kw)
    b.slept = slept
    return b


def test_success_returns_text_tokens_and_sends_the_request_fields(server, monkeypatch):
    monkeypatch.setenv("POLYMODAL_TEST_KEY", "sk-secret-123")
    b = client(server, api_key_env="POLYMODAL_TEST_KEY")
    r = b.chat(HELLO, max_tokens=7, temperature=0.0, seed=11, stop=["\n"])
    assert r.text == "echo: hello" and r.model == "stub-model" and r.backend == "openai"
    assert r.prompt_tokens == 1 and r.completion_tokens == 2 and r.finish_reason == "stop"
    sent = server.requests[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"] == {"model": "stub-model", "messages": HELLO, "max_tokens": 7, "temperature": 0.0,
                            "seed": 11, "stop": ["\n"]}
    assert sent["headers"]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(b)


def test_no_key_no_authorization_header(server, monkeypatch):
    monkeypatch.delenv("POLYMODAL_ABSENT_KEY", raising=False)
    client(server, api_key_env="POLYMODAL_ABSENT_KEY").chat(HELLO)
    assert "Authorization" not in server.requests[-1]["headers"]


def test_a_500_then_success_is_retried_with_backoff(server):
    server.faults.append(Fault(status=500))
    b = client(server, backoff=0.25)
    assert b.chat(HELLO).text == "echo: hello"
    assert b.attempts_made == 2 and b.slept == [0.25]


def test_persistent_503_gives_up_after_max_retries_honouring_retry_after(server):
    server.faults.extend([Fault(status=503, retry_after=3)] * 3)
    b = client(server, max_retries=2, backoff=0.5, max_backoff=10)
    with pytest.raises(BackendHTTPError, match="HTTP 503 after 3 attempt") as info:
        b.chat(HELLO)
    assert info.value.status == 503 and b.attempts_made == 3
    assert b.slept == [3.0, 3.0]  # Retry-After wins over the shorter exponential backoff


def test_client_errors_are_not_retried(server):
    server.faults.append(Fault(status=404))
    b = client(server)
    with pytest.raises(BackendHTTPError, match="HTTP 404") as info:
        b.chat(HELLO)
    assert info.value.status == 404 and b.attempts_made == 1


def test_wrong_key_names_the_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("POLYMODAL_TEST_KEY", "sk-wrong-999")
    with ChatServer(ScriptedBackend(lambda m: "x"), api_key="sk-right") as s:
        b = OpenAICompatibleBackend(s.url, model="m", api_key_env="POLYMODAL_TEST_KEY")
        with pytest.raises(BackendHTTPError, match=r"HTTP 401.*\$POLYMODAL_TEST_KEY") as info:
            b.chat(HELLO)
    assert "sk-wrong" not in str(info.value)


def test_timeout_is_retried_then_raised_without_hanging(server):
    server.faults.extend([Fault(delay=1.5), Fault(delay=1.5)])
    b = client(server, timeout=0.3, max_retries=1)
    t0 = time.perf_counter()
    with pytest.raises(BackendTimeoutError, match="no answer within 0.3 s after 2 attempt"):
        b.chat(HELLO)
    assert time.perf_counter() - t0 < 1.4 and b.attempts_made == 2


def test_malformed_bodies_are_clear_errors(server):
    server.faults.append(Fault(body=b"<html>proxy error</html>"))
    with pytest.raises(MalformedResponseError, match="not JSON.*proxy error"):
        client(server).chat(HELLO)
    server.faults.append(Fault(body=json.dumps({"choices": []}).encode()))
    with pytest.raises(MalformedResponseError, match=r"missing choices\[0\].message.content"):
        client(server).chat(HELLO)
    server.faults.append(Fault(body=json.dumps({"choices": [{"message": {"content": 5}}]}).encode()))
    with pytest.raises(MalformedResponseError, match="is int, not a string"):
        client(server).chat(HELLO)


def test_context_too_long_maps_to_its_own_error(smollm2):
    from polymodal.llm import TransformersBackend

    model, tok, _ = smollm2
    with ChatServer(TransformersBackend(model, tok, max_context=64)) as s:
        b = OpenAICompatibleBackend(s.url, model="smol")
        with pytest.raises(ContextTooLongError, match="too long"):
            b.chat([{"role": "user", "content": "word " * 100}], max_tokens=8)
        # and the same server answers normal requests with the real model
        assert b.chat([{"role": "user", "content": "Say hi."}], max_tokens=8).text


def test_unreachable_server_is_reported_after_retries():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    slept = []
    b = OpenAICompatibleBackend(f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, sleep=slept.append)
    with pytest.raises(BackendUnreachableError, match="unreachable after 3 attempt"):
        b.chat(HELLO)
    assert slept == [0.5, 1.0]


def test_bad_settings_are_config_errors():
    from polymodal.core.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url"):
        OpenAICompatibleBackend("localhost:8000", model="m")
    with pytest.raises(ConfigError, match="model"):
        OpenAICompatibleBackend("http://x/v1", model="")


def test_a_backend_crash_becomes_a_500_not_a_dropped_connection():
    def crash(messages):
        raise RuntimeError("CUDA out of memory")

    with ChatServer(ScriptedBackend(crash)) as s:
        b = OpenAICompatibleBackend(s.url, model="m", max_retries=1, sleep=lambda _: None)
        with pytest.raises(BackendHTTPError, match="HTTP 500 after 2 attempt.*CUDA out of memory"):
            b.chat(HELLO)

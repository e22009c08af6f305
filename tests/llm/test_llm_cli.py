"""`polymodal llm serve` and `polymodal llm chat --backend openai`, as a user would run them, on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_smollm2_and_chat_with_it_over_http(smollm2):
    port = _free_port()
    env = dict(os.environ, POLYMODAL_PROGRESS="0", SERVE_KEY="k-123")
    server = subprocess.Popen([sys.executable, "-m", "polymodal.cli", "llm", "serve", "--port", str(port),
                               "--api-key-env", "SERVE_KEY"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    models = json.load(r)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    pytest.fail(f"server did not start: {server.stderr.read()}")
                time.sleep(0.5)
        assert models["data"][0]["id"]
        chat = subprocess.run(
            [sys.executable, "-m", "polymodal.cli", "llm", "chat", "What is the capital of France?", "--backend",
             "openai", "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "smollm2", "--api-key-env",
             "SERVE_KEY", "--max-tokens", "24"], env=env, capture_output=True, text=True, timeout=120)
        assert chat.returncode == 0, chat.stderr
        assert "Paris" in chat.stdout and "completion tokens" in chat.stderr and "k-123" not in chat.stderr
        wrong = subprocess.run(
            [sys.executable, "-m", "polymodal.cli", "llm", "chat", "hi", "--backend", "openai", "--base-url",
             f"http://127.0.0.1:{port}/v1", "--model", "smollm2", "--api-key-env", "NO_SUCH_VAR"],
            env=env, capture_output=True, text=True, timeout=120)
        assert wrong.returncode != 0 and "HTTP 401" in wrong.stderr and "NO_SUCH_VAR" in wrong.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)

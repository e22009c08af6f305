"""The chat protocol's validation helpers, the scripted backend and the backend factory."""

import pytest
from pydantic import ValidationError

from polymodal.core.errors import ConfigError
from polymodal.llm import BackendConfig, ChatBackend, OpenAICompatibleBackend, ScriptedBackend, make_backend
from polymodal.llm.chat import check_messages, cut_at_stop
from polymodal.llm.scripted import ScriptExhaustedError


def test_check_messages_names_the_bad_entry():
    assert check_messages([{"role": "user", "content": "hi"}]) == [{"role": "user", "content": "hi"}]
    with pytest.raises(ConfigError, match="empty"):
        check_messages([])
    with pytest.raises(ConfigError, match="list of"):
        check_messages("hello")
    with pytest.raises(ConfigError, match=r"messages\[1\].content"):
        check_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": None}])
    with pytest.raises(ConfigError, match=r"messages\[0\]: expected a dict"):
        check_messages([("user", "hi")])


def test_cut_at_stop_takes_the_earliest_stop_string():
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)
    assert cut_at_stop("abc", ["x"]) == ("abc", False)
    assert cut_at_stop("abc", None) == ("abc", False)


def test_scripted_backend_replays_and_records():
    b = ScriptedBackend(["one", "two words"])
    assert isinstance(b, ChatBackend)
    r = b.chat([{"role": "user", "content": "hello there"}], seed=3)
    assert (r.text, r.prompt_tokens, r.completion_tokens) == ("one", 2, 1)
    assert b.chat([{"role": "user", "content": "x"}]).text == "two words"
    assert b.calls[0]["seed"] == 3
    with pytest.raises(ScriptExhaustedError, match="no reply left for call 3"):
        b.chat([{"role": "user", "content": "x"}])
    echo = ScriptedBackend(lambda msgs: msgs[-1]["content"].upper())
    assert echo.chat([{"role": "user", "content": "hi"}]).text == "HI"


def test_backend_config_and_factory():
    b = make_backend({"kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert isinstance(b, OpenAICompatibleBackend) and b.url == "http://127.0.0.1:9/v1/chat/completions"
    with pytest.raises(ConfigError, match="base_url"):
        make_backend({"kind": "openai"})
    with pytest.raises(ValidationError):
        BackendConfig(kind="ollama")
    with pytest.raises(ValidationError):
        BackendConfig(timeout=0)
    with pytest.raises(ValidationError):
        BackendConfig(unknown_field=1)

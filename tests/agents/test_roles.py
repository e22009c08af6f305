"""Role: template rendering, schema repair, fallback and the clear failure, on a scripted backend."""

from typing import Literal

import pytest
from pydantic import BaseModel

from polymodal.agents import Role, StructuredOutputError, Trace
from polymodal.core.errors import ConfigError
from polymodal.llm import ScriptedBackend


class Label(BaseModel):
    label: Literal["positive", "negative"]
    confidence: float


ROLE = Role("judge", system="You judge {domain} reviews.", prompt="Review: {review}", schema=Label)
STATE = {"domain": "film", "review": "Loved it."}


def test_messages_render_templates_and_put_the_schema_in_the_user_turn():
    msgs = ROLE.messages(STATE)
    assert msgs[0] == {"role": "system", "content": "You judge film reviews."}
    assert msgs[1]["content"].startswith("Review: Loved it.") and '"label"' in msgs[1]["content"]


def test_missing_template_variable_names_role_and_variable():
    with pytest.raises(ConfigError, match=r"role 'judge' prompt: the template uses \['review'\]"):
        ROLE.messages({"domain": "film"})


def test_valid_reply_parses_first_time():
    backend = ScriptedBackend(['{"label": "positive", "confidence": 0.9}'])
    out = ROLE.ask(backend, STATE, seed=5)
    assert out.parsed == Label(label="positive", confidence=0.9) and not out.repaired
    assert backend.calls[0]["temperature"] == 0.0 and backend.calls[0]["seed"] == 5


def test_broken_reply_is_repaired_with_the_validation_error():
    backend = ScriptedBackend(['{"label": "great", "confidence": 0.9}', '{"label": "positive", "confidence": 0.9}'])
    trace = Trace()
    out = ROLE.ask(backend, STATE, trace=trace)
    assert out.repaired and out.parsed.label == "positive" and len(out.replies) == 2
    repair_prompt = backend.calls[1]["messages"][-1]["content"]
    assert "field 'label'" in repair_prompt and "great" in repair_prompt
    assert backend.calls[1]["messages"][-2] == {"role": "assistant", "content": '{"label": "great", "confidence": 0.9}'}
    assert [e["kind"] for e in trace.events] == ["llm_call", "parse_error", "llm_call", "parsed"]


def test_second_failure_raises_naming_the_field():
    backend = ScriptedBackend(['{"label": "great", "confidence": 0.9}', '{"label": "positive"}'])
    with pytest.raises(StructuredOutputError, match="role 'judge'.*after one repair attempt.*field 'confidence'") as info:
        ROLE.ask(backend, STATE)
    assert info.value.fields == ["confidence"] and info.value.role == "judge"


def test_fallback_is_used_and_recorded():
    role = Role("judge", system="s", prompt="{review}", schema=Label,
                fallback=lambda state: {"label": "negative", "confidence": 0.5})
    trace = Trace()
    out = role.ask(ScriptedBackend(["no json", "still none"]), STATE, trace=trace)
    assert out.fallback_used and out.parsed == Label(label="negative", confidence=0.5)
    assert trace.events[-1]["kind"] == "fallback" and "no JSON" in trace.events[-1]["reason"]


def test_repair_can_be_switched_off():
    role = Role("judge", system="s", prompt="{review}", schema=Label, repair=False)
    backend = ScriptedBackend(["no json"])
    with pytest.raises(StructuredOutputError, match="repair disabled"):
        role.ask(backend, STATE)
    assert len(backend.calls) == 1


def test_roles_without_schema_return_text():
    out = Role("writer", system="s", prompt="{review}").ask(ScriptedBackend(["A fine film."]), STATE)
    assert out.value == "A fine film." and out.parsed is None

"""JSON extraction and schema validation of agent replies."""

from typing import Literal

import pytest
from pydantic import BaseModel, Field

from polymodal.agents import StructuredOutputError, extract_json, parse_reply, schema_hint


class Verdict(BaseModel):
    label: Literal["walking", "sitting"]
    confidence: float = Field(ge=0, le=1, description="probability of the label")
    evidence: list[str] = []


@pytest.mark.parametrize(
    "reply, expected",
    [
        ('{"a": 1}', {"a": 1}),
        ('Sure! Here it is:\n```json\n{"a": 1, "b": [1, 2]}\n```\nAnything else?', {"a": 1, "b": [1, 2]}),
        ('The answer is {"a": {"b": "x}y"}} as requested.', {"a": {"b": "x}y"}}),
        ('{"a": 1, "b": 2,}', {"a": 1, "b": 2}),
        ("{'a': 'single'}", {"a": "single"}),
        ('first {broken json} then {"ok": true}', {"ok": True}),
    ],
)
def test_extract_json_tolerates_what_small_models_write(reply, expected):
    assert extract_json(reply) == expected


def test_no_json_is_an_error_quoting_the_reply():
    with pytest.raises(StructuredOutputError, match="no JSON object found.*I think it is walking"):
        extract_json("I think it is walking.")


def test_validation_errors_name_every_field():
    with pytest.raises(StructuredOutputError) as info:
        parse_reply('{"label": "running", "confidence": 1.7}', Verdict)
    err = info.value
    assert err.fields == ["label", "confidence"]
    assert "field 'label'" in str(err) and "field 'confidence'" in str(err) and "running" in str(err)
    with pytest.raises(StructuredOutputError, match="field 'confidence': Field required"):
        parse_reply('{"label": "walking"}', Verdict)
    ok = parse_reply('```json\n{"label": "sitting", "confidence": 0.8}\n```', Verdict)
    assert ok == Verdict(label="sitting", confidence=0.8)


def test_schema_hint_lists_fields_choices_and_bounds():
    hint = schema_hint(Verdict)
    assert '"label": <"walking" | "sitting">' in hint
    assert '"confidence": <number>  // minimum 0, maximum 1, probability of the label' in hint
    assert '"evidence": <list of string>' in hint

"""A two-role pipeline with a schema, end to end on the real SmolLM2, writing its trace."""

from typing import Literal

from pydantic import BaseModel, Field

from polymodal.agents import Pipeline, Role, StructuredOutputError, Trace


class Sentiment(BaseModel):
    label: Literal["positive", "negative"]
    confidence: float = Field(ge=0, le=1)


def test_two_role_pipeline_runs_on_smollm2_and_writes_its_trace(smollm2_backend, tmp_path):
    reader = Role("reader", system="You summarise product reviews in one short sentence.",
                  prompt="Review: {review}", max_tokens=40)
    judge = Role("judge", system="You classify the sentiment of a review summary.", prompt="Summary: {summary}",
                 schema=Sentiment, max_tokens=40)
    p = Pipeline("review")
    p.role_step("read", reader, output="summary")
    p.role_step("judge", judge, output="sentiment")
    p.edge("read", "judge")
    with Trace(tmp_path / "trace.jsonl") as trace:
        result = p.run({"review": "The blender broke after two days and support never answered."},
                       backend=smollm2_backend, trace=trace, seed=0)
    assert result.path == ["read", "judge"]
    assert isinstance(result.state["summary"], str) and result.state["summary"]
    assert isinstance(result.state["sentiment"], Sentiment)
    events = Trace.read(tmp_path / "trace.jsonl")
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert [c["role"] for c in calls][:2] == ["reader", "judge"]
    assert all(c["prompt_tokens"] > 0 and c["completion_tokens"] > 0 and c["latency_s"] > 0 for c in calls)
    assert calls[1]["messages"][1]["content"].startswith(f"Summary: {result.state['summary']}")
    assert any(e["kind"] == "parsed" and e["role"] == "judge" for e in events)


class Rating(BaseModel):
    stars: int = Field(ge=1, le=5)
    reason: str


def test_a_reply_that_breaks_the_schema_is_repaired_or_names_the_field(smollm2_backend):
    # Greedy SmolLM2-135M answers this with a JSON object of its own invention ({"title": ..., "genres": ...})
    # twice; the repair turn quotes the missing fields and the final error names them.
    role = Role("rater", system="You are a film critic.", prompt="Rate the film Jaws.", schema=Rating, max_tokens=40)
    trace = Trace()
    try:
        out = role.ask(smollm2_backend, {}, trace=trace)
    except StructuredOutputError as err:
        assert err.role == "rater" and set(err.fields) <= {"stars", "reason"} and err.fields
        assert all(f"field '{f}'" in str(err) for f in err.fields)
        kinds = [e["kind"] for e in trace.events]
        assert kinds == ["llm_call", "parse_error", "llm_call", "parse_error"]
        assert "field '" in trace.events[2]["messages"][-1]["content"]  # the repair prompt quoted the error
    else:
        assert isinstance(out.parsed, Rating)

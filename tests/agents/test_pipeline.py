"""Pipeline routing, bounded loops and the JSONL trace, on a scripted backend (real model: test_smollm2_agents)."""

import pytest

from polymodal.agents import END, Pipeline, PipelineError, Role, Trace
from polymodal.llm import ScriptedBackend


def debate_pipeline(max_rounds: int) -> Pipeline:
    """Two advocates alternate until one concedes or the round limit is hit, then a judge decides."""
    p = Pipeline("debate")
    pro = Role("pro", system="Argue for moving.", prompt="Round {round}. Last: {last}")
    con = Role("con", system="Argue for still.", prompt="Round {round}. Last: {last}")

    @p.step("pro")
    def pro_step(state, ctx):
        return {"last": ctx.ask(pro, state).text}

    @p.step("con")
    def con_step(state, ctx):
        said = ctx.ask(con, state).text
        return {"last": said, "round": state["round"] + 1, "conceded": "concede" in said}

    p.step("judge", lambda state, ctx: {"verdict": "moving" if state["conceded"] else "undecided"})
    p.edge("pro", "con")
    p.route("con", lambda s: "judge" if s["conceded"] or s["round"] >= max_rounds else "again",
            {"judge": "judge", "again": "pro"})
    return p


def test_routing_and_a_bounded_debate(tmp_path):
    replies = ["moving: the wrist swings", "still: low variance", "moving: 1.8 Hz cadence", "I concede"]
    trace = Trace(tmp_path / "trace.jsonl")
    result = debate_pipeline(max_rounds=5).run({"round": 0, "last": ""}, backend=ScriptedBackend(replies), trace=trace)
    trace.close()
    assert result.path == ["pro", "con", "pro", "con", "judge"]
    assert result.state["verdict"] == "moving" and result.state["round"] == 2
    events = Trace.read(tmp_path / "trace.jsonl")
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert [c["role"] for c in calls] == ["pro", "con", "pro", "con"]
    assert [c["step"] for c in calls] == ["pro", "con", "pro", "con"]
    assert calls[1]["messages"][1]["content"] == "Round 0. Last: moving: the wrist swings"
    assert calls[3]["reply"] == "I concede"
    routes = [(e["src"], e["answer"]) for e in events if e["kind"] == "route"]
    assert routes == [("con", "again"), ("con", "judge")]
    assert events[-1]["kind"] == "pipeline_end" and events[-1]["path"] == result.path
    summary = trace.summary()
    assert summary["total"]["calls"] == 4 and summary["roles"]["con"]["completion_tokens"] == 3 + 2


def test_round_limit_ends_a_debate_nobody_concedes():
    result = debate_pipeline(max_rounds=2).run({"round": 0, "last": ""}, backend=ScriptedBackend(lambda m: "no"))
    assert result.path == ["pro", "con", "pro", "con", "judge"] and result.state["verdict"] == "undecided"


def test_unbounded_loop_is_stopped_naming_the_step():
    p = Pipeline("loop", max_visits=3)
    p.step("spin", lambda s, ctx: {"n": s.get("n", 0) + 1})
    p.route("spin", lambda s: "spin", ["spin"])
    with pytest.raises(PipelineError, match="step 'spin' visited more than max_visits=3"):
        p.run({})
    q = Pipeline("loop2", max_steps=4)
    q.step("a", lambda s, ctx: None)
    q.step("b", lambda s, ctx: None)
    q.edge("a", "b")
    q.edge("b", "a")
    with pytest.raises(PipelineError, match="more than max_steps=4"):
        q.run({})


def test_miswiring_is_reported_before_running():
    p = Pipeline("bad")
    p.step("a", lambda s, ctx: None)
    p.edge("a", "nowhere")
    with pytest.raises(PipelineError, match="unknown step 'nowhere'"):
        p.run({})
    r = Pipeline("router")
    r.step("a", lambda s, ctx: None)
    r.route("a", lambda s: "elsewhere", ["a", END])
    with pytest.raises(PipelineError, match="returned 'elsewhere'; allowed"):
        r.run({})
    with pytest.raises(PipelineError, match="already has an outgoing"):
        r.edge("a", END)
    bad = Pipeline("ret")
    bad.step("a", lambda s, ctx: 42)
    with pytest.raises(PipelineError, match="returned int"):
        bad.run({})


def test_role_step_tiers_and_history():
    p = Pipeline("tiers")
    p.role_step("quick_one", Role("q", system="s", prompt="x"), output="q", tier="quick")
    p.role_step("deep_one", Role("d", system="s", prompt="x"), output="d", tier="deep")
    p.edge("quick_one", "deep_one")
    quick, deep = ScriptedBackend(["fast"]), ScriptedBackend(["slow"])
    result = p.run({}, backends={"quick": quick, "deep": deep})
    assert result.state["q"] == "fast" and result.state["d"] == "slow" and result.state["q_history"] == ["fast"]
    with pytest.raises(PipelineError, match="no backend for tier 'quick'"):
        p.run({}, backends={"other": quick})


def test_a_failing_step_is_recorded_then_raised():
    p = Pipeline("boom")

    @p.step("a")
    def explode(state, ctx):
        raise RuntimeError("sensor missing")

    trace = Trace()
    with pytest.raises(RuntimeError, match="sensor missing"):
        p.run({}, trace=trace)
    assert trace.events[-1]["kind"] == "step_error" and "sensor missing" in trace.events[-1]["error"]


def test_trace_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "t.jsonl"
    with Trace(path) as t:
        t.record("note", text="ok")
    with open(path, "a") as fh:
        fh.write('{"seq": 1, "kind": "llm_ca')
    assert [e["kind"] for e in Trace.read(path)] == ["note"]

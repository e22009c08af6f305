"""A tiny end-to-end ``affectseek`` run (rule backend), resume, and the same recipe against a local
OpenAI-compatible server on 127.0.0.1 serving a scripted function (no real model)."""

import json

import pytest
import torch

from polymodal.affect.vqau.recipe import ROWS, AffectSeekConfig, make_llm, run_affectseek
from polymodal.core.config import build_config
from polymodal.core.errors import ConfigError
from polymodal.core.runs import Run
from polymodal.llm import OpenAICompatibleBackend, ScriptedBackend
from polymodal.llm.server import ChatServer

torch.set_num_threads(1)
TINY = {"n_videos": 2, "train_videos": 4, "min_seconds": 60.0, "max_seconds": 90.0, "n_queries": 3, "threads": 1}


def test_tiny_rule_run_has_every_row_and_resumes(tmp_path):
    cfg = build_config(AffectSeekConfig, {**TINY, "backend": "rule"})
    run = Run.create(tmp_path / "r", "affectseek", cfg.model_dump(mode="json"))
    res = run_affectseek(cfg, run)
    assert tuple(res.rows) == ROWS
    for m in res.rows.values():
        assert 0 <= m["joint@0.5"] <= min(m["r1@0.5"], m["accuracy"]) <= 1
        assert 0 <= m["bleu4"] <= 100 and 0 <= m["rouge_l"] <= 1 and m["llm_calls_per_query"] == 0
    assert (tmp_path / "r" / "trace-affectseek.jsonl").is_file()
    again = run_affectseek(cfg, Run.open(tmp_path / "r"))  # every row checkpointed
    assert again.rows == res.rows
    json.dumps(res.extra)


def test_config_errors():
    with pytest.raises(ConfigError, match="methods"):
        build_config(AffectSeekConfig, {"methods": ["affectseek", "nope"]})
    with pytest.raises(ConfigError, match="backend"):
        build_config(AffectSeekConfig, {"backend": "gpt"})
    with pytest.raises(ConfigError, match="base_url"):
        make_llm(build_config(AffectSeekConfig, {"backend": "openai"}))


def _server_reply(msgs):
    system = msgs[0]["content"]
    if "pick out" in system:  # the one-line intent (cues not in the query are dropped; then the rule's)
        return "park, laughter"
    if "name the emotion" in system:
        return '{"emotion": "Joy", "confidence": 0.6}'
    if "find a moment" in system:
        return '{"start": 5, "end": 20, "emotion": "Fear", "rationale": "a guess"}'
    return "Someone laughs."


def test_recipe_against_a_local_openai_compatible_server(tmp_path):
    with ChatServer(ScriptedBackend(_server_reply), model_name="stub-model", record_requests=True) as server:
        cfg = build_config(AffectSeekConfig, {**TINY, "n_queries": 2, "backend": "openai", "base_url": server.url,
                                              "model": "stub-model",
                                              "methods": ["affectseek", "one-step-llm", "affectseek-no-intent"]})
        assert isinstance(make_llm(cfg), OpenAICompatibleBackend)
        res = run_affectseek(cfg, Run.create(tmp_path / "o", "affectseek", cfg.model_dump(mode="json")))
        paths = {r["path"] for r in server.requests}
        models = {r["body"]["model"] for r in server.requests}
    assert paths == {"/v1/chat/completions"} and models == {"stub-model"}
    assert res.rows["affectseek"]["llm_calls_per_query"] >= 3  # intent, emotion, rationale over HTTP
    # no log-probabilities over HTTP: every call is generated, the emotion comes from the JSON role
    assert res.rows["affectseek"]["scored_calls_per_query"] == 0 and res.extra["scoring_available"] is False
    assert res.rows["affectseek"]["fallback_rate_emotion"] == 0.0  # the stub's JSON emotion parses
    assert res.rows["one-step-llm"]["llm_calls_per_query"] == 1 and res.rows["one-step-llm"]["fallbacks_per_query"] == 0
    assert res.rows["one-step-llm"]["accuracy"] in (0.0, 0.5, 1.0)
    events = [json.loads(x) for x in (tmp_path / "o" / "trace-affectseek.jsonl").read_text().splitlines()]
    calls = [e for e in events if e["kind"] == "llm_call"]
    assert calls and all(e["backend"] == "openai" and e["model"] == "stub-model" for e in calls)

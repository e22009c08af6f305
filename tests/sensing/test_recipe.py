"""The sensing-agents recipe end to end with the rule backend, and against an OpenAI-compatible ChatServer on
127.0.0.1 serving the rule function (no real model): the `--set backend=openai --set base_url=...` path."""

import json

import pytest
import torch

from polymodal.core.config import build_config
from polymodal.core.registry import get_recipe
from polymodal.core.runs import Run
from polymodal.llm import ScriptedBackend
from polymodal.llm.server import ChatServer
from polymodal.sensing.agents import RuleBasedLLM
from polymodal.sensing.recipe import ROWS, SensingAgentsConfig

TINY = {"participants": 2, "seconds_per_activity": 4.0, "n_eval_windows": 7, "faults": ("nan", "missing"),
        "n_fault_windows": 3, "rf_trees": 10, "cnn_epochs": 2, "threads": 1}


def run_recipe(tmp_path, **over):
    torch.set_num_threads(1)
    rec = get_recipe("sensing-agents")
    cfg = build_config(SensingAgentsConfig, {**TINY, **over})
    run = Run.create(tmp_path / "run", rec.name, cfg.model_dump(mode="json"))
    return rec.run_fn(cfg, run), run


def test_recipe_registration():
    rec = get_recipe("sensing-agents")
    assert rec.family == "sensing" and rec.demo and rec.rows == ROWS
    assert ROWS == ("sensing-agents", "single-agent", "majority-vote", "random-forest", "cnn-1d")


@pytest.mark.slow  # ~15 s alone, ~35 s on a loaded 2-core machine (it runs the recipe twice)
def test_tiny_end_to_end_with_rule_backend_and_resume(tmp_path):
    result, run = run_recipe(tmp_path, backend="rules")
    assert list(result.rows) == list(ROWS)
    sa = result.rows["sensing-agents"]
    for key in ("accuracy", "macro_f1", "fault/nan/accuracy", "fault/missing/accuracy", "fault_mean_accuracy",
                "tokens_per_window", "seconds_per_window", "llm_calls_per_window", "fallback_rate"):
        assert key in sa
    assert sa["accuracy"] > 1 / 7 and sa["fallback_rate"] == 0
    assert result.rows["random-forest"]["tokens_per_window"] == 0
    lines = (run.dir / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 * (7 + 3 + 3)
    assert (run.dir / "trace.jsonl").is_file()
    # resuming reuses every agent prediction (a scripted backend that must never be called)
    again, _ = run_recipe(tmp_path, backend="rules")
    assert again.rows["sensing-agents"] == result.rows["sensing-agents"]


def test_openai_backend_against_a_local_server(tmp_path):
    rules = RuleBasedLLM()
    with ChatServer(ScriptedBackend(rules), model_name="stub-sensing") as server:
        result, run = run_recipe(tmp_path, backend="openai", base_url=server.url, model="stub-sensing",
                                 methods=("sensing-agents", "single-agent"), faults=())
    ref, _ = run_recipe(tmp_path / "ref", backend="rules", methods=("sensing-agents", "single-agent"), faults=())
    assert result.rows["sensing-agents"]["accuracy"] == ref.rows["sensing-agents"]["accuracy"]
    assert result.rows["sensing-agents"]["fallback_rate"] == 0
    calls = [json.loads(x) for x in (run.dir / "trace.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "llm_call" and e["backend"] == "openai" for e in calls)


def test_openai_backend_needs_base_url_and_model(tmp_path):
    from polymodal.core.errors import ConfigError

    with pytest.raises(ConfigError, match="base_url"):
        run_recipe(tmp_path, backend="openai", methods=("single-agent",), faults=())

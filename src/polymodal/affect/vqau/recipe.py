"""Recipe ``affectseek``: AffectSeek vs its baselines and stage ablations on (synthetic) VQAU-Bench (issue 11).

One run answers the same test queries with every row, on the same benchmark, seed and language-model backend:

- ``affectseek``                 — the full pipeline (intent, localize, verify + refine, emotion, cross-check loop,
  rationale);
- ``one-step-llm``               — one LLM call over the whole timeline (falls back to single-step retrieval);
- ``retrieval-classifier``       — sliding-window retrieval + a logistic-regression emotion classifier, no agents;
- ``affectseek-no-verification`` — no verification tool and no cross-stage loop;
- ``affectseek-no-intent``       — the raw query instead of intent interpretation.

The backend is picked with flat fields: ``--set backend=openai --set base_url=http://127.0.0.1:8000/v1 --set
model=NAME`` (any OpenAI-compatible server), ``backend=transformers`` (default: the bundled SmolLM2-135M-Instruct,
or ``model=`` a local HF dir / .gguf) or ``backend=rule`` (the deterministic rule-based backend of spec 1.5).
``emotion_decoding=score`` (default) makes the closed choices (emotion label, one-step line and label) by
log-probabilities when the backend has them; ``generate`` (and any OpenAI-compatible server) uses generated JSON.
Per-stage fallback rates (``fallback_rate_<stage>``) and scored / generated calls per query are in every row.
Identical LLM requests across rows are answered once (:class:`MemoBackend`). Every row's predictions are
checkpointed, so ``--resume`` skips finished rows; every prompt and reply is in ``trace-<row>.jsonl``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from polymodal.affect.vqau.agents import MemoBackend, RuleBasedLLM, can_score
from polymodal.affect.vqau.baselines import OneStepLLM, RetrievalClassifier
from polymodal.affect.vqau.loader import load_benchmark
from polymodal.affect.vqau.metrics import evaluate
from polymodal.affect.vqau.pipeline import LLM_STAGES, AffectSeek
from polymodal.affect.vqau.schema import VQAUBenchmark, VQAUPrediction
from polymodal.affect.vqau.synthetic import make_benchmark
from polymodal.agents import Trace
from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run

PAPER = Paper(title="AffectSeek: Agentic Affective Understanding in Long Videos under Vague User Queries",
              venue="2026", arxiv="2605.05640", code="https://github.com/TianZhenK/vqau-bench (benchmark site)")
ROWS = ("affectseek", "one-step-llm", "retrieval-classifier", "affectseek-no-verification", "affectseek-no-intent")
TABLE = ("joint@0.5", "joint@0.3", "joint@0.7", "r1@0.3", "r1@0.5", "r1@0.7", "miou", "accuracy", "macro_f1",
         "bleu4", "rouge_l", "grounding", "llm_calls_per_query", "fallbacks_per_query", "seconds_per_query")


class AffectSeekConfig(RecipeConfig):
    """AffectSeek on the embedded synthetic VQAU-Bench (spec 1.7) or a records + timelines folder (``data``)."""

    data: str | None = Field(None, description="None = synthetic benchmark; a folder with records.jsonl + "
                             "timelines.jsonl (see polymodal.affect.vqau.loader)")
    methods: tuple[str, ...] = Field(ROWS, description=f"rows to produce, any of {', '.join(ROWS)}")
    backend: Literal["transformers", "openai", "llama-cpp", "rule"] = Field(
        "transformers", description="language-model backend: transformers (bundled SmolLM2 or 'model'), openai "
        "(any OpenAI-compatible server at base_url), llama-cpp, or rule (deterministic, no model)")
    model: str | None = Field(None, description="local HF model dir or .gguf (transformers, llama-cpp; None = bundled "
                              "SmolLM2-135M-Instruct) or the server's model name (openai)")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the server's API key")
    timeout: float = Field(120.0, gt=0, description="seconds per HTTP request (openai)")
    max_retries: int = Field(3, ge=0, le=20)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    llm_stages: tuple[str, ...] = Field(("intent", "emotion", "rationale"),
                                        description=f"stages that ask the language model, any of {LLM_STAGES}")
    emotion_decoding: Literal["score", "generate"] = Field(
        "score", description="score: closed choices (emotion label, intent polarity, one-step line and label) by "
        "log-probabilities when the backend has them (transformers, llama-cpp), else generate; generate: always "
        "the generated-JSON path (the only one an OpenAI-compatible server offers)")
    n_videos: int = Field(20, ge=1, description="synthetic test videos")
    train_videos: int = Field(20, ge=1, description="synthetic training videos (retrieval-classifier only)")
    min_seconds: float = Field(300.0, gt=0, description="shortest synthetic video")
    max_seconds: float = Field(900.0, gt=0, description="longest synthetic video")
    n_queries: int | None = Field(None, ge=1, description="test queries answered (seeded sample; None: all)")
    top_k: int = Field(5, ge=1, le=50, description="candidate windows from localisation")
    max_rounds: int = Field(3, ge=1, le=20, description="candidates verified at most (the loop bound)")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("llm_stages")
    @classmethod
    def _stages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, LLM_STAGES) if v else v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "backend", "model", "base_url", "llm_stages", "emotion_decoding",
                "n_videos", "train_videos",
                "min_seconds", "max_seconds", "n_queries", "top_k", "max_rounds")


#: ``--quick``: short videos (1-2 min), 24 queries, SmolLM2 on one thread (CPU decoding is the budget)
QUICK = {"n_videos": 4, "train_videos": 12, "min_seconds": 60.0, "max_seconds": 120.0, "n_queries": 24, "threads": 1}
#: ``polymodal demo`` (on top of quick): 10 of the 24 quick queries (seeded sample), every row, SmolLM2 as in quick
DEMO = {"n_queries": 10}
#: ``polymodal demo --setting smoke`` (on top of quick): the rule backend (no model), 1 video, 3 queries
SMOKE = {"backend": "rule", "n_videos": 1, "train_videos": 2, "n_queries": 3}
#: the demo overview: AffectSeek against the two baselines (the other rows are its own ablations)
HEADLINE = ("affectseek", ("one-step-llm", "retrieval-classifier"))
#: trace roles whose answer path is counted (``stage`` events): fallback rates per stage in the result
STAGE_ROLES = ("intent", "intent-polarity", "emotion", "rationale", "one-step", "one-step-emotion")


def make_llm(cfg: AffectSeekConfig):
    """The chat backend the flat config fields describe (``backend=rule``: :class:`RuleBasedLLM`)."""
    if cfg.backend == "rule":
        return RuleBasedLLM()
    from polymodal.llm.backends import BackendConfig, make_backend

    return make_backend(BackendConfig(kind=cfg.backend, model=cfg.model, base_url=cfg.base_url,
                                      api_key_env=cfg.api_key_env, timeout=cfg.timeout, max_retries=cfg.max_retries,
                                      dtype=cfg.dtype))


def load_data(cfg: AffectSeekConfig) -> tuple[VQAUBenchmark, VQAUBenchmark | None]:
    """(test benchmark, training benchmark for the classifier) — synthetic, or ``data`` split 50/50 by video."""
    if cfg.min_seconds > cfg.max_seconds:
        raise ConfigError(f"field 'min_seconds': {cfg.min_seconds} > max_seconds {cfg.max_seconds}")
    if cfg.data is None:
        kw = {"min_seconds": cfg.min_seconds, "max_seconds": cfg.max_seconds}
        return (make_benchmark(cfg.n_videos, cfg.seed, **kw),
                make_benchmark(cfg.train_videos, cfg.seed + 10_000, **kw))
    bench = load_benchmark(cfg.data)
    vids = sorted(bench.videos)
    order = np.random.default_rng([cfg.seed, 0xDA7A]).permutation(len(vids))
    train_ids = {vids[i] for i in order[: len(vids) // 2]}
    test_ids = set(vids) - train_ids
    if not train_ids or not test_ids:
        raise ConfigError(f"field 'data': {cfg.data} has {len(vids)} video(s); need >= 2 to split train/test")

    def part(ids: set[str]) -> VQAUBenchmark:
        return VQAUBenchmark({v: bench.videos[v] for v in ids}, [r for r in bench.records if r.video_id in ids])

    return part(test_ids), part(train_ids)


def select_queries(bench: VQAUBenchmark, n: int | None, seed: int) -> list:
    if n is None or n >= len(bench.records):
        return list(bench.records)
    idx = np.random.default_rng([seed, 0x9E]).choice(len(bench.records), n, replace=False)
    return [bench.records[i] for i in sorted(idx)]


def build_row(row: str, cfg: AffectSeekConfig, llm, encoder, train: VQAUBenchmark | None):
    common = {"top_k": cfg.top_k, "max_rounds": cfg.max_rounds, "llm_stages": cfg.llm_stages, "seed": cfg.seed,
              "emotion_decoding": cfg.emotion_decoding}
    if row == "affectseek":
        return AffectSeek(llm, encoder, **common)
    if row == "affectseek-no-verification":
        return AffectSeek(llm, encoder, tools=("localize", "refine"), **common)
    if row == "affectseek-no-intent":
        return AffectSeek(llm, encoder, intent=False, **common)
    if row == "one-step-llm":
        return OneStepLLM(llm, encoder, emotion_decoding=cfg.emotion_decoding, seed=cfg.seed)
    if train is None or not train.records:
        raise ConfigError("row 'retrieval-classifier' needs training records")
    return RetrievalClassifier(encoder, seed=cfg.seed).fit(train)


def run_row(system, queries: list, bench: VQAUBenchmark, trace: Trace, row: str) -> tuple[list[VQAUPrediction], dict]:
    preds, seconds, tokens = [], [], []
    paths: dict[str, dict[str, int]] = {}
    modes = {"score": 0, "generate": 0}
    with progress_bar(len(queries), f"affectseek: {row}") as bar:
        for rec in queries:
            t0 = time.perf_counter()
            pred = system.run(bench.videos[rec.video_id], rec.query, trace=trace.bind(query=rec.id))
            seconds.append(time.perf_counter() - t0)
            tokens.append(sum((e.get("prompt_tokens") or 0) + (e.get("completion_tokens") or 0)
                              for e in pred.trace if e["kind"] == "llm_call"))
            for e in pred.trace:
                if e["kind"] == "stage" and e.get("role") in STAGE_ROLES:
                    per = paths.setdefault(e["role"], {})
                    per[e["path"]] = per.get(e["path"], 0) + 1
                elif e["kind"] == "llm_call":
                    modes["score" if e.get("mode") == "score" else "generate"] += 1
            pred.trace = []  # kept in the trace file, not in the checkpoint
            preds.append(pred)
            bar.advance()
    n = max(1, len(preds))
    stats = {"llm_calls_per_query": sum(p.llm_calls for p in preds) / n,
             "fallbacks_per_query": sum(p.fallbacks for p in preds) / n,
             "seconds_per_query": float(np.mean(seconds)) if seconds else 0.0,
             "tokens_per_query": float(np.mean(tokens)) if tokens else 0.0,
             "rounds": sum(p.rounds for p in preds) / n,
             "unverified": sum(not p.verified for p in preds) / n,
             "scored_calls_per_query": modes["score"] / n, "generated_calls_per_query": modes["generate"] / n}
    for role, per in paths.items():  # share of the stage's model answers replaced by the rule (None: never asked)
        asked = sum(v for k, v in per.items() if k != "rule")
        if asked:
            stats[f"fallback_rate_{role.replace('-', '_')}"] = per.get("fallback", 0) / asked
    return preds, stats


def affectseek_report(d, result: dict, run_dirs: dict) -> tuple[list[str], list]:
    from pathlib import Path

    from polymodal.core.execute import _save
    from polymodal.core.report import plot_bars

    rows = result["rows"]
    values = {r["method"]: float(r["metrics"].get("joint@0.5", 0.0)) for r in rows}
    md = ["## Notes", "",
          "Metric definitions are ours (spec affect.md 1.6; only 'Joint' and 'Accuracy' are named by the paper). "
          "`fallbacks_per_query` counts stage answers replaced by the rule's (a reply that failed to parse twice, a "
          "scoring error, an ungrounded rationale): with a small model, a high value means the row's numbers are "
          "largely the rules'. `emotion_decoding=score` makes closed choices (emotion label, intent polarity, the "
          "one-step line and label) by log-probabilities, which cannot fail to parse.", ""]
    stage_cols = sorted({k for r in rows for k in r["metrics"] if k.startswith("fallback_rate_")})
    if stage_cols:
        md += ["### Fallback rate per stage (share of the stage's model answers replaced by its rule)", "",
               "| method | scored calls/q | generated calls/q | " + " | ".join(c[len("fallback_rate_"):]
                                                                          for c in stage_cols) + " |",
               "|---" * (len(stage_cols) + 3) + "|"]
        for r in rows:
            m = r["metrics"]
            md.append(f"| {r['method']} | {m.get('scored_calls_per_query', 0):.2f} | "
                      f"{m.get('generated_calls_per_query', 0):.2f} | " +
                      " | ".join(f"{m[c]:.2f}" if c in m else "—" for c in stage_cols) + " |")
        md.append("")
    fig = plot_bars(values, ylabel="Joint@0.5", title="affectseek: window and emotion both right",
                    highlight="affectseek")
    return md, [_save(fig, Path(d) / "joint.png")]


@recipe("affectseek", family="affect", paper=PAPER, config=AffectSeekConfig, primary_metric="joint@0.5",
        baselines=(), rows=ROWS, compare_self=True, quick=QUICK, demo=True, table_metrics=TABLE,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=HEADLINE,
        report_extras=affectseek_report)
def run_affectseek(cfg: AffectSeekConfig, run: Run) -> Result:
    """AffectSeek (agentic affective-moment search under vague queries) vs one-step LLM and retrieval+classifier."""
    import torch

    from polymodal.text import SentenceEncoder

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_setup = time.perf_counter()
    bench, train = load_data(cfg)
    queries = select_queries(bench, cfg.n_queries, cfg.seed)
    encoder = SentenceEncoder()
    llm = None
    memo = None
    setup_s = time.perf_counter() - t_setup
    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for row in cfg.methods:
        done = run.load_checkpoint(f"row-{row}.pt")
        if done is None:
            if llm is None and row != "retrieval-classifier":
                t0 = time.perf_counter()
                memo = MemoBackend(make_llm(cfg))
                llm = memo
                setup_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            system = build_row(row, cfg, llm, encoder, train)
            with Trace(run.path(f"trace-{row}.jsonl"), context={"row": row}) as trace:
                preds, stats = run_row(system, queries, bench, trace, row)
            metrics = {**evaluate(preds, queries, bench.videos), **stats}
            done = {"metrics": metrics, "seconds": time.perf_counter() - t0,
                    "preds": [p.to_dict() for p in preds]}
            run.save_checkpoint(done, f"row-{row}.pt")
            run.log(len(rows), row=row, **metrics)
        rows[row] = {k: float(v) for k, v in done["metrics"].items()}
        seconds[row] = float(done["seconds"])
    extra: dict[str, Any] = {"backend": cfg.backend, "model": cfg.model or ("bundled SmolLM2-135M-Instruct"
                             if cfg.backend == "transformers" else None), "llm_stages": list(cfg.llm_stages),
                             "emotion_decoding": cfg.emotion_decoding,
                             "scoring_available": bool(llm is not None and can_score(llm)),
                             "n_queries": len(queries), "n_videos": len(bench.videos),
                             "mean_video_seconds": float(np.mean([v.duration for v in bench.videos.values()])),
                             "setup_seconds": round(setup_s, 2),
                             "memo_hits": memo.hits if memo else 0, "memo_misses": memo.misses if memo else 0}
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))

"""Recipe ``sensing-agents``: SensingAgents vs its baselines on Shoaib-format IMU windows (spec 4.4, 5, 7).

One run loads the data (embedded: the seeded generator's Shoaib-2014 CSVs read back through the real loader; or a
folder of real ``Participant_*.csv`` / Shoaib 2013 tables via ``data``), windows it, holds out the last
participant(s), and evaluates every row on the SAME stratified test windows, clean and under each injected fault:

- ``sensing-agents`` — per-position analysts, the advocates' debate on conflict, the decision agent;
- ``single-agent``   — one LLM call per window over the same tool outputs (HARGPT-style);
- ``majority-vote``  — the majority of the SensingAgents analysts' labels (same calls, no debate/decision);
- ``random-forest``  — sklearn on every position's tool features, trained on the training participants;
- ``cnn-1d``         — a small 1D-CNN on raw acc+gyro, trained likewise.

The language model is the bundled SmolLM2-135M-Instruct by default (``backend=transformers``); ``backend=openai
base_url=... model=...`` talks to any OpenAI-compatible server; ``backend=rules`` is the deterministic rule backend.
Metrics: accuracy and macro-F1 overall, on the conflict subset (windows whose analysts disagree), under each fault;
LLM calls, tokens and seconds per window; the share of role calls that fell back to the rules. Resumable: each
agent prediction is one line of ``predictions.jsonl``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.agents import Trace
from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run, atomic_write_text
from polymodal.sensing.agents import RuleBasedLLM, SensingAgents, SingleAgentHAR, majority_vote
from polymodal.sensing.faults import FAULTS, corrupt
from polymodal.sensing.imu import ACTIVITIES, load_shoaib_2013, load_shoaib_2014
from polymodal.sensing.windowing import WindowSet, make_windows

PAPER = Paper(title="SensingAgents: A Multi-Agent Collaborative Framework for Robust IMU Activity Recognition",
              venue="arXiv preprint (May 2026)", arxiv="2605.04608")
ROWS = ("sensing-agents", "single-agent", "majority-vote", "random-forest", "cnn-1d")
AGENT_ROWS = ("sensing-agents", "single-agent", "majority-vote")


class SensingAgentsConfig(RecipeConfig):
    """SensingAgents on the embedded Shoaib-format data (spec 7/8 defaults: 3 participants × 7 activities × 30 s)."""

    methods: tuple[str, ...] = Field(ROWS, description=f"rows to run, any of {', '.join(ROWS)}")
    backend: Literal["transformers", "openai", "llama-cpp", "rules"] = Field(
        "transformers", description="chat backend of the agents: local SmolLM2 (transformers), an OpenAI-compatible "
        "server (openai: needs base_url and model), llama-cpp, or the deterministic rule backend")
    model: str | None = Field(None, description="local model dir/.gguf, or the server's model name (openai)")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (openai)")
    timeout: float = Field(120.0, gt=0, description="seconds per HTTP request (openai)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    max_tokens: int = Field(48, ge=8, le=1024, description="completion budget of each agent call")
    decoding: Literal["score", "generate"] = Field(
        "score", description="score: each role picks its label by the log-probabilities of the label continuations "
        "(constrained choice, no JSON) when the backend offers them (transformers, llama-cpp); generate: JSON replies "
        "with pydantic validation, label parser, repair and rule fallback (always used on openai servers)")
    calibrate: Literal["train", "content-free", "none"] = Field(
        "train", description="score mode: subtract each label's mean score over n_calibration training windows "
        "(train), or its score after a content-free prompt (content-free), or nothing (none)")
    n_calibration: int = Field(14, ge=1, description="training windows (stratified) for calibrate=train")
    choice_set: Literal["hypotheses", "all"] = Field(
        "hypotheses", description="score mode: the options of an analyst / the single agent are the rule tool's top "
        "hypotheses (covering 90 % of its mass, at most 3, shown in the prompt) or all seven activities")
    repair: bool = Field(True, description="ask once more (quoting the error) when a reply has neither valid JSON "
                         "nor an activity word, before falling back to the rules")
    participants: int = Field(3, ge=2, le=10, description="synthetic participants (embedded data)")
    seconds_per_activity: float = Field(30.0, ge=4.0, le=600.0, description="synthetic seconds per activity")
    test_participants: int = Field(1, ge=1, description="the last k participants are the test set")
    pocket: Literal["right", "left", "both"] = "right"
    window: int = Field(100, ge=16, description="window length in samples (2 s at 50 Hz)")
    step: int = Field(50, ge=1, description="window step in samples (50 % overlap)")
    n_eval_windows: int = Field(35, ge=1, description="test windows the rows are evaluated on (stratified by class)")
    faults: tuple[str, ...] = Field(FAULTS, description=f"injected faults, any of {', '.join(FAULTS)}")
    fault_severity: int = Field(3, ge=1, le=5)
    fault_positions: int = Field(2, ge=1, le=4, description="positions corrupted per window (seeded choice)")
    n_fault_windows: int | None = Field(None, ge=1, description="eval windows per fault (None: all of them)")
    max_rounds: int = Field(1, ge=0, le=5, description="debate bound: 2 x max_rounds advocate turns")
    debate_on_conflict_only: bool = True
    conflict_on: Literal["labels", "groups"] = "labels"
    note: str = Field("", max_length=2000, description="untrusted free text attached to every window (shown to "
                      "the agents as data only; e.g. a prompt-injection test)")
    rf_trees: int = Field(100, ge=1)
    cnn_epochs: int = Field(30, ge=1)
    cnn_batch: int = Field(64, ge=1)
    cnn_lr: float = Field(1e-3, gt=0)
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("faults")
    @classmethod
    def _faults(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return () if not v else distinct_choices(v, FAULTS)

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "backend", "model", "base_url", "participants", "seconds_per_activity",
                "test_participants", "pocket", "window", "step", "n_eval_windows", "faults", "fault_severity",
                "fault_positions", "n_fault_windows", "threads", "decoding", "calibrate", "n_calibration",
                "choice_set")


#: ``--quick``: 28 clean windows (4 per class) + 7 per fault; with ``decoding=score`` SmolLM2 costs one forward
#: pass per undecided role (~3.6 per window), so the quick run fits the 10-minute budget on 2 cores
QUICK = {"participants": 3, "seconds_per_activity": 12.0, "n_eval_windows": 28, "faults": ("nan", "bias_ramp", "noise"),
         "n_fault_windows": 7, "max_tokens": 24, "repair": False, "rf_trees": 50, "cnn_epochs": 25, "threads": 1}
#: ``polymodal demo`` (on top of quick): 14 clean windows (2 per class), analysts calibrated on 7 training windows,
#: no fault conditions (each fault window costs ~2.5 CPU-s of SmolLM2); SmolLM2 as in quick, ~67 CPU-s in all
DEMO = {"n_eval_windows": 14, "n_calibration": 7, "faults": ()}
#: ``polymodal demo --setting smoke`` (on top of quick): rule backend (no model), 6 s per activity, 7 + 2 windows
SMOKE = {"backend": "rules", "seconds_per_activity": 6.0, "n_eval_windows": 7, "n_fault_windows": 2, "faults": ("nan",),
         "cnn_epochs": 2, "rf_trees": 10}
#: the demo overview: SensingAgents against the agent and trained baselines (majority vote is its own ablation: the
#: same analysts without debate and decision)
HEADLINE = ("sensing-agents", ("single-agent", "random-forest", "cnn-1d"))


# ---------------------------------------------------------------------------------------------------------------
def make_llm(cfg: SensingAgentsConfig):
    """The chat backend the config names (flat fields ``backend``, ``model``, ``base_url`` → BackendConfig)."""
    if cfg.backend == "rules":
        return RuleBasedLLM()
    from polymodal.llm import BackendConfig, make_backend

    return make_backend(BackendConfig(kind=cfg.backend, model=cfg.model, base_url=cfg.base_url,
                                      api_key_env=cfg.api_key_env, timeout=cfg.timeout, dtype=cfg.dtype,
                                      device="cpu" if cfg.device == "auto" else cfg.device))


def load_recordings(cfg: SensingAgentsConfig, run: Run) -> list:
    if cfg.data is None:
        from polymodal.sensing.synthetic import make_shoaib_2014

        folder = run.path("data")
        if not sorted(folder.glob("Participant_*.csv")) or len(list(folder.glob("Participant_*.csv"))) != \
                cfg.participants:
            make_shoaib_2014(cfg.participants, cfg.seconds_per_activity, cfg.seed, folder)
        return load_shoaib_2014(folder)
    path = Path(cfg.data)
    if not path.exists():
        raise ConfigError(f"data: {path} does not exist (give a Shoaib 2014 DataSet folder / Participant_*.csv, or a "
                          "Shoaib 2013 folder with Arm/Belt/Wrist/Pocket tables)")
    if path.is_dir() and not list(path.glob("Participant_*.csv")) and not list(path.glob("DataSet/Participant_*.csv")):
        return load_shoaib_2013(path)
    return load_shoaib_2014(path)


def split_windows(cfg: SensingAgentsConfig, recs: list) -> tuple[WindowSet, WindowSet]:
    if cfg.test_participants >= len(recs):
        raise ConfigError(f"test_participants={cfg.test_participants} leaves no training participant "
                          f"({len(recs)} recordings)")
    ws = make_windows(recs, size=cfg.window, step=cfg.step, pocket=cfg.pocket)
    test_ids = {r.participant for r in recs[-cfg.test_participants:]}
    is_test = np.isin(ws.participant, list(test_ids))
    return ws.subset(np.flatnonzero(~is_test)), ws.subset(np.flatnonzero(is_test))


def stratified_indices(y: np.ndarray, n: int, seed: int) -> list[int]:
    """Up to ``n`` indices, classes interleaved (so any prefix covers the classes evenly), seeded."""
    rng = np.random.default_rng(seed)
    pools = {c: list(rng.permutation(np.flatnonzero(y == c))) for c in ACTIVITIES if np.any(y == c)}
    out: list[int] = []
    while len(out) < n and any(pools.values()):
        for c in pools:
            if pools[c] and len(out) < n:
                out.append(int(pools[c].pop()))
    return out


def build_conditions(cfg: SensingAgentsConfig, test: WindowSet, idx: list[int]) -> dict[str, list[dict]]:
    """``{"clean": [window...], "fault/<kind>": [...]}``; each fault hits ``fault_positions`` seeded positions."""
    conds = {"clean": [test.window(i) for i in idx]}
    positions = list(test.X)
    for k, kind in enumerate(cfg.faults):
        rng = np.random.default_rng([cfg.seed, 7, k])
        sub = idx[: cfg.n_fault_windows] if cfg.n_fault_windows else idx
        wins = []
        for i in sub:
            hit = tuple(rng.choice(positions, size=min(cfg.fault_positions, len(positions)), replace=False))
            wins.append(corrupt(test.window(i), kind, cfg.fault_severity, positions=hit, rng=rng))
        conds[f"fault/{kind}"] = wins
    return conds


def classification_metrics(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    if not y_true:
        return {}
    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro",
                                       zero_division=0))}


def _read_predictions(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out, lines = {}, []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # cut by a kill
        out[rec["key"]] = rec
        lines.append(line)
    atomic_write_text(path, "".join(x + "\n" for x in lines))
    return out


def run_agent_rows(cfg: SensingAgentsConfig, run: Run, conds: dict[str, list[dict]], y: list[str],
                   train: WindowSet | None = None) -> dict:
    """Every agent prediction (resumable), as ``{row: {cond: [record...]}}``."""
    need_sa = any(r in cfg.methods for r in ("sensing-agents", "majority-vote"))
    need_single = "single-agent" in cfg.methods
    pred_path = run.path("predictions.jsonl")
    done = _read_predictions(pred_path)
    out: dict[str, dict[str, list[dict]]] = {"sensing-agents": {}, "single-agent": {}}
    todo = sum(len(w) for w in conds.values()) * (int(need_sa) + int(need_single))
    todo -= sum(1 for k in done if k.split("|")[0] in (["sensing-agents"] if need_sa else []) +
                (["single-agent"] if need_single else []))
    llm = make_llm(cfg) if todo > 0 else None
    choice = {"decoding": cfg.decoding, "calibrate": cfg.calibrate, "choice_set": cfg.choice_set}
    sa = SensingAgents(llm, max_rounds=cfg.max_rounds, debate_on_conflict_only=cfg.debate_on_conflict_only,
                       conflict_on=cfg.conflict_on, max_tokens=cfg.max_tokens, pocket=cfg.pocket, seed=cfg.seed,
                       repair=cfg.repair, **choice)
    single = SingleAgentHAR(llm, max_tokens=cfg.max_tokens, seed=cfg.seed, repair=cfg.repair, **choice)
    if llm is not None and cfg.calibrate == "train" and sa.scoring(llm) and train is not None:
        cal = [train.window(i) for i in stratified_indices(train.y, cfg.n_calibration, cfg.seed + 1)]
        t0 = time.perf_counter()
        with progress_bar(2 * len(cal), "sensing-agents: calibration on training windows") as bar:
            for agent, needed in ((sa, need_sa), (single, need_single)):
                if needed:
                    agent.fit_calibration(cal, cfg.note)
                bar.advance(len(cal))
        atomic_write_text(run.path("calibration.json"), json.dumps(
            {"windows": len(cal), "seconds": round(time.perf_counter() - t0, 2), "sensing-agents": sa.priors,
             "single-agent": single.priors}, indent=1))
    trace = Trace(run.path("trace.jsonl"))
    with open(pred_path, "a") as fh, progress_bar(max(todo, 0), "sensing-agents: agent windows") as bar:
        for cond, wins in conds.items():
            for row, active in (("sensing-agents", need_sa), ("single-agent", need_single)):
                if not active:
                    continue
                recs = []
                for i, w in enumerate(wins):
                    key = f"{row}|{cond}|{i}"
                    if key not in done:
                        t = trace.bind(row=row, condition=cond, window=i)
                        if row == "sensing-agents":
                            p = sa.predict(w, cfg.note, trace=t)
                            rec = {"key": key, "label": p.label, "mv": majority_vote(p.reports),
                                   "conflict": p.conflict, "calls": p.calls, "debate_turns": len(p.debate),
                                   "tokens": p.prompt_tokens + p.completion_tokens, "seconds": p.seconds,
                                   "fallbacks": p.fallbacks, "salvaged": p.salvaged, "scored": p.scored,
                                   "tool_decided": p.tool_decided, "decoding": p.decoding,
                                   "roles": len(p.reports) + len(p.debate) + 1,
                                   "analysts": {r.position: r.label for r in p.reports},
                                   "positions": sorted(w)}
                        else:
                            p = single.predict(w, cfg.note, trace=t)
                            rec = {"key": key, "label": p.label, "calls": p.calls,
                                   "tokens": p.prompt_tokens + p.completion_tokens, "seconds": p.seconds,
                                   "fallbacks": int(p.fallback), "salvaged": int(p.salvaged),
                                   "scored": int(p.scored), "tool_decided": int(p.tool_decided),
                                   "decoding": p.decoding, "roles": 1}
                        rec["true"] = y[i]
                        fh.write(json.dumps(rec) + "\n")
                        fh.flush()
                        done[key] = rec
                        bar.advance()
                        run.log(len(done), row=row, condition=cond, window=i, correct=int(rec["label"] == y[i]))
                    recs.append(done[key])
                out[row][cond] = recs
    trace.close()
    return out


def _cost(recs: list[dict]) -> dict[str, float]:
    """LLM calls, tokens (prompt + completion) and seconds per window; the shares of role answers that fell back
    to the rules (failed parse and repair, or a scoring error), were read by the label parser (salvaged), were
    chosen by log-probability scoring (scored) or needed no call (one hypothesis left: tool_decided)."""
    n = max(len(recs), 1)
    return {"llm_calls_per_window": sum(r["calls"] for r in recs) / n,
            "tokens_per_window": sum(r["tokens"] for r in recs) / n,
            "seconds_per_window": sum(r["seconds"] for r in recs) / n,
            "fallback_rate": sum(r["fallbacks"] for r in recs) / max(sum(r["roles"] for r in recs), 1),
            "salvage_rate": sum(r.get("salvaged", 0) for r in recs) / max(sum(r["roles"] for r in recs), 1),
            "scored_rate": sum(r.get("scored", 0) for r in recs) / max(sum(r["roles"] for r in recs), 1),
            "tool_decided_rate": sum(r.get("tool_decided", 0) for r in recs) / max(sum(r["roles"] for r in recs), 1)}


def row_metrics(preds: dict[str, list[str]], y: list[str], conflict: list[bool] | None) -> dict[str, float]:
    """Accuracy/macro-F1 clean, on the conflict subset, under each fault, and the mean over faults."""
    m: dict[str, float] = {}
    clean = preds["clean"]
    m.update(classification_metrics(y, clean))
    if conflict is not None:
        sub = [i for i, c in enumerate(conflict) if c]
        m["conflict_share"] = len(sub) / max(len(y), 1)
        if sub:
            cm = classification_metrics([y[i] for i in sub], [clean[i] for i in sub])
            m["conflict_accuracy"], m["conflict_macro_f1"] = cm["accuracy"], cm["macro_f1"]
    faults = [c for c in preds if c.startswith("fault/")]
    for c in faults:
        p = preds[c]
        fm = classification_metrics(y[: len(p)], p)
        m[f"{c}/accuracy"], m[f"{c}/macro_f1"] = fm["accuracy"], fm["macro_f1"]
    if faults:
        m["fault_mean_accuracy"] = float(np.mean([m[f"{c}/accuracy"] for c in faults]))
    return m


def sensing_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """The robustness table (accuracy per condition and row) and a bar plot of it."""
    from polymodal.core.report import markdown_table

    rows = result.get("rows") or []
    if not rows:
        return [], []
    conds = ["accuracy", "conflict_accuracy"] + sorted(k for k in rows[0]["metrics"]
                                                       if k.startswith("fault/") and k.endswith("/accuracy"))
    md = ["## Accuracy clean, on conflicts and under each fault", "",
          markdown_table(["method", *[c.removesuffix("/accuracy").removeprefix("fault/") for c in conds]],
                         [[r["method"], *[r["metrics"].get(c) for c in conds]] for r in rows],
                         bold_best={i: "max" for i in range(1, len(conds) + 1)}), ""]
    images: list[Path] = []
    try:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.5, 3.8))
        width = 0.8 / len(rows)
        for k, r in enumerate(rows):
            ax.bar(np.arange(len(conds)) + k * width, [r["metrics"].get(c) or 0 for c in conds], width,
                   label=r["method"])
        ax.set_xticks(np.arange(len(conds)) + 0.4 - width / 2)
        ax.set_xticklabels([c.removesuffix("/accuracy").removeprefix("fault/") for c in conds], rotation=20)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7)
        ax.grid(axis="y", alpha=0.3)
        path = Path(d) / "sensing_robustness.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        images.append(path)
    except Exception:  # pragma: no cover - plotting is best effort
        pass
    return md, images


@recipe("sensing-agents", family="sensing", paper=PAPER, config=SensingAgentsConfig, primary_metric="accuracy",
        rows=ROWS, compare_self=True, quick=QUICK, demo=True, report_extras=sensing_report,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=HEADLINE,
        table_metrics=("accuracy", "macro_f1", "conflict_accuracy", "fault_mean_accuracy", "tokens_per_window",
                       "seconds_per_window", "fallback_rate", "scored_rate"))
def run_sensing_agents(cfg: SensingAgentsConfig, run: Run) -> Result:
    """SensingAgents (analysts, advocates' debate on conflict, decision agent) vs single agent, majority vote,
    random forest and 1D-CNN on Shoaib-format IMU windows, clean and under injected faults."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t_setup = time.perf_counter()
    recs = load_recordings(cfg, run)
    train, test = split_windows(cfg, recs)
    idx = stratified_indices(test.y, cfg.n_eval_windows, cfg.seed)
    y = [str(test.y[i]) for i in idx]
    conds = build_conditions(cfg, test, idx)
    setup_s = time.perf_counter() - t_setup

    rows: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    agent = run_agent_rows(cfg, run, conds, y, train) if any(r in cfg.methods for r in AGENT_ROWS) else {}
    agent_s = time.perf_counter() - t0
    sa_recs = agent.get("sensing-agents", {})
    conflict = [bool(r["conflict"]) for r in sa_recs["clean"]] if sa_recs.get("clean") else None
    extra: dict[str, Any] = {"setup_seconds": round(setup_s, 2), "n_train_windows": len(train),
                             "n_test_windows": len(test), "eval_windows": len(idx),
                             "backend": cfg.backend, "decoding": sorted({r.get("decoding", "?") for v in
                                                                         agent.values() for rs in v.values()
                                                                         for r in rs}),
                             "model": cfg.model or ("SmolLM2-135M-Instruct" if
                                                                            cfg.backend == "transformers" else None)}
    if "sensing-agents" in cfg.methods:
        rows["sensing-agents"] = row_metrics({c: [r["label"] for r in v] for c, v in sa_recs.items()}, y, conflict)
        allr = [r for v in sa_recs.values() for r in v]
        rows["sensing-agents"].update(_cost(allr))
        rows["sensing-agents"]["debate_rate"] = float(np.mean([r["debate_turns"] > 0 for r in allr]))
    if "majority-vote" in cfg.methods:
        rows["majority-vote"] = row_metrics({c: [r["mv"] for r in v] for c, v in sa_recs.items()}, y, conflict)
        allr = [r for v in sa_recs.values() for r in v]
        cost = _cost(allr)  # the analysts' calls only: debate and decision calls are not needed for a vote
        n_analyst = sum(len(r["positions"]) for r in allr) / max(len(allr), 1)
        rows["majority-vote"]["llm_calls_per_window"] = n_analyst
        rows["majority-vote"]["seconds_per_window"] = cost["seconds_per_window"] * n_analyst / max(
            cost["llm_calls_per_window"], 1e-9)
        rows["majority-vote"]["tokens_per_window"] = cost["tokens_per_window"] * n_analyst / max(
            cost["llm_calls_per_window"], 1e-9)
    if "single-agent" in cfg.methods:
        sg = agent["single-agent"]
        rows["single-agent"] = row_metrics({c: [r["label"] for r in v] for c, v in sg.items()}, y, conflict)
        rows["single-agent"].update(_cost([r for v in sg.values() for r in v]))
    for r in ("sensing-agents", "majority-vote", "single-agent"):
        if r in rows:
            seconds[r] = agent_s / max(sum(x in rows for x in AGENT_ROWS), 1)
    train_windows = [train.window(i) for i in range(len(train))]
    for row in ("random-forest", "cnn-1d"):
        if row not in cfg.methods:
            continue
        t1 = time.perf_counter()
        if row == "random-forest":
            from polymodal.sensing.baselines import RandomForestHAR

            model = RandomForestHAR(tuple(test.X), n_estimators=cfg.rf_trees, seed=cfg.seed).fit(train_windows,
                                                                                                  train.y)
        else:
            from polymodal.core.runtime import resolve_device
            from polymodal.sensing.baselines import CNNHAR

            torch.manual_seed(cfg.seed)
            with progress_bar(cfg.cnn_epochs, "cnn-1d: epochs") as bar:
                model = CNNHAR(tuple(test.X), epochs=cfg.cnn_epochs, batch_size=cfg.cnn_batch, lr=cfg.cnn_lr,
                               seed=cfg.seed, device=str(resolve_device(cfg.device))).fit(
                    train_windows, train.y, progress=bar)
            extra["cnn_losses"] = [round(v, 4) for v in model.losses]
        fit_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        preds = {c: model.predict_many(w) for c, w in conds.items()}
        n_pred = sum(len(w) for w in conds.values())
        pred_s = time.perf_counter() - t2
        rows[row] = row_metrics(preds, y, conflict)
        rows[row].update({"llm_calls_per_window": 0.0, "tokens_per_window": 0.0,
                          "seconds_per_window": pred_s / max(n_pred, 1), "fit_seconds": fit_s})
        all_test = model.predict_many([test.window(i) for i in range(len(test))])
        rows[row]["accuracy_all_test"] = float(np.mean([a == b for a, b in zip(all_test, test.y, strict=True)]))
        seconds[row] = time.perf_counter() - t1
        run.log(0, row=row, accuracy=rows[row]["accuracy"])
    extra["chance_accuracy"] = round(1 / len(ACTIVITIES), 4)
    extra["eval_labels"] = y
    ordered = {r: rows[r] for r in cfg.methods if r in rows}
    return Result(metrics=ordered[cfg.methods[0]], rows=ordered, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))

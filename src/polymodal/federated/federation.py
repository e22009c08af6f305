"""A federation as data, and the multi-method runner the FedSM / FedPall / CO-PFL recipes share.

:class:`Federation` holds everything a run needs and can be rebuilt from settings alone: the in-process
:class:`~polymodal.federated.core.Simulator` runs it, and the Flower apps (:mod:`polymodal.federated.flower_apps`)
rebuild the same federation in the ServerApp and in every ClientApp process, so both produce the same numbers.

:func:`run_methods` runs several methods (the paper's method and its baselines) one after another in one run
folder: each method checkpoints every round (``checkpoints/<method>.pt``) and is recorded in ``methods.json``
when finished, so a killed compare resumes inside the method it was running. Rows, accuracy-vs-round curves and
:func:`curves_report` (the compare report's ``accuracy_curves.png``) come out of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from polymodal.core.errors import ConfigError
from polymodal.core.progress import progress_bar
from polymodal.core.registry import Result
from polymodal.core.runs import Run, atomic_write_json
from polymodal.federated.core import Client, RoundLog, Simulator, Strategy


@dataclass
class Federation:
    """Clients, server strategy, initial global vector and evaluation of one method on one data setting.

    ``make_client(cid)`` builds client ``cid`` (0..n_clients-1) from the settings alone; ``make_strategy()`` the
    server logic. ``evaluate(params) -> metrics`` is the central evaluation (None: none), ``evaluate_clients``
    the personalised evaluation on each client's own test split. ``score`` names the metric the curves and
    the "best round" use (``accuracy`` or ``personal_accuracy``)."""

    n_clients: int
    make_client: Callable[[int], Client]
    make_strategy: Callable[[], Strategy]
    initial: torch.Tensor
    rounds: int
    seed: int = 0
    clients_per_round: int | None = None
    evaluate: Callable[[torch.Tensor], dict[str, float]] | None = None
    evaluate_clients: bool = False
    eval_every: int = 1
    score: str = "accuracy"
    info: dict[str, Any] = field(default_factory=dict)

    def simulator(self) -> Simulator:
        return Simulator([self.make_client(c) for c in range(self.n_clients)], self.make_strategy(), self.initial,
                         clients_per_round=self.clients_per_round, seed=self.seed, evaluate=self.evaluate,
                         eval_every=self.eval_every, evaluate_clients=self.evaluate_clients)


def curve_of(history: Sequence[RoundLog], key: str) -> list[tuple[int, float]]:
    """``(round, value)`` (1-based rounds) at the rounds where ``key`` was evaluated."""
    return [(h.round + 1, float(h.metrics[key])) for h in history if key in h.metrics]


def summarize(history: Sequence[RoundLog], key: str) -> dict[str, float]:
    """``<key>`` (last evaluated round), ``best_<key>`` (best evaluated round: the paper-style number, selected on
    the test set) and the round it happened."""
    curve = curve_of(history, key)
    if not curve:
        raise ConfigError(f"no round was evaluated for {key!r}")
    best_round, best = max(curve, key=lambda p: (p[1], -p[0]))
    return {key: curve[-1][1], f"best_{key}": best, f"best_round_{key}": float(best_round)}


def run_methods(run: Run, methods: Sequence[str], build: Callable[[str], Federation],
                finish: Callable[[str, Federation, list[RoundLog]], dict[str, Any]] | None = None,
                ) -> Result:
    """Run each method's federation in turn, resumably; one row per method, or several when ``finish`` returns
    several (e.g. FedSM's re-trained heads on one backbone trajectory).

    ``finish(method, federation, history) -> {row: {"metrics": {...}, "curve": [...]}, ...}`` turns a history into
    rows (default: :func:`summarize` of the federation's ``score`` and its curve)."""
    if len(set(methods)) != len(methods) or not methods:
        raise ConfigError(f"field 'methods': give distinct method names, got {list(methods)}")
    done_path = run.dir / "methods.json"
    done: dict[str, Any] = json.loads(done_path.read_text()) if done_path.is_file() else {}
    t0 = time.perf_counter()
    for i, method in enumerate(methods, 1):
        if method in done:
            continue
        fed = build(method)
        sim = fed.simulator()
        c0 = time.perf_counter()
        with progress_bar(fed.rounds, f"[{i}/{len(methods)}] {method}: rounds") as bar:
            hist = sim.run(fed.rounds, run, checkpoint=f"{method}.pt", tag={"method": method},
                           on_round=lambda _log: bar.advance())
        seconds = time.perf_counter() - c0
        rows = finish(method, fed, hist) if finish else {
            method: {"metrics": summarize(hist, fed.score), "curve": curve_of(hist, fed.score)}}
        done[method] = {"rows": rows, "seconds": seconds, "score": fed.score, "info": fed.info,
                        "bytes_up": sum(h.metrics.get("bytes_up", 0.0) for h in hist),
                        "bytes_down": sum(h.metrics.get("bytes_down", 0.0) for h in hist)}
        atomic_write_json(done_path, done)
        (run.checkpoint_dir / f"{method}.pt").unlink(missing_ok=True)  # recorded: the checkpoint is not needed
    rows, row_seconds, curves = {}, {}, {}
    for method in methods:
        entry = done[method]
        for name, row in entry["rows"].items():
            rows[name] = row["metrics"]
            curves[name] = row.get("curve", [])
            row_seconds[name] = entry["seconds"] / len(entry["rows"])
    first = methods[0] if methods[0] in rows else next(iter(rows))
    return Result(metrics=rows[first], rows=rows, row_seconds=row_seconds, train_seconds=time.perf_counter() - t0,
                  extra={"curves": curves, "score": {m: done[m]["score"] for m in methods},
                         "communication_mb": {m: round((done[m]["bytes_up"] + done[m]["bytes_down"]) / 2**20, 3)
                                              for m in methods},
                         "info": {m: done[m]["info"] for m in methods}})


def curves_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """The compare report's accuracy-vs-round plot (every row's curve) and the communication per method."""
    import matplotlib.pyplot as plt

    from polymodal.core.execute import _save

    curves: dict[str, list] = {}
    score, comm = "accuracy", {}
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            extra = json.loads(path.read_text()).get("extra", {})
            curves.update(extra.get("curves", {}))
            score = next(iter(extra.get("score", {}).values()), score)
            comm.update(extra.get("communication_mb", {}))
    if not curves:
        return [], []
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, c in curves.items():
        if c:
            ax.plot([r for r, _ in c], [a for _, a in c], label=name, linewidth=2.2 if "/" not in name and
                    name == result.get("recipe") else 1.2)
    ax.set_xlabel("round")
    ax.set_ylabel(score.replace("_", " "))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{result.get('recipe', '')}: {score.replace('_', ' ')} per round")
    fig.tight_layout()
    md = []
    if comm:
        md = ["## Communication", "", "Total bytes up + down over the run (4 bytes per float), per trained "
              "federation:", "", *[f"- {m}: {mb:.2f} MiB" for m, mb in comm.items()], ""]
    return md, [_save(fig, d / "accuracy_curves.png")]


# ---------------------------------------------------------------------------------------------- builders by name
#: ``recipe name -> build(config, method) -> Federation``: what the Flower apps rebuild in every process
FEDERATIONS: dict[str, Callable[[Any, str], Federation]] = {}


def register_federation(recipe_name: str) -> Callable[[Callable[[Any, str], Federation]],
                                                      Callable[[Any, str], Federation]]:
    """Register ``build(config, method) -> Federation`` for recipe ``recipe_name`` (its config class and its
    method names), so ``polymodal fl launch --recipe NAME --method M`` can run it over a real Flower deployment."""
    def deco(fn: Callable[[Any, str], Federation]) -> Callable[[Any, str], Federation]:
        FEDERATIONS[recipe_name] = fn
        return fn

    return deco

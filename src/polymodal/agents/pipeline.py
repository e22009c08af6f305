"""A small orchestrator with LangGraph semantics: named steps over a shared state, edges, conditional routing,
bounded loops (debates, verify-then-retry), every transition in the trace.

    p = Pipeline("debate")
    p.role_step("analyst", analyst_role, output="report")
    p.step("judge", judge_fn)                # judge_fn(state, ctx) -> dict of state updates
    p.edge("analyst", "judge")
    p.route("judge", lambda s: "analyst" if s["retry"] else END, ["analyst", END])
    result = p.run({"input": "..."}, backend=my_backend, trace=Trace(run.dir / "trace.jsonl"))

Loops are bounded twice: each step's ``max_visits`` and the pipeline's ``max_steps``; exceeding either raises
:class:`PipelineError` naming the step, never loops forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polymodal.agents.roles import Role, RoleResult
from polymodal.agents.trace import Trace
from polymodal.core.errors import PolymodalError
from polymodal.llm.chat import ChatBackend

END = "__end__"
StepFn = Callable[[dict, "StepContext"], Mapping[str, Any] | None]


class PipelineError(PolymodalError):
    """The pipeline is mis-wired or a loop exceeded its bound; the message names the step."""


@dataclass
class StepContext:
    """What a step function gets besides the state: the backends, the trace, its visit count, the seed."""

    pipeline: str
    step: str
    visit: int
    backends: Mapping[str, ChatBackend]
    trace: Trace | None
    seed: int | None
    visits: Mapping[str, int]

    def backend(self, tier: str = "default") -> ChatBackend:
        if tier in self.backends:
            return self.backends[tier]
        if "default" in self.backends:
            return self.backends["default"]
        raise PipelineError(f"pipeline {self.pipeline!r}, step {self.step!r}: no backend for tier {tier!r} "
                            f"(have {sorted(self.backends)})")

    def ask(self, role: Role, state: Mapping[str, Any], *, tier: str = "default", **extra: Any) -> RoleResult:
        """Call ``role`` on ``state`` (plus ``extra`` template variables) with this pipeline's backend and trace."""
        trace = self.trace.bind(step=self.step) if self.trace is not None else None
        return role.ask(self.backend(tier), {**state, **extra}, trace=trace, seed=self.seed)


@dataclass
class PipelineResult:
    state: dict
    path: list[str]
    seconds: float
    trace: Trace | None = field(default=None, repr=False)


@dataclass
class _Step:
    name: str
    fn: StepFn
    max_visits: int | None


class Pipeline:
    def __init__(self, name: str, *, max_steps: int = 200, max_visits: int = 25):
        self.name = name
        self.max_steps = max_steps
        self.default_max_visits = max_visits
        self._steps: dict[str, _Step] = {}
        self._edges: dict[str, str] = {}
        self._routes: dict[str, tuple[Callable[[dict], str], dict[str, str]]] = {}
        self._entry: str | None = None

    # -- building --------------------------------------------------------------------------------------------
    def step(self, name: str, fn: StepFn | None = None, *, max_visits: int | None = None):
        """Add a step; usable directly or as a decorator. The first step added is the entry unless set."""
        if name == END or name in self._steps:
            raise PipelineError(f"pipeline {self.name!r}: step name {name!r} is reserved or already used")

        def add(f: StepFn) -> StepFn:
            self._steps[name] = _Step(name, f, max_visits)
            if self._entry is None:
                self._entry = name
            return f

        return add(fn) if fn is not None else add

    def role_step(self, name: str, role: Role, *, output: str, tier: str = "default",
                  max_visits: int | None = None) -> None:
        """A step that asks ``role`` with the whole state as template variables and stores its value at ``output``.

        Repeated visits (a debate) append to ``<output>_history`` as well.
        """

        def run_role(state: dict, ctx: StepContext) -> dict:
            result = ctx.ask(role, state, tier=tier)
            history = list(state.get(f"{output}_history", []))
            history.append(result.value)
            return {output: result.value, f"{output}_history": history}

        self.step(name, run_role, max_visits=max_visits)

    def edge(self, src: str, dst: str) -> None:
        if src in self._edges or src in self._routes:
            raise PipelineError(f"pipeline {self.name!r}: step {src!r} already has an outgoing edge or route")
        self._edges[src] = dst

    def route(self, src: str, router: Callable[[dict], str], destinations: Iterable[str] | Mapping[str, str]) -> None:
        """After ``src``, go where ``router(state)`` says; ``destinations`` lists the allowed answers (or maps
        router answers to step names, as LangGraph's path map)."""
        if src in self._edges or src in self._routes:
            raise PipelineError(f"pipeline {self.name!r}: step {src!r} already has an outgoing edge or route")
        mapping = dict(destinations) if isinstance(destinations, Mapping) else {d: d for d in destinations}
        if not mapping:
            raise PipelineError(f"pipeline {self.name!r}: route from {src!r} has no destinations")
        self._routes[src] = (router, mapping)

    def entry(self, name: str) -> None:
        self._entry = name

    def validate(self) -> None:
        """Every edge and route names existing steps (or END) and there is an entry step."""
        if self._entry is None or self._entry not in self._steps:
            raise PipelineError(f"pipeline {self.name!r}: entry step {self._entry!r} does not exist")
        known = set(self._steps) | {END}
        for src, dst in self._edges.items():
            for name in (src, dst):
                if name not in known:
                    raise PipelineError(f"pipeline {self.name!r}: edge {src!r} -> {dst!r} names unknown step {name!r}")
        for src, (_, mapping) in self._routes.items():
            if src not in self._steps:
                raise PipelineError(f"pipeline {self.name!r}: route from unknown step {src!r}")
            for dst in mapping.values():
                if dst not in known:
                    raise PipelineError(f"pipeline {self.name!r}: route from {src!r} names unknown step {dst!r}")

    # -- running ---------------------------------------------------------------------------------------------
    def _next(self, current: str, state: dict, trace: Trace | None) -> str:
        if current in self._edges:
            return self._edges[current]
        if current in self._routes:
            router, mapping = self._routes[current]
            answer = router(state)
            if answer not in mapping:
                raise PipelineError(f"pipeline {self.name!r}: router after {current!r} returned {answer!r}; "
                                    f"allowed: {sorted(mapping)}")
            if trace is not None:
                trace.record("route", pipeline=self.name, src=current, answer=answer, dst=mapping[answer])
            return mapping[answer]
        return END

    def run(self, state: Mapping[str, Any] | None = None, *, backend: ChatBackend | None = None,
            backends: Mapping[str, ChatBackend] | None = None, trace: Trace | None = None,
            seed: int | None = None) -> PipelineResult:
        """Run from the entry step until END. ``backend`` is the default; ``backends`` maps tiers
        (e.g. ``quick``/``deep``) to backends."""
        self.validate()
        tiers = dict(backends or {})
        if backend is not None:
            tiers.setdefault("default", backend)
        current_state = dict(state or {})
        visits: dict[str, int] = {}
        path: list[str] = []
        t0 = time.perf_counter()
        current = self._entry
        while current != END:
            if len(path) >= self.max_steps:
                raise PipelineError(f"pipeline {self.name!r}: more than max_steps={self.max_steps} steps "
                                    f"(path ends {path[-6:]}); a loop does not terminate")
            step = self._steps[current]
            visits[current] = visits.get(current, 0) + 1
            limit = step.max_visits or self.default_max_visits
            if visits[current] > limit:
                raise PipelineError(f"pipeline {self.name!r}: step {current!r} visited more than max_visits={limit} "
                                    "times; its loop does not terminate (raise max_visits or fix the router)")
            path.append(current)
            ctx = StepContext(self.name, current, visits[current], tiers, trace, seed, dict(visits))
            if trace is not None:
                trace.record("step_start", pipeline=self.name, step=current, visit=visits[current])
            s0 = time.perf_counter()
            try:
                updates = step.fn(current_state, ctx)
            except Exception as exc:
                if trace is not None:
                    trace.record("step_error", pipeline=self.name, step=current, error=f"{type(exc).__name__}: {exc}")
                raise
            if updates is not None:
                if not isinstance(updates, Mapping):
                    raise PipelineError(f"pipeline {self.name!r}: step {current!r} returned "
                                        f"{type(updates).__name__}; expected a dict of state updates or None")
                current_state.update(updates)
            if trace is not None:
                trace.record("step_end", pipeline=self.name, step=current, visit=visits[current],
                             updated=sorted(updates or {}), seconds=round(time.perf_counter() - s0, 4))
            current = self._next(current, current_state, trace)
        seconds = time.perf_counter() - t0
        if trace is not None:
            trace.record("pipeline_end", pipeline=self.name, path=path, seconds=round(seconds, 4))
        return PipelineResult(current_state, path, seconds, trace)

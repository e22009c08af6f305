"""The agent trace: every prompt, reply, parsed output, routing decision, token count and latency, as JSONL.

One JSON object per line, appended and flushed as it happens, so a crashed run still shows how far it got and
why each agent decided what it did. ``Trace.read(path)`` loads a trace back; ``summary()`` totals tokens and
latency per role.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def _jsonable(o: Any) -> Any:
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "to_dict"):
        return o.to_dict()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path | set | tuple):
        return list(o) if not isinstance(o, Path) else str(o)
    return repr(o)


class Trace:
    """Collects events in memory and, when ``path`` is given, appends each to a JSONL file at once."""

    def __init__(self, path: str | Path | None = None, *, context: dict | None = None):
        self.path = Path(path) if path is not None else None
        self.context = dict(context or {})  # e.g. {"window": 17}: copied into every event
        self.events: list[dict] = []
        self._t0 = time.perf_counter()
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def record(self, kind: str, **fields: Any) -> dict:
        event = {"seq": len(self.events), "t": round(time.perf_counter() - self._t0, 4), "kind": kind,
                 **self.context, **fields}
        self.events.append(event)
        if self._fh is not None:
            self._fh.write(json.dumps(event, default=_jsonable, ensure_ascii=False) + "\n")
            self._fh.flush()
        return event

    def bind(self, **context: Any) -> Trace:
        """A view of this trace whose events carry extra context fields (same file, same event list)."""
        view = object.__new__(Trace)
        view.__dict__.update(self.__dict__)
        view.context = {**self.context, **context}
        return view

    def summary(self) -> dict:
        """Calls, prompt/completion tokens and seconds per role, and in total."""
        per: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "prompt_tokens": 0,
                                                              "completion_tokens": 0, "seconds": 0.0})
        for e in self.events:
            if e["kind"] != "llm_call":
                continue
            row = per[e.get("role", "?")]
            row["calls"] += 1
            row["prompt_tokens"] += e.get("prompt_tokens") or 0
            row["completion_tokens"] += e.get("completion_tokens") or 0
            row["seconds"] += e.get("latency_s") or 0.0
        total = {k: sum(r[k] for r in per.values()) for k in ("calls", "prompt_tokens", "completion_tokens", "seconds")}
        return {"roles": dict(per), "total": total}

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def read(path: str | Path) -> list[dict]:
        """Events of a JSONL trace file (a torn last line from a crash is skipped)."""
        events = []
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

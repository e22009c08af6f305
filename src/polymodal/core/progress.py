"""Rich progress bars with one switch: ``POLYMODAL_PROGRESS=0`` (or ``quiet=True``) turns them off.

With ``POLYMODAL_PROGRESS_FILE=PATH`` set (``polymodal demo`` sets it for the recipes it runs in child processes)
bars draw nothing and instead keep ``PATH.<pid>.json`` up to date: ``{"bars": [{"description", "completed",
"total", "info"}, ...]}``, outermost first, so the parent process can show them; the file goes when the last bar
closes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_enabled() -> bool:
    return os.environ.get("POLYMODAL_PROGRESS", "1") not in ("0", "false", "no")


class _NullBar:
    def advance(self, n: int = 1) -> None:  # noqa: D401 - mirrors Bar
        pass

    def update(self, **fields: object) -> None:
        pass


class _Bar:
    def __init__(self, progress: Progress, task_id: int):
        self._p, self._t = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._p.advance(self._t, n)

    def update(self, **fields: object) -> None:
        """Show key=value fields (e.g. loss, valid metric) after the bar."""
        info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
        self._p.update(self._t, info=info)


class _FileBars:
    """This process's open bars, written (at most twice a second) to ``POLYMODAL_PROGRESS_FILE.<pid>.json``."""

    def __init__(self, prefix: str):
        self.path = f"{prefix}.{os.getpid()}.json"
        self.bars: list[dict[str, object]] = []
        self._last = 0.0

    def write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        try:
            if not self.bars:
                if os.path.exists(self.path):
                    os.remove(self.path)
                return
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"bars": self.bars}, f)
            os.replace(tmp, self.path)
        except OSError:  # a progress display must never break the work it shows
            pass


_FILE_BARS: _FileBars | None = None


class _FileBar:
    def __init__(self, sink: _FileBars, state: dict[str, object]):
        self._sink, self._state = sink, state

    def advance(self, n: int = 1) -> None:
        self._state["completed"] = float(self._state["completed"]) + n  # type: ignore[arg-type]
        self._sink.write()

    def update(self, **fields: object) -> None:
        self._state["info"] = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in fields.items())
        self._sink.write()


@contextmanager
def _file_bar(prefix: str, total: int | None, description: str) -> Iterator[_FileBar]:
    global _FILE_BARS
    if _FILE_BARS is None or _FILE_BARS.path != f"{prefix}.{os.getpid()}.json":
        _FILE_BARS = _FileBars(prefix)
    sink = _FILE_BARS
    state: dict[str, object] = {"description": description, "completed": 0.0, "total": total, "info": ""}
    sink.bars.append(state)
    sink.write(force=True)
    try:
        yield _FileBar(sink, state)
    finally:
        sink.bars.remove(state)
        sink.write(force=True)


@contextmanager
def progress_bar(total: int | None, description: str, *, quiet: bool = False) -> Iterator[_Bar | _NullBar]:
    """A progress bar over ``total`` steps; yields an object with ``advance()`` and ``update(**fields)``."""
    if quiet:
        yield _NullBar()
        return
    prefix = os.environ.get("POLYMODAL_PROGRESS_FILE")
    if prefix:
        with _file_bar(prefix, total, description) as bar:
            yield bar
        return
    if not progress_enabled():
        yield _NullBar()
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, info="")
        yield _Bar(progress, task)

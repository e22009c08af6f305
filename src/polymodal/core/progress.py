"""Rich progress bars with one switch: ``POLYMODAL_PROGRESS=0`` (or ``quiet=True``) turns them off."""

from __future__ import annotations

import os
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


@contextmanager
def progress_bar(total: int | None, description: str, *, quiet: bool = False) -> Iterator[_Bar | _NullBar]:
    """A progress bar over ``total`` steps; yields an object with ``advance()`` and ``update(**fields)``."""
    if quiet or not progress_enabled():
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

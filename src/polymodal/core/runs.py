"""Run folders: ``runs/<time>-<recipe>/`` with config, metrics, checkpoints, result and report.

Everything is written atomically (temp file + rename), so a run killed at any instant leaves either
the old or the new version of a file, never half of one. ``metrics.jsonl`` is append-only; on resume it
is cut back to the last checkpointed step so the resumed run writes exactly the lines an uninterrupted
run would have written.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from polymodal import __version__
from polymodal.core.errors import PolymodalError

CHECKPOINT_NAME = "last.pt"


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success fsync and rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def new_run_dir(root: Path | str, label: str) -> Path:
    """``root/<YYYYmmdd-HHMMSS>-<label>``; a suffix keeps two runs in the same second apart."""
    root = Path(root)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{stamp}-{label}"
    path, k = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            k += 1
            path = Path(f"{base}-{k}")


class Run:
    """One recipe execution's folder. Recipes log through it and save checkpoints with it."""

    def __init__(self, directory: Path | str, recipe: str, config: dict[str, Any], *, resumed: bool = False):
        self.dir = Path(directory)
        self.recipe = recipe
        self.config = config
        self.resumed = resumed
        self._meta_path = self.dir / "run.json"

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, directory: Path | str, recipe: str, config: dict[str, Any]) -> Run:
        run = cls(directory, recipe, config)
        run.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        run._write_meta(status="running", created=datetime.now().isoformat(timespec="seconds"))
        return run

    @classmethod
    def open(cls, directory: Path | str) -> Run:
        """Re-open an existing run folder for ``--resume``."""
        d = Path(directory)
        meta_path, cfg_path = d / "run.json", d / "config.yaml"
        if not meta_path.is_file() or not cfg_path.is_file():
            raise PolymodalError(f"{d} is not a polymodal run folder (no run.json/config.yaml)")
        meta = json.loads(meta_path.read_text())
        config = yaml.safe_load(cfg_path.read_text()) or {}
        return cls(d, meta["recipe"], config, resumed=True)

    def note_resume(self, step: int) -> None:
        """Record in ``run.json`` that training continued from a checkpoint at ``step``."""
        self._write_meta(status="running", resumed=f"{datetime.now().isoformat(timespec='seconds')} from step {step}")

    def meta(self) -> dict[str, Any]:
        if self._meta_path.is_file():
            return json.loads(self._meta_path.read_text())
        return {}

    def _write_meta(self, **updates: Any) -> None:
        meta = self.meta() or {
            "recipe": self.recipe,
            "polymodal_version": __version__,
            "host": socket.gethostname(),
        }
        if "resumed" in updates:
            meta.setdefault("resumes", []).append(updates.pop("resumed"))
        meta.update(updates)
        atomic_write_json(self._meta_path, meta)

    # ------------------------------------------------------------------ metrics
    @property
    def metrics_path(self) -> Path:
        return self.dir / "metrics.jsonl"

    def log(self, step: int, **metrics: Any) -> None:
        """Append one line ``{"step": step, **metrics}`` and flush it to disk."""
        line = json.dumps({"step": int(step), **metrics}, default=_json_default)
        with open(self.metrics_path, "a") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything after it is lost anyway
        return rows

    def truncate_metrics(self, last_step: int, match: dict[str, Any] | None = None) -> None:
        """Keep only lines with ``step <= last_step`` (used when resuming from a checkpoint); with ``match``, only
        lines holding those key/values are candidates for removal (one method of a multi-method run)."""
        def keep(r: dict[str, Any]) -> bool:
            if match and any(r.get(k) != v for k, v in match.items()):
                return True
            return r.get("step", -1) <= last_step

        rows = [r for r in self.read_metrics() if keep(r)]
        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows))

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def save_checkpoint(self, state: dict[str, Any], name: str = CHECKPOINT_NAME) -> Path:
        """Atomically ``torch.save`` a dict of tensors and plain python values."""
        import torch

        path = self.checkpoint_dir / name
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
        return path

    def load_checkpoint(self, name: str = CHECKPOINT_NAME) -> dict[str, Any] | None:
        import torch

        path = self.checkpoint_dir / name
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    # ------------------------------------------------------------------ files
    def path(self, name: str) -> Path:
        return self.dir / name

    def write_json(self, name: str, obj: Any) -> Path:
        atomic_write_json(self.dir / name, obj)
        return self.dir / name

    def write_text(self, name: str, text: str) -> Path:
        atomic_write_text(self.dir / name, text)
        return self.dir / name

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure atomically as ``name`` (png) and close it."""
        import matplotlib.pyplot as plt

        path = self.dir / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        return path

    def mark(self, status: str, **extra: Any) -> None:
        self._write_meta(status=status, **extra)

    def finish(self, status: str = "finished", **extra: Any) -> None:
        self._write_meta(status=status, finished=datetime.now().isoformat(timespec="seconds"), **extra)


class Timer:
    """``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start

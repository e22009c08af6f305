"""``polymodal demo``: every paper's compare on embedded data, ``jobs`` recipes at a time, one report.

Each recipe runs in its own child process (``polymodal.demo.child``) with its output in ``<recipe>/demo.log``, so
a failing or killed recipe is reported and the others go on. The report is rewritten after every recipe, so it
is readable while the demo runs; ``--resume DIR`` runs what is not finished (a half-finished compare keeps its
finished methods). A live display shows the recipes done and, for each running one, its method and the innermost
progress bar of that method (read from the files ``core.progress`` writes under ``POLYMODAL_PROGRESS_FILE``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from polymodal.core.errors import PolymodalError
from polymodal.core.progress import console, progress_enabled
from polymodal.core.runs import atomic_write_text, new_run_dir
from polymodal.demo.plan import (
    ERROR_FILE,
    LOG_FILE,
    PLAN_FILE,
    DemoPlan,
    demo_recipes,
    parse_recipe_overrides,
    read_status,
    write_status,
)
from polymodal.demo.render import duration, headline_sentence, render_html, render_markdown
from polymodal.demo.report import collect

PROGRESS_PREFIX = ".progress"


@dataclass
class DemoOutcome:
    dir: Path
    report: Path
    finished: list[str]
    failed: list[str]


@dataclass
class _Job:
    name: str
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    started: float


def write_report(d: Path) -> Path:
    """(Re)write ``report.md`` and ``report.html`` from what the demo folder holds now."""
    plan = DemoPlan.load(d)
    sections = collect(d, plan)
    atomic_write_text(d / "report.md", render_markdown(d, plan, sections))
    atomic_write_text(d / "report.html", render_html(d, plan, sections))
    return d / "report.md"


def _open_plan(out: str | Path | None, root: str | Path, only: list[str] | None, setting: str,
               overrides: list[str] | dict[str, dict[str, Any]] | None, resume: str | Path | None) -> Path:
    if resume is not None:
        if only or overrides:
            raise PolymodalError("--resume continues a demo folder with the recipes and settings it was started "
                                 "with; drop --only/--set, or start a new demo")
        d = Path(resume)
        DemoPlan.load(d)
        return d
    recipes = demo_recipes(only)
    user = overrides if isinstance(overrides, dict) else parse_recipe_overrides(overrides, recipes)
    plan = DemoPlan.build(recipes, setting, user)
    if out is not None:
        d = Path(out)
        if (d / PLAN_FILE).exists():
            raise PolymodalError(f"{d} already holds a demo; continue it with: polymodal demo --resume {d}")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = new_run_dir(root, "demo")
    plan.save(d)
    return d


def _still_running(sub: Path) -> int | None:
    """The pid of a recipe's child that an earlier, killed ``polymodal demo`` left running (children run in their own
    session, so they outlive a parent killed with SIGKILL); None when there is none."""
    status = read_status(sub)
    pid = status.get("pid")
    if status.get("status") != "running" or not isinstance(pid, int):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"polymodal.demo.child" in cmdline else None


def _is_finished(sub: Path) -> bool:
    return read_status(sub).get("status") == "finished" and (sub / "result.json").is_file()


def _start(d: Path, name: str, live: bool) -> _Job:
    sub = d / name
    sub.mkdir(parents=True, exist_ok=True)
    (sub / ERROR_FILE).unlink(missing_ok=True)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    if live:
        env["POLYMODAL_PROGRESS_FILE"] = str(sub / PROGRESS_PREFIX)
    else:
        env["POLYMODAL_PROGRESS"] = "0"
    log = open(sub / LOG_FILE, "ab")  # noqa: SIM115 - closed when the job ends
    proc = subprocess.Popen([sys.executable, "-m", "polymodal.demo.child", str(d), name], stdout=log,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    write_status(sub, status="running", pid=proc.pid)
    return _Job(name, proc, log, time.perf_counter())


def _reap(job: _Job) -> tuple[int, float] | None:
    """(exit code, CPU seconds of the recipe and every process it waited for) once the child ended, else None."""
    pid, status, usage = os.wait4(job.proc.pid, os.WNOHANG)
    if pid == 0:
        return None
    code = os.waitstatus_to_exitcode(status)
    job.proc.returncode = code
    return code, usage.ru_utime + usage.ru_stime


def _finish(d: Path, job: _Job, code: int, cpu: float) -> str:
    job.log.close()
    sub = d / job.name
    for f in sub.glob(PROGRESS_PREFIX + ".*"):
        f.unlink(missing_ok=True)
    seconds = round(time.perf_counter() - job.started, 1)
    if code == 0 and (sub / "result.json").is_file():
        write_status(sub, status="finished", seconds=seconds, cpu_seconds=round(cpu, 1))
        return "finished"
    err_path = sub / ERROR_FILE
    error = json.loads(err_path.read_text()).get("error", "") if err_path.is_file() else ""
    if not error:
        error = f"the recipe's process ended with exit code {code} without a result (see {sub / LOG_FILE})"
    write_status(sub, status="failed", seconds=seconds, cpu_seconds=round(cpu, 1), exit=code, error=error)
    return "failed"


def _stop(d: Path, jobs: list[_Job]) -> None:
    """Ctrl-C: interrupt every running recipe (its methods keep their checkpoints), then kill what lingers."""
    for job in jobs:
        try:
            os.killpg(job.proc.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    for job in jobs:
        while job.proc.returncode is None and time.monotonic() < deadline and _reap(job) is None:
            time.sleep(0.2)
        if job.proc.returncode is None:
            try:
                os.killpg(job.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            job.proc.wait()
        job.log.close()
        write_status(d / job.name, status="interrupted", seconds=round(time.perf_counter() - job.started, 1),
                     error="interrupted (Ctrl-C or SIGTERM); the finished methods are kept")


def _run_status(run_dir: Path) -> str:
    try:
        return json.loads((run_dir / "run.json").read_text()).get("status", "")
    except (OSError, ValueError):
        return ""


def _sigterm_as_interrupt() -> Any:
    """SIGTERM (a job scheduler, ``kill``) stops the demo like Ctrl-C: children interrupted, report written. Returns
    the previous handler (None off the main thread, where handlers cannot be set)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _job_progress(sub: Path) -> tuple[float, int, str]:
    """(methods done incl. the running one's fraction, methods in all, text of the innermost bar)."""
    try:
        methods = json.loads((sub / "compare.json").read_text())["methods"]
    except (OSError, ValueError, KeyError):
        return 0.0, 1, "preparing"
    done = [m for m in methods if _run_status(sub / m) == "finished"]
    running = next((m for m in methods if m not in done), "")
    bars: list[dict[str, Any]] = []
    files = sorted(sub.glob(PROGRESS_PREFIX + ".*.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    for f in reversed(files):
        try:
            bars = json.loads(f.read_text())["bars"]
            break
        except (OSError, ValueError, KeyError):
            continue
    frac, text = 0.0, running
    if bars:
        outer, inner = bars[0], bars[-1]
        if outer.get("total"):
            frac = min(1.0, float(outer["completed"]) / float(outer["total"]))
        count = f" {int(inner['completed'])}/{inner['total']}" if inner.get("total") else ""
        text = f"{running} › {inner['description']}{count} {inner.get('info', '')}".strip()
    return len(done) + frac, len(methods), text


class _Display:
    """Live bars on a terminal (the demo, and per running recipe its method and innermost bar); otherwise, or with
    ``POLYMODAL_PROGRESS=0``, only the one-line messages."""

    def __init__(self, n_recipes: int):
        self.live = progress_enabled() and console.is_terminal
        self._n, self._done = n_recipes, 0
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def say(self, msg: str) -> None:
        if self.live:
            console.print(msg)
        else:
            print(msg, file=sys.stderr, flush=True)

    def start(self) -> None:
        if not self.live:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(TextColumn("[bold]{task.description:<16}"), BarColumn(),
                                  TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                  TextColumn("{task.fields[info]}"), console=console)
        self._progress.start()
        self._tasks[""] = self._progress.add_task("demo", total=self._n, info=f"0/{self._n} recipes")

    def started(self, name: str) -> None:
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=1, info="starting")

    def refresh(self, name: str, sub: Path) -> None:
        if self._progress is not None:
            done, total, text = _job_progress(sub)
            self._progress.update(self._tasks[name], completed=done, total=total, info=text[:56])

    def ended(self, name: str) -> None:
        self._done += 1
        if self._progress is not None:
            self._progress.remove_task(self._tasks.pop(name))
            self._progress.update(self._tasks[""], advance=1, info=f"{self._done}/{self._n} recipes")

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _announce(d: Path, name: str, state: str, display: _Display, position: str) -> None:
    sec = next(s for s in collect(d, DemoPlan.load(d)) if s.name == name)
    if state == "finished":
        display.say(f"[{position}] {name} finished in {duration(sec.seconds)}: {headline_sentence(sec)}")
    else:
        display.say(f"[failed] {name} after {duration(sec.seconds)}: {sec.error}")


def run_demo(out: str | Path | None = None, only: list[str] | None = None, root: str | Path = "runs", *,
             setting: str = "demo", overrides: list[str] | dict[str, dict[str, Any]] | None = None,
             jobs: int | None = None, resume: str | Path | None = None) -> DemoOutcome:
    """Run (or ``resume``) a demo folder and write its report; returns which recipes finished and failed."""
    d = _open_plan(out, root, only, setting, overrides, resume)
    plan = DemoPlan.load(d)
    todo = [n for n in plan.recipes if not _is_finished(d / n)]
    alive = {n: pid for n in todo if (pid := _still_running(d / n)) is not None}
    if alive:
        raise PolymodalError("an earlier demo process left these recipes running: "
                             + ", ".join(f"{n} (pid {pid})" for n, pid in alive.items())
                             + "; wait for them or stop them (kill PID), then resume")
    n_jobs = max(1, jobs or min(2, os.cpu_count() or 1))
    display = _Display(len(todo))
    display.say(f"demo: {len(todo)} of {len(plan.recipes)} recipes to run ({plan.setting} setting, {n_jobs} at a "
                f"time) in {d}")
    write_report(d)
    pending, running = list(todo), []
    n_finished = len(plan.recipes) - len(todo)
    previous = _sigterm_as_interrupt()
    display.start()
    try:
        while pending or running:
            while pending and len(running) < n_jobs:
                running.append(_start(d, pending.pop(0), display.live))
                display.started(running[-1].name)
            for job in list(running):
                ended = _reap(job)
                if ended is None:
                    display.refresh(job.name, d / job.name)
                    continue
                running.remove(job)
                state = _finish(d, job, *ended)
                display.ended(job.name)
                write_report(d)
                n_finished += state == "finished"
                _announce(d, job.name, state, display, f"{n_finished}/{len(plan.recipes)}")
            time.sleep(0.5)
    except KeyboardInterrupt:
        display.stop()
        _stop(d, running)
        write_report(d)
        display.say(f"demo interrupted; the report shows what finished. Continue with: polymodal demo --resume {d}")
        raise
    finally:
        display.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    report = write_report(d)
    failed = [n for n in plan.recipes if read_status(d / n).get("status") != "finished"]
    return DemoOutcome(d, report, [n for n in plan.recipes if n not in failed], failed)

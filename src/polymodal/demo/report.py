"""What the demo report says about each system, read back from the demo folder (so a report can be rebuilt at any
time, also from a half-finished demo): the overview row (the method's primary metric vs its best baseline) and the
system's section (table, plots, docs link, or the failure and its message)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polymodal
from polymodal.core.registry import Recipe, get_recipe, load_family
from polymodal.core.report import best_directions, lower_is_better, result_table
from polymodal.demo.plan import ERROR_FILE, LOG_FILE, DemoPlan, read_status

#: plots a compare writes, shown first and in this order; any other .png of the compare folder follows
PLOT_ORDER = ("curves.png", "bars.png")


@dataclass
class Headline:
    """The overview's comparison: the method's row against the best of its baselines on the primary metric."""

    metric: str
    method: str
    value: float
    baseline: str | None = None
    baseline_value: float | None = None

    @property
    def delta(self) -> float | None:
        return None if self.baseline_value is None else self.value - self.baseline_value

    @property
    def method_wins(self) -> bool | None:
        if self.delta is None:
            return None
        return self.delta < 0 if lower_is_better(self.metric) else self.delta > 0


@dataclass
class SystemSection:
    name: str
    family: str
    paper: str
    summary: str
    status: str
    seconds: float | None
    setting: dict[str, Any]
    docs: Path | None
    error: str = ""
    log_tail: str = ""
    headers: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    bold: dict[int, str] = field(default_factory=dict)
    headline: Headline | None = None
    images: list[Path] = field(default_factory=list)


def headline(recipe: Recipe, result: dict[str, Any]) -> Headline | None:
    """``Recipe.headline`` (or the recipe's own row against every other row) on the primary metric."""
    pm = recipe.primary_metric
    rows = {r["method"]: r["metrics"] for r in result.get("rows", [])}
    method, bases = recipe.headline if recipe.headline else (recipe.name, tuple(n for n in rows if n != recipe.name))
    value = rows.get(method, {}).get(pm)
    if value is None or not math.isfinite(value):
        return None
    scored = [(n, rows[n][pm]) for n in bases if n in rows and pm in rows[n] and math.isfinite(rows[n][pm])]
    if not scored:
        return Headline(pm, method, value)
    pick = min if lower_is_better(pm) else max
    name, best = pick(scored, key=lambda t: t[1])
    return Headline(pm, method, value, name, best)


def docs_page(name: str) -> Path | None:
    """``docs/methods/<name>.md`` of the source tree polymodal runs from (absent in a wheel install)."""
    page = Path(polymodal.__file__).resolve().parents[2] / "docs" / "methods" / f"{name}.md"
    return page if page.is_file() else None


def compare_images(sub: Path) -> list[Path]:
    pngs = {p.name: p for p in sub.glob("*.png")}
    first = [pngs.pop(n) for n in PLOT_ORDER if n in pngs]
    return first + [pngs[n] for n in sorted(pngs)]


def _tail(path: Path, lines: int = 15) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def collect(d: Path, plan: DemoPlan) -> list[SystemSection]:
    """One section per planned recipe, in the plan's (stable) order."""
    sections = []
    for name in plan.recipes:
        load_family(plan.families[name])
        recipe = get_recipe(name)
        sub = d / name
        status = read_status(sub)
        sec = SystemSection(
            name=name, family=recipe.family, paper=recipe.paper.cite(), summary=recipe.summary,
            status=status.get("status", "pending"), seconds=status.get("seconds"),
            setting=plan.overrides.get(name, {}), docs=docs_page(name),
        )
        result_path = sub / "result.json"
        if sec.status == "finished" and result_path.is_file():
            result = json.loads(result_path.read_text())
            sec.headers, sec.rows = result_table(result, list(recipe.table_metrics) or None)
            sec.bold = best_directions(sec.headers)
            sec.headline = headline(recipe, result)
            sec.images = compare_images(sub)
        elif sec.status in ("failed", "interrupted"):
            err_path = sub / ERROR_FILE
            err = json.loads(err_path.read_text()).get("error", "") if err_path.is_file() else ""
            sec.error = err or status.get("error", "") or f"the recipe's process ended with {status.get('exit')}"
            sec.log_tail = _tail(sub / LOG_FILE)
        sections.append(sec)
    return sections


def relative_link(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target, start)).as_posix()

"""The recipe registry: how a method becomes runnable from the CLI.

A family's ``recipes.py`` registers each method with ``@recipe(...)``; ``discover()`` imports every
family's recipes module. A family whose optional dependencies are missing is listed as unavailable
with the import error instead of breaking the whole CLI.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from polymodal.core.config import RecipeConfig
from polymodal.core.errors import UnknownRecipeError

if TYPE_CHECKING:
    from polymodal.core.runs import Run

#: families in display order; each is ``polymodal.<family>.recipes``
FAMILIES = ("recsys", "federated", "video", "affect", "sensing", "llm")


@dataclass(frozen=True)
class Paper:
    title: str
    venue: str = ""
    arxiv: str = ""
    code: str = ""

    def cite(self) -> str:
        bits = [self.title]
        if self.venue:
            bits.append(self.venue)
        if self.arxiv:
            bits.append(f"arXiv {self.arxiv}")
        return " · ".join(bits)


@dataclass
class Result:
    """What a recipe's ``run`` returns: one method's metrics on one dataset.

    ``train_seconds`` is the time spent training (not data loading); ``extra`` holds anything else
    worth keeping in ``result.json`` (best epoch, seconds per epoch, ...).
    """

    metrics: dict[str, float]
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    #: a grid recipe's rows (name -> metrics), e.g. {"nafl/krum/alie": {...}}; empty: one row named by the recipe
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    #: seconds each grid row took (default: ``train_seconds`` shared equally)
    row_seconds: dict[str, float] = field(default_factory=dict)


RunFn = Callable[[RecipeConfig, "Run"], Result]


@dataclass
class Recipe:
    name: str
    family: str
    paper: Paper
    config_cls: type[RecipeConfig]
    run_fn: RunFn
    primary_metric: str
    baselines: tuple[str, ...] = ()
    summary: str = ""
    #: overrides applied by ``--quick``: the embedded-data setting used by ``demo`` and the tests
    quick: dict[str, Any] = field(default_factory=dict)
    #: shown in ``polymodal demo`` (the main method of a paper, not each baseline)
    demo: bool = False
    #: metrics shown in report tables (all of them when empty)
    table_metrics: tuple[str, ...] = ()
    #: the ``metrics.jsonl`` key plotted as the training curve (e.g. ``"valid/ndcg@10"``)
    curve_metric: str | None = None
    #: False for a "suite" recipe whose compare rows are its baselines only (e.g. ``sg-urinit``: every
    #: backbone with and without the init); ``run`` still runs the recipe itself
    compare_self: bool = True
    #: (method, baseline) pairs whose gains the compare report lists (default: the recipe vs each baseline)
    gain_pairs: tuple[tuple[str, str], ...] = ()
    #: extra report content: ``fn(compare_dir, result, run_dirs) -> (markdown lines, image paths)``
    report_extras: Callable[..., tuple[list[str], list[Any]]] | None = None
    #: rows one run reports when it trains the method and its baselines together (e.g. ``fedsm``: fedsm, creff,
    #: fedavg, ...); shown by ``list`` / ``info`` in place of separate baseline recipes
    rows: tuple[str, ...] = ()
    #: ``polymodal demo``'s setting: overrides applied on top of ``quick`` so that all sixteen systems fit the demo's
    #: 20-minute budget on 2 cores (empty: the quick setting as it is)
    demo_settings: dict[str, Any] = field(default_factory=dict)
    #: ``polymodal demo --setting smoke``: overrides on top of ``quick`` that run the whole pipeline in seconds (an
    #: install check and the report test; its numbers mean nothing)
    smoke_settings: dict[str, Any] = field(default_factory=dict)
    #: the demo overview's comparison: (the method's row, the rows that are its baselines); empty: the recipe's own
    #: row against every other row
    headline: tuple[str, tuple[str, ...]] | tuple[()] = ()

    def default_config(self) -> RecipeConfig:
        return self.config_cls()


_REGISTRY: dict[str, Recipe] = {}
_UNAVAILABLE: dict[str, str] = {}
_DISCOVERED = False


def recipe(
    name: str,
    *,
    family: str,
    paper: Paper,
    config: type[RecipeConfig],
    primary_metric: str,
    baselines: tuple[str, ...] | list[str] = (),
    summary: str = "",
    quick: dict[str, Any] | None = None,
    demo: bool = False,
    table_metrics: tuple[str, ...] | list[str] = (),
    curve_metric: str | None = None,
    compare_self: bool = True,
    gain_pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
    report_extras: Callable[..., tuple[list[str], list[Any]]] | None = None,
    rows: tuple[str, ...] | list[str] = (),
    demo_settings: dict[str, Any] | None = None,
    smoke_settings: dict[str, Any] | None = None,
    headline: tuple[str, tuple[str, ...] | list[str]] | None = None,
) -> Callable[[RunFn], RunFn]:
    """Register ``fn(config, run) -> Result`` as recipe ``name`` (lower-case, hyphenated)."""
    if name != name.lower() or "_" in name or " " in name:
        raise ValueError(f"recipe names are lower-case and hyphenated, got {name!r}")
    for label, values in (("quick", quick), ("demo_settings", demo_settings), ("smoke_settings", smoke_settings)):
        bad = set(values or {}) - set(config.model_fields)
        if bad:
            raise ValueError(f"recipe {name!r}: {label} overrides name unknown fields {sorted(bad)}")

    def deco(fn: RunFn) -> RunFn:
        if name in _REGISTRY and _REGISTRY[name].run_fn is not fn:
            raise ValueError(f"recipe {name!r} registered twice")
        _REGISTRY[name] = Recipe(
            name=name,
            family=family,
            paper=paper,
            config_cls=config,
            run_fn=fn,
            primary_metric=primary_metric,
            baselines=tuple(baselines),
            summary=summary or _first_line(fn.__doc__),
            quick=dict(quick or {}),
            demo=demo,
            table_metrics=tuple(table_metrics),
            curve_metric=curve_metric,
            compare_self=compare_self,
            gain_pairs=tuple(tuple(p) for p in gain_pairs),
            report_extras=report_extras,
            rows=tuple(rows),
            demo_settings=dict(demo_settings or {}),
            smoke_settings=dict(smoke_settings or {}),
            headline=(headline[0], tuple(headline[1])) if headline else (),
        )
        return fn

    return deco


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def load_family(fam: str) -> None:
    """Import one family's recipes module (a family with a missing optional dependency is noted, not raised)."""
    modname = f"polymodal.{fam}.recipes"
    try:
        importlib.import_module(modname)
    except ModuleNotFoundError as e:
        if e.name in (modname, f"polymodal.{fam}"):
            return  # family not written yet
        _UNAVAILABLE[fam] = f"missing dependency {e.name!r} (install the '{fam}' extra)"
    except ImportError as e:  # pragma: no cover - depends on the environment
        _UNAVAILABLE[fam] = str(e)


def discover() -> None:
    """Import every family's recipes module once."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for fam in FAMILIES:
        load_family(fam)
    _DISCOVERED = True


def all_recipes() -> list[Recipe]:
    discover()
    order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(_REGISTRY.values(), key=lambda r: (order.get(r.family, 99), r.name))


def unavailable_families() -> dict[str, str]:
    discover()
    return dict(_UNAVAILABLE)


def get_recipe(name: str) -> Recipe:
    if name in _REGISTRY:
        return _REGISTRY[name]
    discover()
    if name in _REGISTRY:
        return _REGISTRY[name]
    alt = name.replace("_", "-").lower()
    if alt in _REGISTRY:
        return _REGISTRY[alt]
    import difflib

    close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownRecipeError(f"no recipe named {name!r}.{hint} Run 'polymodal list' to see them all.")

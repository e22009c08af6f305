"""What a demo folder runs: the recipes, their setting and overrides (``demo.json``), and each recipe's status.

A demo folder holds ``demo.json`` (the plan, written once), one compare folder per recipe and, in each, the
``demo-status.json`` the runner keeps (``pending | running | finished | failed | interrupted``, seconds, error).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from polymodal.core.config import parse_overrides
from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.core.registry import Recipe, all_recipes
from polymodal.core.runs import atomic_write_json

#: ``demo``: each recipe's quick setting trimmed to the 20-minute budget (``Recipe.demo_settings``); ``quick``: the
#: quick settings as they are (the documented seed tables); ``smoke``: seconds per recipe, numbers meaningless
SETTINGS = ("demo", "quick", "smoke")
PLAN_FILE = "demo.json"
STATUS_FILE = "demo-status.json"
ERROR_FILE = "demo-error.json"
LOG_FILE = "demo.log"


def demo_recipes(only: list[str] | None = None) -> list[Recipe]:
    """The demo recipes (one per paper) in the stable display order (family, then name), or the ``only`` subset."""
    recipes = [r for r in all_recipes() if r.demo]
    if not only:
        return recipes
    names = [r.name for r in recipes]
    unknown = [n for n in only if n not in names]
    if unknown:
        hints = []
        for n in unknown:
            close = difflib.get_close_matches(n, names, n=1)
            hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"--only names {', '.join(hints)}, which is not a demo recipe; choose from {', '.join(names)}")
    return [r for r in recipes if r.name in only]


def setting_overrides(recipe: Recipe, setting: str) -> dict[str, Any]:
    """The overrides a setting puts on top of the recipe's quick setting."""
    if setting not in SETTINGS:
        raise ConfigError(f"--setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    return {"demo": recipe.demo_settings, "quick": {}, "smoke": recipe.smoke_settings}[setting]


def parse_recipe_overrides(items: list[str] | None, recipes: list[Recipe]) -> dict[str, dict[str, Any]]:
    """``["nlgcl.epochs=5"]`` -> ``{"nlgcl": {"epochs": 5}}``; the recipe must be in the demo and have the field."""
    by_name = {r.name: r for r in recipes}
    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, _ = item.partition("=")
        name, dot, fieldname = key.strip().partition(".")
        if not eq or not dot or not fieldname:
            raise ConfigError(f"demo --set expects RECIPE.FIELD=VALUE (e.g. nlgcl.epochs=5), got {item!r}")
        if name not in by_name:
            raise ConfigError(f"demo --set {item!r}: {name!r} is not among this demo's recipes "
                              f"({', '.join(by_name)})")
        value = parse_overrides([item.partition(".")[2]])
        if fieldname not in by_name[name].config_cls.model_fields:
            close = difflib.get_close_matches(fieldname, list(by_name[name].config_cls.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"demo --set {item!r}: recipe {name!r} has no field {fieldname!r}{hint}")
        out.setdefault(name, {}).update(value)
    return out


@dataclass
class DemoPlan:
    """``demo.json``: everything ``--resume`` needs to continue a demo folder."""

    setting: str
    recipes: list[str]
    families: dict[str, str]
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))

    @classmethod
    def build(cls, recipes: list[Recipe], setting: str, user: dict[str, dict[str, Any]] | None = None) -> DemoPlan:
        overrides = {r.name: {**setting_overrides(r, setting), **(user or {}).get(r.name, {})} for r in recipes}
        return cls(setting=setting, recipes=[r.name for r in recipes], families={r.name: r.family for r in recipes},
                   overrides=overrides)

    def save(self, d: Path) -> None:
        atomic_write_json(d / PLAN_FILE, asdict(self))

    @classmethod
    def load(cls, d: Path | str) -> DemoPlan:
        path = Path(d) / PLAN_FILE
        if not path.is_file():
            raise PolymodalError(f"{d} is not a demo folder (no {PLAN_FILE})")
        try:
            raw = json.loads(path.read_text())
            return cls(**raw)
        except (ValueError, TypeError) as e:
            raise PolymodalError(f"{path} is not a valid demo plan: {e}") from e


def read_status(sub: Path) -> dict[str, Any]:
    path = sub / STATUS_FILE
    if not path.is_file():
        return {"status": "pending"}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"status": "pending"}


def write_status(sub: Path, **status: Any) -> None:
    sub.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sub / STATUS_FILE, status)

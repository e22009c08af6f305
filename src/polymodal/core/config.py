"""Recipe configs: pydantic models with bounds, ``--set key=value`` overrides and YAML files.

Every recipe config derives from ``RecipeConfig`` (a ``seed`` and ``data``); families add their
budget (``epochs``/``rounds``/``steps``) and hyper-parameters with ``Field(..., ge=..)`` bounds so a bad
value fails with a message naming the field.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from polymodal.core.errors import ConfigError

C = TypeVar("C", bound="RecipeConfig")


class RecipeConfig(BaseModel):
    """Fields every recipe has. ``data=None`` means the recipe's embedded default data."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = Field(0, ge=0, description="seed for torch, numpy and python random")
    data: str | None = Field(None, description="path or dataset name; None = embedded data")
    device: str = Field("auto", description="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1' ...")

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        """Fields a ``compare`` run copies from the method's config to its baselines'
        (same data, seed and training budget). Families extend this."""
        return ("seed", "data", "device")


def distinct_choices(values: tuple[str, ...], allowed: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A config validator's check for a non-empty tuple of distinct names, each one of ``allowed`` (e.g. the rows
    a recipe trains); raises ValueError (pydantic names the field) listing the allowed names."""
    if not values or len(set(values)) != len(values) or any(v not in allowed for v in values):
        raise ValueError(f"give distinct names among {', '.join(allowed)}; got {list(values)}")
    return values


def parse_value(text: str) -> Any:
    """Parse the right-hand side of ``--set key=value``: YAML scalars/lists, plus ``1e-3`` floats
    (YAML 1.1 reads a float without a dot as a string)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=5", "lr=1e-3"]`` -> ``{"epochs": 5, "lr": 0.001}``; a malformed item raises ConfigError."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, _, raw = item.partition("=")
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = parse_value(raw.strip())
    return out


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of config values (as written to a run's ``config.yaml``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of field: value, got {type(data).__name__}")
    return data


def build_config(cls: type[C], values: dict[str, Any] | None = None, *, where: str = "") -> C:
    """Validate ``values`` against ``cls``; errors become one ConfigError naming every bad field."""
    values = dict(values or {})
    known = set(cls.model_fields)
    unknown = [k for k in values if k not in known]
    if unknown:
        msgs = []
        for k in unknown:
            close = difflib.get_close_matches(k, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msgs.append(f"unknown field {k!r}{hint}")
        raise ConfigError(f"{where or cls.__name__}: " + "; ".join(msgs) + f". Known fields: {', '.join(sorted(known))}")
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, where or cls.__name__)) from None


def format_validation_error(e: ValidationError, where: str) -> str:
    parts = []
    for err in e.errors():
        field = ".".join(str(x) for x in err["loc"]) or "<config>"
        got = err.get("input")
        parts.append(f"field {field!r}: {err['msg']} (got {got!r})")
    return f"{where}: invalid config: " + "; ".join(parts)


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """Plain-python dict (tuples as lists) suitable for YAML."""
    return config.model_dump(mode="json")

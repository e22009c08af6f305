"""Structured output: pull a JSON object out of a model reply and validate it against a pydantic schema.

Small models wrap JSON in prose or code fences, use single quotes or leave trailing commas; `extract_json`
tolerates those. Validation errors are rendered naming each offending field, so a repair prompt (and the final
error, when the repair fails too) tells exactly what was wrong.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from polymodal.core.errors import PolymodalError


class StructuredOutputError(PolymodalError, ValueError):
    """A reply could not be parsed or validated; ``fields`` lists the offending field paths."""

    def __init__(self, message: str, *, fields: list[str] | None = None, raw: str = "", role: str | None = None):
        super().__init__(message)
        self.fields = fields or []
        self.raw = raw
        self.role = role


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _balanced_objects(text: str) -> list[str]:
    """Every top-level ``{...}`` substring, braces matched outside of strings."""
    found, depth, start, in_str, esc, quote = [], 0, -1, False, False, ""
    for i, ch in enumerate(text):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                in_str = False
            continue
        if ch in "\"'" and depth > 0:
            in_str, quote = True, ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                found.append(text[start : i + 1])
    return found


def _loads_lenient(candidate: str) -> Any:
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        pass
    fixed = re.sub(r",\s*([}\]])", r"\1", candidate)  # trailing commas
    try:
        return json.loads(fixed)
    except json.JSONDecodeError:
        pass
    if "'" in fixed and '"' not in fixed:  # a python-style dict with single quotes
        return json.loads(fixed.replace("'", '"'))
    raise json.JSONDecodeError("not JSON", candidate, 0)


def extract_json(text: str) -> dict:
    """The first JSON object in ``text`` (inside code fences or bare); raises StructuredOutputError if none parses."""
    candidates = [m.strip() for m in _FENCE.findall(text)]
    candidates += _balanced_objects(text)
    for cand in candidates:
        for sub in [cand, *_balanced_objects(cand)[1:]]:
            try:
                obj = _loads_lenient(sub)
            except (json.JSONDecodeError, ValueError):
                continue
            if isinstance(obj, dict):
                return obj
    snippet = " ".join(text.split())[:200]
    raise StructuredOutputError(f"no JSON object found in the reply: {snippet!r}", raw=text)


def describe_validation_error(exc: ValidationError) -> tuple[str, list[str]]:
    """("field 'a.b': message; field 'c': message", ["a.b", "c"])."""
    parts, fields = [], []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        fields.append(loc)
        got = err.get("input")
        got_txt = "" if err.get("type") == "missing" else f" (got {json.dumps(got, default=str)[:60]})"
        parts.append(f"field '{loc}': {err.get('msg', 'invalid')}{got_txt}")
    return "; ".join(parts), fields


def parse_reply(text: str, schema: type[BaseModel]) -> BaseModel:
    """Extract and validate; errors name the offending fields."""
    obj = extract_json(text)
    try:
        return schema.model_validate(obj)
    except ValidationError as exc:
        message, fields = describe_validation_error(exc)
        raise StructuredOutputError(f"{schema.__name__}: {message}", fields=fields, raw=text) from None


def schema_hint(schema: type[BaseModel]) -> str:
    """A compact instruction small models follow better than a full JSON Schema: an example-shaped object."""
    js = schema.model_json_schema()
    defs = js.get("$defs", {})
    props = js.get("properties", {})
    lines = []
    for name, spec in props.items():
        if "$ref" in spec:
            spec = defs.get(spec["$ref"].split("/")[-1], spec)
        if "enum" in spec:
            kind = " | ".join(json.dumps(v) for v in spec["enum"])
        elif "anyOf" in spec:
            kind = " or ".join(s.get("type", "value") for s in spec["anyOf"])
        elif spec.get("type") == "array":
            item = spec.get("items", {})
            kind = f"list of {item.get('type', 'values')}"
            if "enum" in item:
                kind = "list of " + " | ".join(json.dumps(v) for v in item["enum"])
        else:
            kind = spec.get("type", "value")
        bounds = [f"{k} {spec[k]}" for k in ("minimum", "maximum") if k in spec]
        desc = spec.get("description")
        extra = ", ".join([*bounds, *([desc] if desc else [])])
        lines.append(f'  "{name}": <{kind}>' + (f"  // {extra}" if extra else ""))
    return "Reply with only one JSON object, no other text:\n{\n" + ",\n".join(lines) + "\n}"

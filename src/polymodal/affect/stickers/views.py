"""Split an MLLM sticker description into its four views (MGHFT, spec 2.3).

The multi-view interpreter writes one text per sticker with four sections headed ``#The sticker's intention``,
``#The sticker's style``, ``#The sticker's main role`` and ``#The sticker's gesture``. MGHFT feeds view *i* to
pyramid stage *i*. The released code encodes the whole lower-cased text for every view (a bug); we encode each view
separately and reproduce the bug only with ``replicate_view_text_bug=True``.
"""

from __future__ import annotations

import re

from polymodal.core.errors import PolymodalError

#: the four view names, in the canonical (stage) order
VIEW_NAMES = ("intention", "style", "main role", "gesture")
#: ``#The sticker's <view>`` (bold ``**`` marks, a trailing colon and any case allowed)
HEADER_RE = re.compile(r"#+\s*the\s+sticker(?:'|’)?s?\s+\**\s*(intention|style|main\s+role|gesture)\s*\**\s*:?",
                       re.IGNORECASE)


class MissingViewsError(PolymodalError, ValueError):
    """A description lacks one of the four view sections, or a model got no views where it needs them."""


def header(view: str) -> str:
    """The section header our templates and prompts use, e.g. ``#The sticker's intention:``."""
    return f"#The sticker's {view}:"


def join_views(views: dict[str, str] | list[str]) -> str:
    """The inverse of :func:`split_views`: one description text with the four headed sections."""
    if not isinstance(views, dict):
        views = dict(zip(VIEW_NAMES, views, strict=True))
    return "\n".join(f"{header(v)} {views[v].strip()}" for v in VIEW_NAMES)


def split_views(text: str, *, replicate_view_text_bug: bool = False, order: str = "text") -> list[str]:
    """The four view texts of a description (spec 2.3).

    ``order="text"`` (the official behaviour) returns the sections in the order they appear in the text;
    ``order="canonical"`` returns intention, style, main role, gesture whatever the text order.
    ``replicate_view_text_bug=True`` returns the whole lower-cased text four times, as the released code encodes it.
    A missing or repeated header raises :class:`MissingViewsError` naming it.
    """
    if not isinstance(text, str) or not text.strip():
        raise MissingViewsError("empty sticker description: expected four sections headed "
                                + ", ".join(repr(header(v)) for v in VIEW_NAMES))
    if replicate_view_text_bug:
        return [text.lower()] * len(VIEW_NAMES)
    marks = list(HEADER_RE.finditer(text))
    names = [re.sub(r"\s+", " ", m.group(1).lower()) for m in marks]
    missing = [v for v in VIEW_NAMES if v not in names]
    repeated = sorted({v for v in names if names.count(v) > 1})
    if missing or repeated:
        what = (f"missing {', '.join(repr(header(v)) for v in missing)}" if missing else "") + \
               ("; " if missing and repeated else "") + \
               (f"repeated {', '.join(repr(header(v)) for v in repeated)}" if repeated else "")
        raise MissingViewsError(f"sticker description: {what} (text starts {text[:80]!r})")
    sections = {}
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        sections[names[i]] = text[m.end():end].strip()
    if order == "canonical":
        return [sections[v] for v in VIEW_NAMES]
    if order != "text":
        raise ValueError(f"order must be 'text' or 'canonical', got {order!r}")
    return [sections[n] for n in names]

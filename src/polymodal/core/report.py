"""Reports: markdown/HTML tables and matplotlib plots of results and training curves."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3e}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def lower_is_better(metric: str) -> bool:
    """Losses, spreads, times, errors, rounds-to-target and model sizes are better when lower (bolded at the
    minimum)."""
    m = metric.lower()
    return any(k in m for k in ("loss", "_std", "std_", "seconds", "error", "deviation", "rounds_to", "fawning",
                                "params", "macs", "flops", "latency", "_mb"))


def best_directions(headers: Sequence[str]) -> dict[int, str]:
    """``bold_best`` for a ``result_table``: every metric column (not the method, train s and peak RSS columns)."""
    return {i: "min" if lower_is_better(headers[i]) else "max" for i in range(1, len(headers) - 2)}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, bold_best: dict[int, str] | None = None) -> str:
    """A pipe table. ``bold_best={col: "max"|"min"}`` bolds the best value of those columns."""
    cells = [[fmt(v) for v in r] for r in rows]
    for col, how in (bold_best or {}).items():
        vals = [(i, r[col]) for i, r in enumerate(rows) if isinstance(r[col], (int, float)) and not isinstance(r[col], bool)]
        if len(vals) > 1:
            best = (max if how == "max" else min)(vals, key=lambda t: t[1])[1]
            for i, v in vals:
                if v == best:
                    cells[i][col] = f"**{cells[i][col]}**"
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(out)


def result_table(result: dict[str, Any], metrics: Sequence[str] | None = None) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows for a ``result.json`` contract dict."""
    rows = result["rows"]
    if metrics is None:
        metrics = []
        for r in rows:
            metrics += [k for k in r["metrics"] if k not in metrics]
    headers = ["method", *metrics, "train s", "peak RSS MB"]
    table = [
        [r["method"], *[r["metrics"].get(m, float("nan")) for m in metrics], r["train_seconds"], r["peak_rss_mb"]]
        for r in rows
    ]
    return headers, table


def plot_curves(series: dict[str, list[tuple[float, float]]], *, xlabel: str, ylabel: str, title: str):
    """One line per method: ``series[method] = [(x, y), ...]``. Returns the figure."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, pts in series.items():
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=name, linewidth=1.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return fig


def plot_bars(values: dict[str, float], *, ylabel: str, title: str, highlight: str | None = None):
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    names = list(values)
    colors = ["#d62728" if n == highlight else "#1f77b4" for n in names]
    ax.bar(names, [values[n] for n in names], color=colors)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    for tick in ax.get_xticklabels():
        tick.set_rotation(20)
    return fig


def markdown_to_html_page(title: str, sections: list[tuple[str, str]], images: Sequence[Path] = ()) -> str:
    """A self-contained HTML page: ``sections`` are (heading, markdown-table-or-text); images are inlined."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, text in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        body.append(_md_block_to_html(text))
    for img in images:
        data = base64.b64encode(Path(img).read_bytes()).decode()
        body.append(f'<figure><img alt="{html.escape(img.name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(img.name)}</figcaption></figure>")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:640px}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def _md_block_to_html(text: str) -> str:
    out, table = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:
            out.append(_md_table_to_html(table))
            table = []
        if line.strip():
            out.append(f"<p>{html.escape(line).replace('**', '')}</p>")
    return "\n".join(out)


def _md_table_to_html(lines: list[str]) -> str:
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if not set(ln) <= set("|-: ")]
    head, *rest = rows
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join(
        "<tr>" + "".join(
            f"<td><b>{html.escape(c.strip('*'))}</b></td>" if c.startswith("**") else f"<td>{html.escape(c)}</td>"
            for c in r) + "</tr>"
        for r in rest
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"

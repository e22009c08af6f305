"""The demo report in two forms: ``report.md`` (plots linked from the compare folders) and ``report.html``
(self-contained: plots embedded as data URIs, no scripts, no network)."""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path

from polymodal.core.report import fmt, markdown_table
from polymodal.demo.plan import DemoPlan
from polymodal.demo.report import SystemSection, relative_link

OVERVIEW_HEADERS = ["system", "family", "paper", "primary metric", "method", "best baseline", "Δ", "time", "status"]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _paper_title(sec: SystemSection) -> str:
    return sec.paper.split(" · ")[0]


def overview_rows(sections: list[SystemSection]) -> list[list[str]]:
    rows = []
    for s in sections:
        h = s.headline
        metric = h.metric if h else ""
        method = f"{fmt(h.value)} ({h.method})" if h else ""
        base = f"{fmt(h.baseline_value)} ({h.baseline})" if h and h.baseline else ""
        delta = ""
        if h and h.delta is not None:
            delta = f"{h.delta:+.4f}" + (" ✓" if h.method_wins else "")
        status = "ok" if s.status == "finished" else s.status
        if s.error:
            first = s.error.splitlines()[0]
            status += ": " + (first[:90] + "…" if len(first) > 90 else first)
        if s.status == "finished" and h is None:
            method = "no row named by the recipe's headline"
        rows.append([s.name, s.family, _paper_title(s), metric, method, base, delta, duration(s.seconds), status])
    return rows


def _setting_text(sec: SystemSection, plan: DemoPlan) -> str:
    if not sec.setting:
        return f"setting {plan.setting}: the recipe's quick setting as it is"
    bits = ", ".join(f"{k}={v}" for k, v in sec.setting.items())
    return f"setting {plan.setting}: the recipe's quick setting with {bits}"


def headline_sentence(sec: SystemSection) -> str:
    h = sec.headline
    if h is None:
        return ""
    if h.baseline is None:
        return f"{h.method}: {h.metric} {fmt(h.value)} (no baseline row to compare with)."
    verdict = "ahead of" if h.method_wins else ("level with" if h.delta == 0 else "behind")
    return (f"{h.method} is {verdict} its best baseline on {h.metric}: {fmt(h.value)} vs {fmt(h.baseline_value)} "
            f"({h.baseline}).")


def render_markdown(d: Path, plan: DemoPlan, sections: list[SystemSection]) -> str:
    done = sum(s.status == "finished" for s in sections)
    md = ["# polymodal demo", "",
          f"Every system's method against the baselines its paper compares with, on embedded data "
          f"(setting `{plan.setting}`). {done} of {len(sections)} systems finished; written "
          f"{datetime.now().isoformat(timespec='seconds')}. ✓: the method is ahead of its best baseline.", "",
          "## Overview", "", markdown_table(OVERVIEW_HEADERS, overview_rows(sections)), ""]
    for s in sections:
        md += [f"## {s.name} — {_paper_title(s)}", ""]
        docs = f"[docs/methods/{s.name}.md]({relative_link(s.docs, d)})" if s.docs else f"docs/methods/{s.name}.md"
        md += [f"*{s.family} · {s.paper} · {docs} · compare folder [{s.name}/]({s.name}/report.md) · "
               f"{duration(s.seconds) or 'not timed'}*", "", s.summary, "", _setting_text(s, plan), ""]
        if s.status == "finished" and s.headers:
            md += [headline_sentence(s), "", markdown_table(s.headers, s.rows, bold_best=s.bold), ""]
            md += [f"![{s.name} {p.stem}]({s.name}/{p.name})" for p in s.images] + [""]
        elif s.error:
            md += [f"**{s.status.capitalize()}:** {s.error}", ""]
            if s.log_tail:
                md += ["Last lines of its log:", "", "```", s.log_tail, "```", ""]
        else:
            md += [f"Not run yet ({s.status}); continue with `polymodal demo --resume {d}`.", ""]
    return "\n".join(md) + "\n"


STYLE = """
body{font-family:system-ui,-apple-system,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}
td:first-child,th:first-child,table.overview td,table.overview th{text-align:left}
th{background:#f3f3f3}
section.system{border-top:2px solid #ddd;margin-top:2em}
.meta{color:#555;font-size:13px}
.failed{background:#fff0f0;border:1px solid #e99;padding:.5em}
.win{color:#1a7f37;font-weight:600}
figure{display:inline-block;margin:.5em 1em .5em 0}
img.plot{max-width:520px;border:1px solid #eee}
.scroll{overflow-x:auto;max-width:100%}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:12px}
"""


def _table_html(headers: list[str], rows: list[list[object]], bold: dict[int, str], cls: str) -> str:
    cells = []
    for col, how in bold.items():
        vals = [r[col] for r in rows if isinstance(r[col], (int, float)) and not isinstance(r[col], bool)]
        cells.append((col, (max if how == "max" else min)(vals) if len(vals) > 1 else None))
    best = dict(cells)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for r in rows:
        tds = []
        for i, v in enumerate(r):
            text = html.escape(fmt(v))
            tds.append(f"<td><b>{text}</b></td>" if best.get(i) is not None and v == best[i] else f"<td>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            '</table></div>')


def _img(path: Path, name: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img class="plot" alt="{html.escape(name)} {html.escape(path.stem)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html.escape(path.name)}</figcaption></figure>')


def render_html(d: Path, plan: DemoPlan, sections: list[SystemSection]) -> str:
    esc = html.escape
    done = sum(s.status == "finished" for s in sections)
    out = ["<h1>polymodal demo</h1>",
           f"<p>Every system's method against the baselines its paper compares with, on embedded data (setting "
           f"<code>{esc(plan.setting)}</code>). {done} of {len(sections)} systems finished. "
           f"✓: the method is ahead of its best baseline.</p>", "<h2>Overview</h2>"]
    rows = overview_rows(sections)
    head = "".join(f"<th>{esc(h)}</th>" for h in OVERVIEW_HEADERS)
    body = "".join(
        "<tr>" + f'<td><a href="#sys-{esc(r[0])}">{esc(r[0])}</a></td>'
        + "".join(f'<td class="win">{esc(c)}</td>' if c.endswith("✓") else f"<td>{esc(c)}</td>" for c in r[1:])
        + "</tr>" for r in rows)
    out.append(f'<div class="scroll"><table class="overview"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
               '</table></div>')
    for s in sections:
        docs = (f'<a href="{esc(relative_link(s.docs, d))}">docs/methods/{esc(s.name)}.md</a>' if s.docs
                else f"docs/methods/{esc(s.name)}.md")
        part = [f'<section class="system" id="sys-{esc(s.name)}" data-status="{esc(s.status)}">',
                f"<h2>{esc(s.name)} — {esc(_paper_title(s))}</h2>",
                f'<p class="meta">{esc(s.family)} · {esc(s.paper)} · {docs} · compare folder '
                f'<a href="{esc(s.name)}/report.md">{esc(s.name)}/</a> · {esc(duration(s.seconds) or "not timed")}</p>',
                f"<p>{esc(s.summary)}</p>", f'<p class="meta">{esc(_setting_text(s, plan))}</p>']
        if s.status == "finished" and s.headers:
            part.append(f"<p>{esc(headline_sentence(s))}</p>")
            part.append(_table_html(s.headers, s.rows, s.bold, "results"))
            part += [_img(p, s.name) for p in s.images]
        elif s.error:
            part.append(f'<div class="failed"><b>{esc(s.status.capitalize())}:</b> {esc(s.error)}')
            if s.log_tail:
                part.append(f"<p>Last lines of its log:</p><pre>{esc(s.log_tail)}</pre>")
            part.append("</div>")
        else:
            part.append(f"<p>Not run yet ({esc(s.status)}); continue with "
                        f"<code>polymodal demo --resume {esc(str(d))}</code>.</p>")
        part.append("</section>")
        out.append("\n".join(part))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>polymodal demo</title>"
            f"<style>{STYLE}</style></head><body>{''.join(out)}</body></html>\n")

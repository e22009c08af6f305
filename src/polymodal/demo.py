"""``polymodal demo``: every paper's ``compare`` in quick mode on embedded data, one report.

Each recipe flagged ``demo=True`` gets a sub-folder holding its own compare run; the demo folder's
``report.md``/``report.html`` gathers their tables and plots.
"""

from __future__ import annotations

from pathlib import Path

from polymodal.core.errors import PolymodalError
from polymodal.core.execute import prepare_compare, run_compare
from polymodal.core.registry import all_recipes
from polymodal.core.report import markdown_table, markdown_to_html_page, result_table
from polymodal.core.runs import atomic_write_json, atomic_write_text, new_run_dir


def run_demo(out: str | Path | None = None, only: list[str] | None = None, root: str | Path = "runs") -> Path:
    recipes = [r for r in all_recipes() if r.demo and (not only or r.name in only)]
    if not recipes:
        raise PolymodalError(f"no demo recipe matches {only}")
    d = Path(out) if out else new_run_dir(root, "demo")
    d.mkdir(parents=True, exist_ok=True)
    md = ["# polymodal demo", "", "Every paper's method against its baselines, quick mode, embedded data.", ""]
    sections, images, summary = [], [], []
    for r in recipes:
        sub = d / r.name
        if not (sub / "compare.json").exists():
            prepare_compare(r, quick=True, out=sub)
        result = run_compare(sub)
        headers, rows = result_table(result, list(r.table_metrics) or None)
        table = markdown_table(headers, rows, bold_best={i: "max" for i in range(1, len(headers) - 2)})
        md += [f"## {r.name} ({r.family}) — {r.paper.cite()}", "", table, ""]
        for img in ("curves.png", "bars.png"):
            if (sub / img).exists():
                md.append(f"![{r.name} {img}]({r.name}/{img})")
                images.append(sub / img)
        md.append("")
        sections.append((f"{r.name} ({r.family})", table))
        summary.append({"recipe": r.name, "result": f"{r.name}/result.json"})
    atomic_write_text(d / "report.md", "\n".join(md) + "\n")
    atomic_write_text(d / "report.html", markdown_to_html_page("polymodal demo", sections, images))
    atomic_write_json(d / "demo.json", {"recipes": summary})
    return d / "report.md"



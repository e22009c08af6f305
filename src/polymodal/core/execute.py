"""Execute recipes: one method in one run folder (``run``), or a method and its baselines (``compare``).

``compare`` runs every method in its own subprocess (``python -m polymodal.core.worker DIR``) so that
each row's ``peak_rss_mb`` is that method's own, and so a crash or kill of one method loses nothing
of the others: ``--resume`` skips finished methods and continues the unfinished one from its
checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from polymodal.core.config import RecipeConfig, build_config, config_to_dict
from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.core.registry import Recipe, get_recipe
from polymodal.core.report import (
    best_directions,
    markdown_table,
    markdown_to_html_page,
    plot_bars,
    plot_curves,
    result_table,
)
from polymodal.core.runs import Run, atomic_write_json, atomic_write_text, new_run_dir
from polymodal.core.runtime import peak_rss_mb, seed_everything

RESULT = "result.json"


# ---------------------------------------------------------------------------------------- configs
def make_config(
    recipe: Recipe,
    *,
    file_values: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    data: str | None = None,
    quick: bool = False,
    inherited: dict[str, Any] | None = None,
    strict: bool = True,
) -> RecipeConfig:
    """Defaults < quick overrides < inherited protocol fields < config file < ``--set`` < ``--data``.

    With ``strict=False`` keys the recipe's config does not have are ignored (a ``compare`` applies
    one ``--set`` to methods whose configs differ).
    """
    fields = recipe.config_cls.model_fields
    values: dict[str, Any] = {}
    if quick:
        values.update(recipe.quick)
    for src in (inherited, file_values, overrides):
        for k, v in (src or {}).items():
            if strict or k in fields:
                values[k] = v
    if data is not None:
        values["data"] = data
    return build_config(recipe.config_cls, values, where=f"recipe {recipe.name!r}")


# ---------------------------------------------------------------------------------------- one run
def run_in_dir(run_dir: Path | str) -> dict[str, Any]:
    """Run (or resume) the recipe of an existing run folder; returns its ``result.json`` dict."""
    run = Run.open(run_dir)
    recipe = get_recipe(run.recipe)
    config = build_config(recipe.config_cls, run.config, where=f"{run.dir / 'config.yaml'}")
    seed_everything(config.seed)
    t0 = time.perf_counter()
    run.mark("running", pid=os.getpid())
    try:
        result = recipe.run_fn(config, run)
    except BaseException as e:
        run.finish(status="failed" if not isinstance(e, KeyboardInterrupt) else "interrupted",
                   error=f"{type(e).__name__}: {e}")
        raise
    wall = time.perf_counter() - t0
    named = result.rows or {recipe.name: result.metrics}
    rows = [{
        "method": name,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "train_seconds": float(result.row_seconds.get(name, (result.train_seconds or wall) / len(named))),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    } for name, metrics in named.items()]
    out = {"recipe": recipe.name, "primary_metric": recipe.primary_metric, "rows": rows, "extra": result.extra}
    run.write_json(RESULT, out)
    write_report(run.dir, recipe, out, {recipe.name: run.dir})
    run.finish(status="finished", wall_seconds=round(wall, 2))
    return out


def start_run(recipe: Recipe, config: RecipeConfig, *, out: Path | str | None = None, root: Path | str = "runs") -> Path:
    """Create the run folder (``out`` or ``root/<time>-<recipe>``) with its config."""
    if out is not None:
        d = Path(out)
        if (d / "run.json").exists():
            raise PolymodalError(f"{d} already holds a run; use --resume {d} to continue it, or pick another --out")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = new_run_dir(root, recipe.name)
    Run.create(d, recipe.name, config_to_dict(config))
    return d


# ---------------------------------------------------------------------------------------- compare
def compare_methods(recipe: Recipe, only: list[str] | None) -> list[str]:
    methods = [recipe.name, *recipe.baselines] if recipe.compare_self else list(recipe.baselines)
    if not only:
        return methods
    unknown = [m for m in only if m not in methods]
    if unknown:
        raise ConfigError(f"--only names {', '.join(unknown)}, which recipe {recipe.name!r} does not compare; "
                          f"choose from {', '.join(methods)}")
    return [m for m in methods if m in only]


def prepare_compare(
    recipe: Recipe,
    *,
    overrides: dict[str, Any] | None = None,
    file_values: dict[str, Any] | None = None,
    data: str | None = None,
    quick: bool = False,
    only: list[str] | None = None,
    out: Path | str | None = None,
    root: Path | str = "runs",
) -> Path:
    """Create the compare folder with one sub-run per method, all sharing the protocol fields."""
    methods = compare_methods(recipe, only)
    recipes = [get_recipe(m) for m in methods]
    keys = set(overrides or {}) | set(file_values or {})
    orphan = [k for k in keys if not any(k in r.config_cls.model_fields for r in recipes)]
    if orphan:
        raise ConfigError(f"no compared method has a field named {', '.join(map(repr, orphan))}")
    main_cfg = make_config(recipe, file_values=file_values, overrides=overrides, data=data, quick=quick, strict=False)
    shared = {k: getattr(main_cfg, k) for k in main_cfg.protocol_fields()}
    configs = {recipe.name: main_cfg}
    for r in recipes:
        if r.name != recipe.name:
            configs[r.name] = make_config(r, file_values=file_values, overrides=overrides, data=data, quick=quick,
                                          inherited=shared, strict=False)
    if out is not None:
        d = Path(out)
        if (d / "compare.json").exists():
            raise PolymodalError(f"{d} already holds a compare run; use --resume {d}, or pick another --out")
        d.mkdir(parents=True, exist_ok=True)
    else:
        d = new_run_dir(root, f"compare-{recipe.name}")
    for name in methods:
        Run.create(d / name, name, config_to_dict(configs[name]))
    atomic_write_json(d / "compare.json", {"recipe": recipe.name, "family": recipe.family, "methods": methods,
                                           "quick": quick})
    return d


def run_compare(d: Path | str, *, isolate: bool = True) -> dict[str, Any]:
    """Run every unfinished method of a compare folder, then write the table, plots and ``result.json``."""
    d = Path(d)
    spec_path = d / "compare.json"
    if not spec_path.is_file():
        raise PolymodalError(f"{d} is not a compare folder (no compare.json)")
    spec = json.loads(spec_path.read_text())
    recipe = get_recipe(spec["recipe"])
    rows = []
    for name in spec["methods"]:
        sub = d / name
        res_path = sub / RESULT
        if res_path.is_file() and Run.open(sub).meta().get("status") == "finished":
            rows.extend(json.loads(res_path.read_text())["rows"])
            continue
        if isolate:
            env = dict(os.environ)
            src = str(Path(__file__).resolve().parents[2])
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
            proc = subprocess.run([sys.executable, "-m", "polymodal.core.worker", str(sub)], env=env)
            if proc.returncode != 0:
                cause = Run.open(sub).meta().get("error") or f"exit {proc.returncode}"
                raise PolymodalError(f"method {name!r} failed: {cause} (see {sub}/run.json). "
                                     f"Fix the cause and continue with: polymodal compare --resume {d}")
            rows.extend(json.loads(res_path.read_text())["rows"])
        else:
            rows.extend(run_in_dir(sub)["rows"])
    result = {"recipe": recipe.name, "primary_metric": recipe.primary_metric, "rows": rows}
    atomic_write_json(d / RESULT, result)
    write_report(d, recipe, result, {n: d / n for n in spec["methods"]})
    return result


# ---------------------------------------------------------------------------------------- reports
def write_report(d: Path, recipe: Recipe, result: dict[str, Any], run_dirs: dict[str, Path]) -> Path:
    """``report.md`` + ``report.html`` with the result table, the gain of the method over each baseline,
    a training-curve plot and a bar plot of the primary metric."""
    metrics = list(recipe.table_metrics) or None
    headers, table = result_table(result, metrics)
    best = best_directions(headers)
    md = [f"# {recipe.name} — {recipe.paper.cite()}", "", recipe.summary, ""]
    md += ["## Results (test)", "", markdown_table(headers, table, bold_best=best), ""]
    pm = recipe.primary_metric
    rows = {r["method"]: r for r in result["rows"]}
    pairs = list(recipe.gain_pairs) or [(recipe.name, n) for n in rows if n != recipe.name]
    lines = []
    for method, base in pairs:
        if method not in rows or base not in rows:
            continue
        mine, other = rows[method]["metrics"].get(pm), rows[base]["metrics"].get(pm)
        if mine is not None and other:
            label = f"vs {base}" if method == recipe.name else f"{method} vs {base}"
            lines.append(f"- {label}: {mine:.4f} vs {other:.4f} ({100 * (mine - other) / other:+.1f}%)")
    if lines:
        title = f"{recipe.name} against its baselines" if not recipe.gain_pairs else "gains"
        md += [f"## {title} on {pm}", "", *lines, ""]
    cost = _cost_table(run_dirs)
    if cost:
        md += ["## Training cost", "", cost, ""]
    images = []
    key = recipe.curve_metric
    if key:
        series = {}
        for name, rd in run_dirs.items():
            pts = [(m["step"], m[key]) for m in Run(rd, name, {}).read_metrics() if key in m]
            if pts:
                series[name] = pts
        if series:
            fig = plot_curves(series, xlabel="epoch", ylabel=key, title=f"{recipe.name}: {key} during training")
            images.append(_save(fig, d / "curves.png"))
    if recipe.report_extras is not None and len(rows) > 1:
        extra_md, extra_images = recipe.report_extras(d, result, run_dirs)
        md += extra_md
        images += [Path(p) for p in extra_images]
    if len(rows) > 1:
        fig = plot_bars({n: r["metrics"].get(pm, 0.0) for n, r in rows.items()}, ylabel=pm,
                        title=f"{recipe.name}: test {pm}", highlight=recipe.name)
        images.append(_save(fig, d / "bars.png"))
    md += [f"![{p.stem}]({p.name})" for p in images]
    atomic_write_text(d / "report.md", "\n".join(md) + "\n")
    sections = [("Results (test)", markdown_table(headers, table, bold_best=best))]
    atomic_write_text(d / "report.html", markdown_to_html_page(f"{recipe.name} — {recipe.paper.cite()}", sections, images))
    return d / "report.md"


COST_KEYS = (("seconds_per_epoch", "s/epoch"), ("propagations_per_step", "propagations/step"),
             ("best_epoch", "best epoch"), ("epochs_run", "epochs run"))


def _cost_table(run_dirs: dict[str, Path]) -> str:
    """Per-method cost figures recipes report in ``result.json``'s ``extra`` (when any do)."""
    rows = []
    for name, rd in run_dirs.items():
        path = Path(rd) / RESULT
        extra = json.loads(path.read_text()).get("extra", {}) if path.is_file() else {}
        rows.append([name, *[extra.get(k) for k, _ in COST_KEYS]])
    keep = [i for i in range(len(COST_KEYS)) if any(r[i + 1] is not None for r in rows)]
    if not keep:
        return ""
    headers = ["method", *[COST_KEYS[i][1] for i in keep]]
    return markdown_table(headers, [[r[0], *[r[i + 1] for i in keep]] for r in rows])


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from polymodal.core.runs import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path

"""Mean ± std tables over seeds for the benchmark scripts (``python benchmarks/<name>_seeds.py``)."""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from pathlib import Path


def mean_std(values: list[float], digits: int) -> str:
    """``mean ± sample std`` (std 0 for one value)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def seed_table(rows_by_seed: dict[int, dict[str, dict[str, float]]], columns: tuple[tuple[str, str], ...],
               digits: Callable[[str], int], first: str = "method") -> str:
    """A markdown table: one line per row name (in the first seed's order), one ``mean ± std`` cell per
    ``(metric key, header)`` column over the seeds that report it; ``digits(key)`` decimals."""
    names = list(next(iter(rows_by_seed.values())))
    out = [f"| {first} | " + " | ".join(h for _, h in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        cells = []
        for key, _ in columns:
            vals = [rows[name][key] for rows in rows_by_seed.values() if key in rows.get(name, {})]
            cells.append(mean_std(vals, digits(key)) if vals else "")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def setting_line(setting: dict, seeds: list[int]) -> str:
    """The table's first line: the recipe setting as JSON (tuples as lists) and the seeds."""
    import json

    return f"Setting: {json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in setting.items()})}; seeds {seeds}."


def seed_parser(description: str, label: str, out: Path) -> argparse.ArgumentParser:
    """The options every seed benchmark takes: ``--seeds``, ``--set KEY=VALUE``, ``--label`` (run folder prefix;
    an existing folder is resumed) and ``--out`` (the markdown table)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--label", default=label, help="run folder prefix (an existing folder is resumed)")
    ap.add_argument("--out", type=Path, default=out)
    return ap


def parse_seed_args(ap: argparse.ArgumentParser, setting: dict) -> tuple[argparse.Namespace, dict]:
    """Parse the options, use one torch thread (the figures are single-thread CPU figures) and apply ``--set`` on
    top of the script's ``setting``."""
    import torch

    from polymodal.core.config import parse_overrides

    args = ap.parse_args()
    torch.set_num_threads(1)
    return args, {**setting, **parse_overrides(args.overrides)}


def run_recipe_seeds(recipe: str, setting: dict, seeds: list[int], root: Path, label: str, *,
                     primary: str) -> dict[int, dict[str, dict[str, float]]]:
    """Run ``polymodal compare <recipe>`` with ``setting`` once per seed into ``root/<label>-seed<N>`` (an existing
    folder is resumed: finished rows are kept), in this process; returns ``{seed: {row: metrics}}`` with each row's
    ``train_seconds`` added, printing ``primary`` per row as each seed finishes."""
    import time

    from polymodal.core.execute import prepare_compare, run_compare
    from polymodal.core.registry import get_recipe

    rows_by_seed: dict[int, dict[str, dict[str, float]]] = {}
    for seed in seeds:
        d = root / f"{label}-seed{seed}"
        t0 = time.perf_counter()
        if not (d / "compare.json").exists():
            prepare_compare(get_recipe(recipe), overrides={**setting, "seed": seed}, out=d)
        result = run_compare(d, isolate=False)
        rows_by_seed[seed] = {r["method"]: {**r["metrics"], "train_seconds": r.get("train_seconds", float("nan"))}
                              for r in result["rows"]}
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; " + ", ".join(
            f"{k} {v.get(primary, float('nan')):.4f}" for k, v in rows_by_seed[seed].items()), flush=True)
    return rows_by_seed


def write_table(out: Path, lines: list[str]) -> None:
    """Write the markdown ``lines`` to ``out`` and print them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

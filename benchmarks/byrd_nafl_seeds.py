"""Byrd-NAFL's claim (faster convergence than Byzantine-robust SGD at equal robustness) over several seeds.

Runs ``compare byrd-nafl`` (quick grid unless --no-quick) once per seed and reports, per (aggregator, attack),
the mean ± std over seeds of the rounds to the target accuracy and of the final accuracy for NAFL, robust SGD and
heavy-ball. Raw results: ``.bench/byrd-nafl/``.

    python benchmarks/byrd_nafl_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")

from polymodal.core.config import parse_overrides  # noqa: E402
from polymodal.core.execute import prepare_compare, run_compare  # noqa: E402
from polymodal.core.registry import get_recipe  # noqa: E402
from polymodal.federated.recipes import rounds_to  # noqa: E402

ROOT = Path(".bench/byrd-nafl")
OPTIMIZERS = ("nafl", "sgd", "heavy-ball")


def _fmt(values: list, digits: int = 1) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "never"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    tail = "" if len(vals) == len(values) else f" ({len(values) - len(vals)} never)"
    return f"{statistics.fmean(vals):.{digits}f} ± {sd:.{digits}f}{tail}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-quick", action="store_true")
    ap.add_argument("--label", default="digits")
    args = ap.parse_args()
    overrides = parse_overrides(args.overrides)
    curves_by_seed = {}
    for seed in args.seeds:
        d = ROOT / f"{args.label}-seed{seed}"
        t0 = time.perf_counter()
        if not (d / "compare.json").exists():
            prepare_compare(get_recipe("byrd-nafl"), overrides={**overrides, "seed": seed}, quick=not args.no_quick,
                            out=d)
        run_compare(d)
        curves = {}
        for sub in d.iterdir():
            if (sub / "result.json").is_file():
                curves.update(json.loads((sub / "result.json").read_text())["extra"].get("curves", {}))
        curves_by_seed[seed] = curves
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    cells = sorted({tuple(n.split("/")[1:]) for c in curves_by_seed.values() for n in c if n.startswith("nafl/")
                    and "/mean/" not in n})
    (ROOT / f"summary-{args.label}.json").write_text(json.dumps(curves_by_seed))
    print(f"\n### Byrd-NAFL grid, seeds {args.seeds}: rounds to target (mean ± std) and final accuracy\n")
    print("| aggregator | attack | " + " | ".join(f"rounds {o}" for o in OPTIMIZERS) + " | "
          + " | ".join(f"final acc {o}" for o in OPTIMIZERS) + " |")
    print("|---" * (2 + 2 * len(OPTIMIZERS)) + "|")
    faster = total = 0
    for agg, attack in cells:
        rounds, finals = {}, {}
        for o in OPTIMIZERS:
            rounds[o], finals[o] = [], []
            for curves in curves_by_seed.values():
                target = 0.9 * max(a for _, a in curves["fedavg/mean/none"])
                c = curves.get(f"{o}/{agg}/{attack}")
                rounds[o].append(rounds_to(c, target) if c else None)
                finals[o].append(c[-1][1] if c else None)
        for rn, rs in zip(rounds["nafl"], rounds["sgd"], strict=True):
            total += 1
            faster += int(rn is not None and (rs is None or rn < rs))
        print(f"| {agg} | {attack} | " + " | ".join(_fmt(rounds[o]) for o in OPTIMIZERS) + " | "
              + " | ".join(_fmt(finals[o], 3) for o in OPTIMIZERS) + " |")
    print(f"\nNAFL reached the target in fewer rounds than robust SGD in {faster} of {total} (cell, seed) pairs.")


if __name__ == "__main__":
    main()

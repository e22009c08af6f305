"""SG-URInit's claims (higher accuracy, up to 30% fewer epochs) measured over several seeds.

For each data setting and seed: ``compare sg-urinit`` (every backbone with random init and with SG-URInit, one
subprocess per method), then mean and spread over seeds of the NDCG@20 gain, the epochs to the best validation
score, the epochs to reach 95% of the random init's best, and cold-item NDCG@20. Writes
``.bench/sg-urinit/summary.json`` and prints markdown tables for docs/benchmarks.md.

    python benchmarks/sg_urinit_seeds.py                         # synthetic (quick budget), seeds 0 1 2
    python benchmarks/sg_urinit_seeds.py --data ml-100k-side --seeds 0 1 2 --set epochs=100 --set lr=1e-3
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
from polymodal.recsys.mm_recipes import suite_rows  # noqa: E402

ROOT = Path(".bench/sg-urinit")


def _fmt(values: list[float], digits: int = 4) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "—"
    mean = statistics.fmean(vals)
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{mean:.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="None: synthetic multimodal; or ml-100k-side, or an MMRec folder")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-quick", action="store_true", help="full budget instead of the quick setting")
    ap.add_argument("--label", help="name of this setting's folders under .bench/sg-urinit (default: the data)")
    args = ap.parse_args()
    recipe = get_recipe("sg-urinit")
    label = args.label or args.data or "synthetic"
    overrides = parse_overrides(args.overrides)
    per_seed = {}
    for seed in args.seeds:
        d = ROOT / f"{label}-seed{seed}"
        t0 = time.perf_counter()
        if (d / "compare.json").exists():
            result = run_compare(d)  # resumes; finished methods are kept
        else:
            prepare_compare(recipe, overrides={**overrides, "seed": seed}, data=args.data,
                            quick=not args.no_quick, out=d)
            result = run_compare(d)
        spec = json.loads((d / "compare.json").read_text())
        rows = suite_rows(result, {n: d / n for n in spec["methods"]})
        per_seed[seed] = [{k: v for k, v in r.items() if not k.startswith("curve")} for r in rows]
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)
    backbones = [r["backbone"] for r in next(iter(per_seed.values()))]
    summary = {"data": label, "seeds": args.seeds, "overrides": overrides, "per_seed": per_seed}
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / f"summary-{label}.json").write_text(json.dumps(summary, indent=2))

    def col(b: str, key: str) -> list:
        return [next(r[key] for r in rows if r["backbone"] == b) for rows in per_seed.values()]

    print(f"\n### {label}: mean ± std over seeds {args.seeds}\n")
    print("| backbone | N@20 random | N@20 SG-URInit | gain % | best epoch random | best epoch SG | "
          "epochs to 95% random | epochs to 95% SG | cold N@20 random | cold N@20 SG |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for b in backbones:
        print(f"| {b} | {_fmt(col(b, 'ndcg@20'))} | {_fmt(col(b, 'ndcg@20_sg'))} | {_fmt(col(b, 'gain_pct'), 1)} | "
              f"{_fmt(col(b, 'best_epoch'), 1)} | {_fmt(col(b, 'best_epoch_sg'), 1)} | "
              f"{_fmt(col(b, 'epochs_to_95'), 1)} | {_fmt(col(b, 'epochs_to_95_sg'), 1)} | "
              f"{_fmt(col(b, 'cold_ndcg@20'))} | {_fmt(col(b, 'cold_ndcg@20_sg'))} |")
    wins = sum(1 for b in backbones for g in col(b, "gain_pct") if g is not None and g > 0)
    total = sum(1 for b in backbones for g in col(b, "gain_pct") if g is not None)
    print(f"\nSG-URInit better on test NDCG@20 in {wins} of {total} (backbone, seed) pairs.")


if __name__ == "__main__":
    main()

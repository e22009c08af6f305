"""FedPall vs its baselines over several seeds on the 5-domain digits feature-drift benchmark.

Runs the ``fedpall`` recipe (every row: fedpall, fedavg, fedprox, fedbn, fedproto, local) once per seed, in
process and resumably (``.bench/fedpall/<label>-seed<k>/``), then prints the mean ± std over seeds of the
mean-over-domains accuracy (last round and best round - the best round is selected on the test set, as the
paper does) and of every domain's last-round accuracy, as markdown tables.

    python benchmarks/fedpall_seeds.py --seeds 0 1 2                 # the settings below (BENCH)
    python benchmarks/fedpall_seeds.py --quick --label quick         # the recipe's --quick settings
    python benchmarks/fedpall_seeds.py --set rounds=100 --set train_frac=0.1 --label paper-shaped
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")

import torch  # noqa: E402

from polymodal.core.config import build_config, config_to_dict, parse_overrides  # noqa: E402
from polymodal.core.runs import Run  # noqa: E402
from polymodal.core.runtime import seed_everything  # noqa: E402
from polymodal.federated.fedpall_recipe import QUICK, FedPallConfig, run_fedpall  # noqa: E402

ROOT = Path(".bench/fedpall")
#: the CPU-sized setting of the seed study (one core, about 4 minutes per seed)
BENCH = {**QUICK, "rounds": 20, "local_epochs": 3, "train_per_client": 150}


def _fmt(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def run_seed(settings: dict, seed: int, label: str) -> tuple[dict[str, dict[str, float]], float]:
    cfg = build_config(FedPallConfig, {**settings, "seed": seed}, where="fedpall_seeds")
    d = ROOT / f"{label}-seed{seed}"
    run = Run.open(d) if (d / "run.json").exists() else Run.create(d, "fedpall", config_to_dict(cfg))
    seed_everything(seed)
    result = run_fedpall(cfg, run)
    done = json.loads((d / "methods.json").read_text())  # training seconds, also of rows finished earlier
    return result.rows, sum(v["seconds"] for v in done.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--quick", action="store_true", help="start from the recipe's quick settings, not BENCH")
    ap.add_argument("--label", default="bench")
    args = ap.parse_args()
    torch.set_num_threads(1)
    settings = {**(QUICK if args.quick else BENCH), **parse_overrides(args.overrides)}
    rows_by_seed: dict[int, dict[str, dict[str, float]]] = {}
    total = 0.0
    for seed in args.seeds:
        rows_by_seed[seed], seconds = run_seed(settings, seed, args.label)
        total += seconds
        print(f"seed {seed}: {seconds:.0f} s of training", flush=True)
    ROOT.mkdir(parents=True, exist_ok=True)
    (ROOT / f"summary-{args.label}.json").write_text(json.dumps({"settings": settings, "rows": rows_by_seed}))
    methods = list(next(iter(rows_by_seed.values())))
    domains = [k[4:] for k in next(iter(rows_by_seed.values()))[methods[0]] if k.startswith("acc/")]

    def vals(m: str, key: str) -> list[float]:
        return [rows[m][key] for rows in rows_by_seed.values()]

    print(f"\n### fedpall, seeds {args.seeds} (mean ± std over seeds); settings: "
          + ", ".join(f"{k}={v}" for k, v in settings.items()) + f"; {total / 60:.1f} min of training\n")
    print("| method | mean acc, last round | mean acc, best round (test-selected) | " + " | ".join(domains) + " |")
    print("|---" * (3 + len(domains)) + "|")
    for m in methods:
        print(f"| {m} | {_fmt(vals(m, 'accuracy'))} | {_fmt(vals(m, 'best_accuracy'))} | "
              + " | ".join(_fmt(vals(m, f"acc/{d}")) for d in domains) + " |")
    ranks = {m: 0 for m in methods}
    for rows in rows_by_seed.values():
        best = max(methods, key=lambda m: rows[m]["accuracy"])
        ranks[best] += 1
    print("\nBest last-round mean accuracy per seed: " + ", ".join(f"{m} {n}" for m, n in ranks.items() if n))
    if "fedpall" in methods:
        for base in (m for m in methods if m != "fedpall"):
            wins = sum(rows["fedpall"]["accuracy"] > rows[base]["accuracy"] for rows in rows_by_seed.values())
            diff = statistics.fmean(rows["fedpall"]["accuracy"] - rows[base]["accuracy"]
                                    for rows in rows_by_seed.values())
            print(f"- fedpall - {base}: {diff:+.3f} (last-round mean accuracy; fedpall higher in {wins} of "
                  f"{len(rows_by_seed)} seeds)")


if __name__ == "__main__":
    main()

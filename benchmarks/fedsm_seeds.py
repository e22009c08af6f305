"""FedSM vs FedAvg / CReFF-style CRT / FedProx / its ablations over seeds on a real long-tailed setting.

Runs the ``fedsm`` recipe (one compare per imbalance factor and seed, in-process, resumable) and writes a markdown
table of mean ± std over seeds per row: balanced accuracy at the last and the best round, many / medium / few
accuracy at the last round, and the CRT seconds. Raw results: ``.bench/fedsm/``.

Default setting (CPU budget: ~12 minutes on one core for 3 seeds x 2 imbalance factors): Fashion-MNIST, 1,000
training images per class before the long tail (exp profile), the official balanced 10,000-image test set, 20
clients (fedsm_dirichlet, alpha 0.5), 8 online per round, 60 rounds of 5 local epochs (lr 0.1, batch 32), CRT in
the last 20 rounds (evaluated every 5: 4 CRT rounds), M = 100 pseudo-features per class, 60 head epochs at lr
0.1, MLP 784-128-64-10, noisy-S robustness variants sigma 0.1 and 0.3.

    python benchmarks/fedsm_seeds.py --seeds 0 1 2 --imb 0.1 0.01
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import polymodal.federated.fedsm_recipe  # noqa: E402,F401  (registers the recipe)
from polymodal.core.execute import prepare_compare, run_compare  # noqa: E402
from polymodal.core.registry import get_recipe  # noqa: E402
from seed_tables import parse_seed_args, seed_parser, seed_table  # noqa: E402

ROOT = Path(".bench/fedsm")
SETTING = {"data": "fashion-mnist", "train_per_class": 1000, "n_clients": 20, "clients_per_round": 8, "alpha": 0.5,
           "rounds": 60, "crt_rounds": 20, "local_epochs": 5, "eval_every": 5, "crt_epochs": 60,
           "crt_feat_num": 100, "noise_sigmas": [0.1, 0.3], "threads": 1}
COLUMNS = (("accuracy", "acc (last)"), ("best_accuracy", "acc (best)"), ("many_accuracy", "many"),
           ("medium_accuracy", "medium"), ("few_accuracy", "few"), ("crt_seconds", "CRT s"))


def table(rows_by_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    return seed_table(rows_by_seed, COLUMNS, lambda k: 1 if k == "crt_seconds" else 4, first="method")


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "fmnist", ROOT / "table.md")
    ap.add_argument("--imb", type=float, nargs="+", default=[0.1, 0.01])
    args, setting = parse_seed_args(ap, SETTING)
    md = [f"Setting: {json.dumps(setting)}; seeds {args.seeds}.", ""]
    t_all = time.perf_counter()
    for imb in args.imb:
        rows_by_seed = {}
        for seed in args.seeds:
            d = ROOT / f"{args.label}-imb{imb:g}-seed{seed}"
            t0 = time.perf_counter()
            if not (d / "compare.json").exists():
                prepare_compare(get_recipe("fedsm"), overrides={**setting, "imb_factor": imb, "seed": seed}, out=d)
            result = run_compare(d, isolate=False)
            rows_by_seed[seed] = {r["method"]: r["metrics"] for r in result["rows"]}
            print(f"imb {imb:g} seed {seed}: {time.perf_counter() - t0:.0f} s; fedsm "
                  f"{rows_by_seed[seed]['fedsm']['accuracy']:.4f}, fedavg {rows_by_seed[seed]['fedavg']['accuracy']:.4f}",
                  flush=True)
        md += [f"### imb_factor {imb:g} (ratio {1 / imb:g})", "", table(rows_by_seed), ""]
    md.append(f"Wall time: {time.perf_counter() - t_all:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

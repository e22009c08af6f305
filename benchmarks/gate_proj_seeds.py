"""gate_proj module study over seeds: does gate_proj rank first? (spec 3.4: 3 seeds, mean ± std).

Runs the ``gate-proj`` recipe once per seed (in-process, resumable: finished LoRAs are checkpointed) and writes a
markdown table of mean ± std per row (accuracy, % of the all-linear reference, parameter share, relative weight
change, transfer %, reset-ablation drop) plus how often gate_proj ranked first on each criterion.
Raw results: ``.bench/gate_proj/``.

Default setting = the recipe's ``--quick`` protocol (``module_study_recipe.QUICK``): SmolLM2-135M, one task
(3-way sentiment, 240 train / 120 test sentences), 24 LoRA steps of batch 4 at lr 3e-3, 5-step warm-up + linear decay,
reset ablation; about 3-4 minutes per seed on one core. Shrink with ``--set`` (e.g. ``--set n_test=90``). For the
spec protocol pass ``--set steps=300 --set lr=2e-4 --set batch_size=8 --set warmup_steps=0 --set n_train=2000
--set n_test=400`` and the four tasks (hours on a CPU; minutes on a GPU).

    python benchmarks/gate_proj_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import polymodal.llm.module_study_recipe  # noqa: E402,F401  (registers the recipe)
from polymodal.core.execute import prepare_compare, run_compare  # noqa: E402
from polymodal.core.registry import get_recipe  # noqa: E402
from polymodal.llm.module_study_recipe import QUICK  # noqa: E402
from seed_tables import parse_seed_args, seed_parser, seed_table  # noqa: E402

ROOT = Path(".bench/gate_proj")
SETTING = {k: list(v) if isinstance(v, tuple) else v for k, v in QUICK.items()}
COLUMNS = (("accuracy", "accuracy"), ("pct_of_reference", "% of ref"), ("param_share", "% params"),
           ("rel_delta_norm", "‖ΔW‖/‖W‖"), ("transfer_pct", "transfer % ref"),
           ("ablation_drop_reset", "reset drop"))


def table(rows_by_seed: dict[int, dict[str, dict[str, float]]]) -> str:
    return seed_table(rows_by_seed, COLUMNS, lambda k: 5 if k == "rel_delta_norm" else 1 if k in ("pct_of_reference", "param_share", "transfer_pct") else 4, first="row")


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "quick-v3", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    md = [f"Setting: {json.dumps(setting)}; seeds {args.seeds}.", ""]
    t_all = time.perf_counter()
    rows_by_seed, ranks = {}, {}
    for seed in args.seeds:
        d = ROOT / f"{args.label}-seed{seed}"
        t0 = time.perf_counter()
        if not (d / "compare.json").exists():
            prepare_compare(get_recipe("gate-proj"), overrides={**setting, "seed": seed}, out=d)
        result = run_compare(d, isolate=False)
        rows_by_seed[seed] = {r["method"]: r["metrics"] for r in result["rows"]}
        extra = json.loads((d / "gate-proj" / "result.json").read_text())["extra"]
        ranks[seed] = extra["gate_proj_rank"]
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; gate_proj ranks {ranks[seed]}", flush=True)
    md += [table(rows_by_seed), "", "Rank of gate_proj among the 7 module types per seed:", ""]
    md += [f"- seed {s}: " + "; ".join(f"{k} {v}" for k, v in r.items()) for s, r in ranks.items()]
    md += ["", f"Wall time: {time.perf_counter() - t_all:.0f} s."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

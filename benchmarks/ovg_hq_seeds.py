"""OVG-HQ vs LSTM / attention / no memory, no refinement, no distillation and the hybrid expert over seeds.

Runs the ``ovg-hq`` recipe (one compare per seed, in-process, resumable: each finished row is checkpointed and each
finished seed keeps its ``result.json`` under ``.bench/ovg_hq/``) and writes markdown tables of mean ± std over
seeds per row, by query modality (text, image, segment, hybrid): oR@1 at IoU 0.5 and omAP (IoU 0.5:0.95), "pos"
timeliness weight averaged over L = 1, 3, 5 s (x100); then the paired differences ``ovg-hq - row`` of oR@1 IoU 0.5
per modality with the number of seeds on which ``ovg-hq`` is strictly better (the text column is the primary metric).

Default setting = the recipe's ``--quick`` setting (240 training queries, 256-d hashed-word features, width 64,
3 epochs, expert 2) with 200 validation queries instead of 120 (one query = 0.5 points instead of 0.83; evaluation
costs ~0.1 CPU-s per query and TTT row over the 4 modalities, so +80 queries add ~35 CPU-s to the ~3 CPU-minutes of
a seed) and no streaming-latency timing (meaningless on a loaded machine). CPU budget: ~3.5 CPU-minutes per seed on
one thread. Change it with ``--set``, e.g. ``--set n_valid=400 --set epochs=6``.

    python benchmarks/ovg_hq_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import polymodal.video.grounding.recipe as ovg_recipe  # noqa: E402  (registers the recipe)
from polymodal.core.execute import prepare_compare, run_compare  # noqa: E402
from polymodal.core.registry import get_recipe  # noqa: E402
from seed_tables import mean_std, parse_seed_args, seed_parser, seed_table, setting_line  # noqa: E402

ROOT = Path(".bench/ovg_hq")
SETTING = {**ovg_recipe.QUICK, "n_valid": 200, "latency_steps": 0}
MODALITIES = ("text", "image", "segment", "hybrid")
PRIMARY = "On-Avg-R1@0.5_pos"


def key(modality: str, metric: str) -> str:
    return metric if modality == "text" else f"{modality}/{metric}"


COLUMNS = tuple(c for m in MODALITIES for c in ((key(m, PRIMARY), f"{m} oR@1 0.5"),
                                                 (key(m, "On-Avg-mAP@Avg_pos"), f"{m} omAP")))


def diff_table(rows_by_seed: dict[int, dict[str, dict[str, float]]], ref: str = "ovg-hq") -> str:
    """``ref - row`` of oR@1 IoU 0.5 per modality (mean ± std of the paired differences) and the seeds on which
    ``ref`` is strictly better ("wins"); the text column is the recipe's primary metric."""
    names = [n for n in next(iter(rows_by_seed.values())) if n != ref]
    out = ["| row | " + " | ".join(f"{m}: {ref} − row (wins)" for m in MODALITIES) + " |",
           "|---" * (len(MODALITIES) + 1) + "|"]
    for name in names:
        cells = []
        for m in MODALITIES:
            k = key(m, PRIMARY)
            d = [rows[ref][k] - rows[name][k] for rows in rows_by_seed.values() if name in rows and ref in rows]
            wins = sum(x > 0 for x in d)
            cells.append(f"{mean_std(d, 2)} ({wins}/{len(d)})")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "quick", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    md = [setting_line(setting, args.seeds), ""]
    t_all = time.perf_counter()
    rows_by_seed: dict[int, dict[str, dict[str, float]]] = {}
    timings = {}
    for seed in args.seeds:
        d = ROOT / f"{args.label}-seed{seed}"
        t0, c0 = time.perf_counter(), time.process_time()
        fresh = not (d / "result.json").exists()
        if not (d / "compare.json").exists():
            prepare_compare(get_recipe("ovg-hq"), overrides={**setting, "seed": seed}, out=d)
        result = run_compare(d, isolate=False)
        rows_by_seed[seed] = {r["method"]: r["metrics"] for r in result["rows"]}
        tfile = d / "timing.json"
        if fresh and not tfile.exists():  # a resumed seed's timing is partial: keep the first complete one only
            tfile.write_text(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
                                         "load_avg": os.getloadavg()}))
        timings[seed] = json.loads(tfile.read_text()) if tfile.exists() else {}
        r = rows_by_seed[seed]
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU; text oR@1 "
              + ", ".join(f"{k} {v[PRIMARY]:.2f}" for k, v in r.items()), flush=True)
    md += ["oR@1 at IoU 0.5 and omAP (IoU 0.5:0.95), 'pos' weight averaged over L = 1, 3, 5 s (x100), mean ± std "
           "over seeds:", "", seed_table(rows_by_seed, COLUMNS, lambda k: 2), "",
           "Paired differences of oR@1 IoU 0.5 (ovg-hq minus the row, same seed; wins = seeds with ovg-hq strictly "
           "better; text = the primary metric):", "", diff_table(rows_by_seed), ""]
    per_seed = [f"seed {s}: {t['wall_s']:.0f} s wall / {t['cpu_s']:.0f} s CPU (load avg {t['load_avg'][0]:.1f})"
                for s, t in timings.items() if t]
    if per_seed:
        md.append("Per seed (one torch thread, 2 shared cores loaded by other jobs): " + "; ".join(per_seed) + ".")
        md.append(f"Mean CPU per seed: {statistics.fmean(t['cpu_s'] for t in timings.values() if t):.0f} s.")
    md.append(f"Wall time of this invocation: {time.perf_counter() - t_all:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

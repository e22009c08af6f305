"""The survey's four paradigms (skeleton-emotion rows) over seeds: mean ± std accuracy, macro-F1, parameters.

Runs the ``skeleton-emotion`` recipe (one compare per seed, in-process, resumable) on the synthetic gaits and
writes a markdown table of mean ± std over seeds per row. Each seed draws a new synthetic data set (new walkers)
and a new split. Raw results: ``.bench/skeleton_emotion/``.

Default setting (CPU budget: ~5 minutes on one core for 3 seeds): the ``--quick`` protocol (400 gaits, one
stratified 80/20 split, 30 epochs, ST-GCN widths 16-32-64); ``--set folds=5 --set epochs=40`` gives the full
5-fold protocol (~10x longer).

    python benchmarks/skeleton_emotion_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")


import polymodal.affect.skeleton.recipe  # noqa: E402,F401  (registers the recipe)
from seed_tables import parse_seed_args, run_recipe_seeds, seed_parser, seed_table, write_table  # noqa: E402

ROOT = Path(".bench/skeleton_emotion")
SETTING = {"folds": 1, "epochs": 30, "gcn_channels": [16, 32, 64], "rf_trees": 200, "threads": 1}
COLUMNS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("params", "parameters"))


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "synthetic", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    t_all = time.perf_counter()
    rows_by_seed = run_recipe_seeds("skeleton-emotion", setting, args.seeds, ROOT, args.label, primary="accuracy")
    md = [f"Setting: {json.dumps(setting)}; seeds {args.seeds}; synthetic gaits (400, 4 emotions, chance 0.25).", "",
          seed_table(rows_by_seed, COLUMNS, lambda k: 0 if k == "params" else 4, first="paradigm"), "",
          f"Wall time: {time.perf_counter() - t_all:.0f} s."]
    write_table(args.out, md)


if __name__ == "__main__":
    main()

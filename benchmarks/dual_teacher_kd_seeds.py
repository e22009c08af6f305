"""Dual-Teacher KD vs single-teacher KD, averaged teachers and no KD over seeds (spec video.md 1.5).

Runs the ``dual-teacher-kd`` recipe (one compare per seed, in-process, resumable) and writes a markdown table of
mean ± std over seeds of top-1 / top-5 per row (every student row and both teachers). Raw results:
``.bench/dual-teacher-kd/``. The question: dual > single-teacher KD > no KD, and can the student beat the teachers?

Default setting (CPU budget: the ``--quick`` data and schedule, about 7-9 minutes per seed on one loaded core):
400 "easy" synthetic moving-shapes clips (10 classes, 8 frames of 24x24, 240 train / 160 test), the teachers trained
on 600 extra clips (CNN 8 epochs, ViT 15 epochs with warm-up + cosine), 30 student epochs (cosine), batch 16, plus
the ``datw-only`` and ``fitnets`` rows. Heavier: ``--set n_per_class=80 --set size=32 --set epochs=40`` (slower).

    python benchmarks/dual_teacher_kd_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")


import polymodal.video.kd_recipe  # noqa: E402,F401  (registers the recipe)
from seed_tables import parse_seed_args, run_recipe_seeds, seed_parser, seed_table, write_table  # noqa: E402

ROOT = Path(".bench/dual-teacher-kd")
SETTING = {"n_per_class": 40, "test_fraction": 0.4, "frames": 8, "size": 24, "nuisance": "easy",
           "teacher_extra_per_class": 60, "epochs": 30, "teacher_epochs": 8, "vit_epochs": 15, "batch_size": 16,
           "threads": 1,
           "methods": ["dual-teacher-kd", "student-alone", "kd-cnn", "kd-vit", "kd-avg", "datw-only", "fitnets",
                       "teacher-cnn", "teacher-vit"]}
COLUMNS = (("top1", "top-1"), ("top5", "top-5"))


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "easy24", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    t_all = time.perf_counter()
    rows_by_seed = run_recipe_seeds("dual-teacher-kd", setting, args.seeds, ROOT, args.label, primary="top1")
    md = [f"Setting: {json.dumps(setting)}; seeds {args.seeds}.", "",
          seed_table(rows_by_seed, COLUMNS, lambda k: 3, first="row"), ""]
    students = [k for k in next(iter(rows_by_seed.values())) if not k.startswith("teacher")]
    wins = {k: sum(rows["dual-teacher-kd"]["top1"] > rows[k]["top1"] for rows in rows_by_seed.values())
            for k in students if k != "dual-teacher-kd" and all(k in rows for rows in rows_by_seed.values())}
    if "dual-teacher-kd" in students:
        md += ["dual-teacher-kd beats (seeds out of " + str(len(rows_by_seed)) + "): "
               + ", ".join(f"{k} {v}" for k, v in wins.items()) + ".", ""]
    md.append(f"Wall time: {time.perf_counter() - t_all:.0f} s.")
    write_table(args.out, md)


if __name__ == "__main__":
    main()

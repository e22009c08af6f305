"""Audio-Assisted TTA vs TENT / ViTTA / the source model per corruption over seeds (issue 8, docs/benchmarks.md).

Runs the ``audio-tta`` recipe (one compare per seed, in-process, resumable per (row, corruption) cell) and writes
markdown tables of mean ± std over seeds: the mean top-1 over the 12 UCF101-C corruption types at severity 5 with
the adaptation statistics, and top-1 per corruption. Raw results: ``.bench/audio_tta/``.

Default setting: the ``--quick`` data and models (600 "easy" synthetic clips, 450 for training, TinyX3D-student
source model at 32 px, 25 epochs cosine from lr 3e-3, audio CNN 3 epochs) with 30 test clips streamed per corruption
and all six rows (CPU budget: about 5 minutes per seed on one loaded core). ``--set n_per_class=80 --set epochs=15
--set test_per_corruption=null`` is the recipe's default setting (larger, slower).

    python benchmarks/audio_tta_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import polymodal.video.tta_recipe  # noqa: E402,F401  (registers the recipe)
from polymodal.video.corruptions import VIDEO_CORRUPTIONS_UCF101C  # noqa: E402
from seed_tables import parse_seed_args, run_recipe_seeds, seed_parser, seed_table, write_table  # noqa: E402

ROOT = Path(".bench/audio_tta")
SETTING = {"n_per_class": 60, "size": 32, "nuisance": "easy", "epochs": 25, "lr": 3e-3, "audio_epochs": 3,
           "test_per_corruption": 30,
           "methods": ["audio-tta", "source", "tent", "vitta", "audio-pl-fixed1", "audio-pl-fixedk"], "threads": 1}
SUMMARY = (("top1", "mean top-1"), ("steps_mean", "steps/clip"), ("pl_accept_rate", "audio PL accepted"),
           ("pl_used_rate", "adapted"), ("pl_accuracy", "PL accuracy"), ("seconds_per_video", "s/video"))
SHORT = {"gaussian_noise": "gauss", "shot_noise": "shot", "impulse_noise": "impulse", "zoom_blur": "zoom",
         "defocus_blur": "defocus", "motion_blur": "motion"}


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "easy30", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    t_all = time.perf_counter()
    rows_by_seed = run_recipe_seeds("audio-tta", setting, args.seeds, ROOT, args.label, primary="top1")
    per_corr = tuple((f"top1_{c}", SHORT.get(c, c)) for c in VIDEO_CORRUPTIONS_UCF101C)
    md = [f"Setting: {json.dumps(setting)}; seeds {args.seeds}; severity 5, online, audio clean.", "",
          seed_table(rows_by_seed, SUMMARY, lambda k: 2 if k == "steps_mean" else 3), "",
          "Top-1 per corruption:", "", seed_table(rows_by_seed, per_corr, lambda k: 2), "",
          f"Wall time: {time.perf_counter() - t_all:.0f} s."]
    write_table(args.out, md)


if __name__ == "__main__":
    main()

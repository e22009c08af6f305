"""MGHFT vs PVT visual-only / PVT late fusion / text-only on synthetic stickers over seeds (mean ± std).

Runs the ``mghft`` recipe (one compare per seed, in-process, resumable) and writes a markdown table of mean ± std
over seeds per row: accuracy, macro F1, weighted F1 and training seconds. Raw results: ``.bench/mghft/``.

Default setting = the recipe's ``--quick`` setting (CPU budget: ~5 minutes per seed on one loaded core): 700
synthetic stickers (560 train / 140 test, 30 % text label noise), 96 px, 6 epochs, embed_dim 128, frozen MiniLM
view embeddings (LayerNorm'd before ``l_proj``; ``--set text_norm=false`` gives the raw, ~10x weaker text scale of the
first version). Add rows or epochs with ``--set``, e.g. ``--set epochs=10 --set methods=[mghft,mghft-no-tgfa]``.

    python benchmarks/mghft_seeds.py --seeds 0 1 2
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


import polymodal.affect.stickers.recipe as mghft_recipe  # noqa: E402  (registers the recipe)
from seed_tables import parse_seed_args, run_recipe_seeds, seed_parser, seed_table, setting_line, write_table  # noqa: E402

ROOT = Path(".bench/mghft")
SETTING = dict(mghft_recipe.QUICK)
COLUMNS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"),
           ("train_seconds", "train s"))


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "quick", ROOT / "table.md")
    args, setting = parse_seed_args(ap, SETTING)
    md = [setting_line(setting, args.seeds), ""]
    t_all = time.perf_counter()
    rows_by_seed = run_recipe_seeds("mghft", setting, args.seeds, ROOT, args.label, primary="accuracy")
    md += [seed_table(rows_by_seed, COLUMNS, lambda k: 1 if k == "train_seconds" else 4), "",
           f"Wall time: {time.perf_counter() - t_all:.0f} s (2 shared CPU cores, loaded by other jobs)."]
    write_table(args.out, md)


if __name__ == "__main__":
    main()

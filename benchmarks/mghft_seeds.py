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

import json
import os
import time
from pathlib import Path

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import polymodal.affect.stickers.recipe as mghft_recipe  # noqa: E402  (registers the recipe)
from polymodal.core.config import parse_overrides  # noqa: E402
from polymodal.core.execute import prepare_compare, run_compare  # noqa: E402
from polymodal.core.registry import get_recipe  # noqa: E402
from seed_tables import seed_parser, seed_table  # noqa: E402

ROOT = Path(".bench/mghft")
SETTING = dict(mghft_recipe.QUICK)
COLUMNS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1"),
           ("train_seconds", "train s"))


def main() -> None:
    ap = seed_parser(__doc__.splitlines()[0], "quick", ROOT / "table.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    setting = {**SETTING, **parse_overrides(args.overrides)}
    md = [f"Setting: {json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in setting.items()})}; "
          f"seeds {args.seeds}.", ""]
    t_all = time.perf_counter()
    rows_by_seed = {}
    for seed in args.seeds:
        d = ROOT / f"{args.label}-seed{seed}"
        t0 = time.perf_counter()
        if not (d / "compare.json").exists():
            prepare_compare(get_recipe("mghft"), overrides={**setting, "seed": seed}, out=d)
        result = run_compare(d, isolate=False)
        rows_by_seed[seed] = {r["method"]: {**r["metrics"], "train_seconds": r.get("train_seconds", float("nan"))}
                              for r in result["rows"]}
        print(f"seed {seed}: {time.perf_counter() - t0:.0f} s; " + ", ".join(
            f"{k} {v['accuracy']:.4f}" for k, v in rows_by_seed[seed].items()), flush=True)
    md += [seed_table(rows_by_seed, COLUMNS, lambda k: 1 if k == "train_seconds" else 4), "",
           f"Wall time: {time.perf_counter() - t_all:.0f} s (2 shared CPU cores, loaded by other jobs)."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()

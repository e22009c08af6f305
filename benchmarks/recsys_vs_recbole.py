"""RecBole 1.2.1's LightGCN versus polymodal's on ml-100k, same settings, side by side in one run.

Both sides train LightGCN (d=64, L=2, reg 1e-4, Adam, batch 2048, lr 1e-3, one uniform negative per
positive, RecBole's RS 8:1:1 per-user split, full-ranking evaluation) for a fixed number of epochs with
no early stopping, on the same number of CPU threads, one after the other (never concurrently), and
report: median training seconds per epoch (evaluation excluded), the ratio, peak RSS and test
Recall@20 / NDCG@20 of the best-validation epoch.

RecBole needs numpy<1.24 and scipy<1.12, so it runs in its own venv made by
``benchmarks/recbole_side/setup_venv.sh`` (about a minute the first time; ``.bench/`` is git-ignored).
ml-100k comes from the recbole==1.2.1 wheel (``polymodal data fetch ml-100k-recbole``); it is never
committed.

    .venv/bin/python benchmarks/recsys_vs_recbole.py [--epochs 100] [--threads 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECBOLE_VENV = ROOT / ".bench" / "recbole-venv"


def ml100k_folder() -> Path:
    """A folder holding ml-100k.inter (RecBole's copy), fetched from PyPI into the cache if needed."""
    from polymodal.core.datasets import fetch_dataset
    from polymodal.recsys.datasets import find_recbole_ml100k

    found = find_recbole_ml100k()
    return found if found is not None else fetch_dataset("ml-100k-recbole") / "ml-100k"


def run_recbole(data: Path, args: argparse.Namespace, out: Path) -> dict:
    subprocess.run(["bash", str(ROOT / "benchmarks" / "recbole_side" / "setup_venv.sh"), str(RECBOLE_VENV)],
                   check=True)
    cmd = [str(RECBOLE_VENV / "bin" / "python"), str(ROOT / "benchmarks" / "recbole_side" / "run_recbole_lightgcn.py"),
           "--data-dir", str(data.parent), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
           "--lr", str(args.lr), "--threads", str(args.threads), "--seed", str(args.seed), "--out", str(out)]
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
    return json.loads(out.read_text())


def run_ours(data: Path, args: argparse.Namespace, run_dir: Path) -> dict:
    sets = {"epochs": args.epochs, "warm_up_epochs": args.epochs, "patience": args.epochs, "batch_size": args.batch_size,
            "lr": args.lr, "threads": args.threads, "seed": args.seed, "n_layers": 2, "reg_weight": 1e-4}
    cmd = [sys.executable, "-m", "polymodal.cli", "run", "lightgcn", "--data", str(data), "--out", str(run_dir)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads), POLYMODAL_PROGRESS="0"))
    result = json.loads((run_dir / "result.json").read_text())
    epochs = [json.loads(line)["epoch_seconds"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    row = result["rows"][0]
    return {"epoch_train_seconds": epochs, "peak_rss_mb": row["peak_rss_mb"], "test": row["metrics"],
            "n_train_interactions": result["extra"]["data"]["train"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", type=Path, default=ROOT / ".bench" / "recsys_vs_recbole")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = ml100k_folder()
    ours = run_ours(data, args, args.out / "polymodal-run")
    theirs = run_recbole(data, args, args.out / "recbole.json")
    med_ours = statistics.median(ours["epoch_train_seconds"])
    med_theirs = statistics.median(theirs["epoch_train_seconds"])
    rows = [
        ("RecBole 1.2.1 LightGCN", med_theirs, theirs["peak_rss_mb"], theirs["test"]["recall@20"],
         theirs["test"]["ndcg@20"], theirs["n_train_interactions"]),
        ("polymodal LightGCN", med_ours, ours["peak_rss_mb"], ours["test"]["recall@20"], ours["test"]["ndcg@20"],
         ours["n_train_interactions"]),
    ]
    lines = [f"ml-100k, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, {args.threads} threads, "
             f"seed {args.seed}", "",
             "| implementation | median s/epoch (train) | peak RSS MB | test Recall@20 | test NDCG@20 | train rows |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s:.3f} | {m:.0f} | {r:.4f} | {g:.4f} | {t} |" for n, s, m, r, g, t in rows]
    lines += ["", f"speed-up per epoch: {med_theirs / med_ours:.1f}x; memory ratio (RecBole/ours): "
                  f"{theirs['peak_rss_mb'] / ours['peak_rss_mb']:.2f}"]
    text = "\n".join(lines)
    print(text)
    summary = {"settings": vars(args) | {"out": str(args.out)}, "recbole": theirs, "polymodal": ours,
               "speedup_per_epoch": med_theirs / med_ours, "markdown": text}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real-data check of the sensing family on sktime's BasicMotions (spec 7-8): wrist smartwatch, 10 Hz, 4 classes.

Trains the random forest (tool features at fs=10) and the 1D-CNN (raw acc+gyro) of ``polymodal.sensing.baselines``
on TRAIN (40 series) and scores them on TEST (40) over ``--seeds``; runs SensingAgents with the deterministic rule
backend and the wrist analyst alone (it has no ``badminton`` label: ceiling 0.75); prints what the signal tools
measure per class at 10 Hz (and at a wrong 50 Hz, to show the sample rate is honoured), the agents' confusions and
the metric table (markdown, also written to ``--out``). Needs the data files only: ``pip install --no-deps
sktime==1.2.0`` (sktime is never imported).

    .venv/bin/python benchmarks/sensing_basicmotions.py --out runs/sensing_basicmotions.md
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from polymodal.core.report import markdown_table
from polymodal.sensing.basicmotions import CHECK_ROWS, basicmotions_check, load_basicmotions, tool_summary


def mean_std(values: list[float], digits: int = 3) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--cnn-epochs", type=int, default=60)
    ap.add_argument("--rf-trees", type=int, default=100)
    ap.add_argument("--root", default=None, help="folder with BasicMotions_{TRAIN,TEST}.ts (default: sktime's copy)")
    ap.add_argument("--out", type=Path, default=Path("runs/sensing_basicmotions.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    data = load_basicmotions(args.root)
    print(f"BasicMotions: train {data.X_train.shape}, test {data.X_test.shape}, classes {data.classes} "
          f"(from {data.raw_classes}), fs {data.fs} Hz, position {data.position}\n")
    parts: list[str] = []

    # what the tools measure (TRAIN medians per class), at the right and at a wrong sample rate
    keys = ("acc_mean", "acc_std", "f0_hz", "cadence_hz", "gyro_mean", "jerk", "q", "ok_share")
    for fs in (data.fs, 50.0):
        summ = tool_summary(dataclasses.replace(data, fs=fs))
        title = f"Signal tools on TRAIN, median per class, fs = {fs:g} Hz" + (" (wrong on purpose)" if fs != data.fs
                                                                                 else "")
        tab = markdown_table(["class", *keys], [[c, *(round(v[k], 3) for k in keys)] for c, v in summ.items()])
        parts.append(f"**{title}**\n\n{tab}")

    # metrics over seeds (the rule backend is deterministic: one seed)
    per_seed: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    for s in args.seeds:
        rows = [r for r in CHECK_ROWS if r != "sensing-agents-rules" or s == args.seeds[0]]
        res = basicmotions_check(data, rows, seed=s, rf_trees=args.rf_trees, cnn_epochs=args.cnn_epochs)
        for row, m in res.items():
            per_seed[row].append(m)
            print(f"seed {s} {row}: acc {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} ({m['seconds']:.1f} s)")
    table = markdown_table(
        ["row", "seeds", "accuracy", "macro-F1", "seconds (train + test)"],
        [[row, len(ms), mean_std([m["accuracy"] for m in ms]), mean_std([m["macro_f1"] for m in ms]),
          mean_std([m["seconds"] for m in ms], 1)] for row, ms in per_seed.items()])
    parts.append(f"**TRAIN → TEST (40 series each, chance 0.25)**\n\n{table}")

    # where the rule agents go wrong
    from polymodal.sensing.agents import RuleBasedLLM, SensingAgents

    agents = SensingAgents(llm=RuleBasedLLM(), positions=(data.position,), fs=data.fs)
    conf: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for w, y in zip(data.windows("test"), data.y_test, strict=True):
        conf[str(y)][agents.predict(w).label] += 1
    lines = [f"- {y}: " + ", ".join(f"{lab} {n}" for lab, n in c.most_common()) for y, c in conf.items()]
    parts.append("**SensingAgents (rule backend, wrist analyst) predictions on TEST, per true class**\n\n"
                 + "\n".join(lines))
    text = "\n\n".join(parts) + f"\n\nTotal wall time {time.perf_counter() - t_start:.0f} s.\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written {args.out}; labels present in TEST: {sorted(np.unique(data.y_test))}")


if __name__ == "__main__":
    main()

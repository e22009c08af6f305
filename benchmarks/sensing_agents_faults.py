"""Robustness of SensingAgents and its baselines under injected sensor faults (spec 4.4 robustness sweep).

Every fault kind at several severities, injected into ``--positions`` seeded positions of each evaluation window;
accuracy per (row, fault, severity). Default backend: the deterministic rule backend (`--backend rules`); pass
`--backend transformers` for the bundled SmolLM2 (slow: ~6 LLM calls per window).

    .venv/bin/python benchmarks/sensing_agents_faults.py --windows 21 --severities 1 3 5 --out runs/sensing_faults
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from polymodal.core.report import markdown_table
from polymodal.sensing import SensingAgents, SingleAgentHAR, corrupt, load_shoaib_2014, majority_vote
from polymodal.sensing.baselines import CNNHAR, RandomForestHAR
from polymodal.sensing.faults import FAULTS
from polymodal.sensing.recipe import stratified_indices
from polymodal.sensing.synthetic import make_shoaib_2014
from polymodal.sensing.windowing import make_windows

ROWS = ("sensing-agents", "single-agent", "majority-vote", "random-forest", "cnn-1d")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="rules", choices=("rules", "transformers"))
    ap.add_argument("--participants", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--windows", type=int, default=21)
    ap.add_argument("--severities", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--positions", type=int, default=2, help="positions corrupted per window")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cnn-epochs", type=int, default=30)
    ap.add_argument("--out", default="runs/sensing_faults")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        make_shoaib_2014(args.participants, args.seconds, args.seed, d)
        recs = load_shoaib_2014(d)
    ws = make_windows(recs)
    test_mask = ws.participant == recs[-1].participant
    train, test = ws.subset(np.flatnonzero(~test_mask)), ws.subset(np.flatnonzero(test_mask))
    idx = stratified_indices(test.y, args.windows, args.seed)
    y = [str(test.y[i]) for i in idx]
    if args.backend == "rules":
        llm = None
    else:
        from polymodal.llm import TransformersBackend

        llm = TransformersBackend()
    sa, single = SensingAgents(llm, max_tokens=24, repair=False), SingleAgentHAR(llm, max_tokens=24, repair=False)
    tw = [train.window(i) for i in range(len(train))]
    rf = RandomForestHAR(n_estimators=100, seed=args.seed).fit(tw, train.y)
    cnn = CNNHAR(epochs=args.cnn_epochs, seed=args.seed).fit(tw, train.y)
    conditions = [("clean", 0)] + [(k, s) for k in FAULTS for s in (args.severities if k in
                                                                      ("bias_ramp", "gain", "noise") else [3])]
    table: dict[str, dict[str, float]] = {r: {} for r in ROWS}
    t0 = time.perf_counter()
    for kind, sev in conditions:
        rng = np.random.default_rng([args.seed, sev, FAULTS.index(kind) if kind in FAULTS else 99])
        wins = []
        for i in idx:
            w = test.window(i)
            if kind != "clean":
                hit = tuple(rng.choice(list(w), size=args.positions, replace=False))
                w = corrupt(w, kind, sev, positions=hit, rng=rng)
            wins.append(w)
        name = kind if kind == "clean" else f"{kind}@{sev}"
        preds = {r: [] for r in ROWS}
        for w in wins:
            p = sa.predict(w)
            preds["sensing-agents"].append(p.label)
            preds["majority-vote"].append(majority_vote(p.reports))
            preds["single-agent"].append(single.predict(w).label)
        preds["random-forest"] = rf.predict_many(wins)
        preds["cnn-1d"] = cnn.predict_many(wins)
        for r in ROWS:
            table[r][name] = float(np.mean([a == b for a, b in zip(preds[r], y, strict=True)]))
        print(name, {r: round(table[r][name], 3) for r in ROWS}, flush=True)
    cols = list(table[ROWS[0]])
    md = markdown_table(["method", *cols], [[r, *[table[r][c] for c in cols]] for r in ROWS],
                        bold_best={i: "max" for i in range(1, len(cols) + 1)})
    meta = {"backend": args.backend, "windows": len(idx), "positions_corrupted": args.positions,
            "seconds": round(time.perf_counter() - t0, 1), "train_windows": len(train)}
    (out / "faults.json").write_text(json.dumps({"meta": meta, "accuracy": table}, indent=1))
    (out / "faults.md").write_text(f"backend: {args.backend}, {len(idx)} windows, {args.positions} positions "
                                   f"corrupted per window\n\n{md}\n")
    print(md)


if __name__ == "__main__":
    main()

"""Robustness of SensingAgents and its baselines under injected sensor faults (spec 4.4 robustness sweep).

Every fault kind at several severities, injected into ``--positions`` seeded positions of each evaluation window;
accuracy per (row, fault, severity). Default backend: the deterministic rule backend (`--backend rules`); pass
`--backend transformers` for the bundled SmolLM2: with `--decoding score` (default) each undecided role is one
scored forward pass (constrained choice among the rule tool's hypotheses), with `--decoding generate` the JSON
path (~6 generated replies per window, mostly falling back to the rules on a 135M model).

    .venv/bin/python benchmarks/sensing_agents_faults.py --windows 21 --severities 1 3 5 --out runs/sensing_faults
    .venv/bin/python benchmarks/sensing_agents_faults.py --backend transformers --windows 14 --severities 3 \
        --faults bias_ramp noise nan missing --out runs/sensing_faults_smollm2
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
    ap.add_argument("--decoding", default="score", choices=("score", "generate"))
    ap.add_argument("--calibrate", default="train", choices=("train", "content-free", "none"))
    ap.add_argument("--n-calibration", type=int, default=14, help="training windows for --calibrate train")
    ap.add_argument("--faults", nargs="+", default=list(FAULTS), choices=FAULTS)
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
    kw = {"max_tokens": 24, "repair": False, "decoding": args.decoding, "calibrate": args.calibrate}
    sa, single = SensingAgents(llm, **kw), SingleAgentHAR(llm, **kw)
    if llm is not None and args.calibrate == "train" and sa.scoring(llm):
        cal = [train.window(i) for i in stratified_indices(train.y, args.n_calibration, args.seed + 1)]
        sa.fit_calibration(cal)
        single.fit_calibration(cal)
    stats = {"roles": 0, "scored": 0, "tool_decided": 0, "fallbacks": 0, "salvaged": 0, "calls": 0, "windows": 0}
    tw = [train.window(i) for i in range(len(train))]
    rf = RandomForestHAR(n_estimators=100, seed=args.seed).fit(tw, train.y)
    cnn = CNNHAR(epochs=args.cnn_epochs, seed=args.seed).fit(tw, train.y)
    conditions = [("clean", 0)] + [(k, s) for k in args.faults for s in (args.severities if k in
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
            for k, v in (("roles", len(p.reports) + len(p.debate) + 1), ("scored", p.scored), ("windows", 1),
                         ("tool_decided", p.tool_decided), ("fallbacks", p.fallbacks), ("salvaged", p.salvaged),
                         ("calls", p.calls)):
                stats[k] += v
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
    meta = {"backend": args.backend, "decoding": sa.decoding_used(), "calibrate": args.calibrate, "windows": len(idx),
            "positions_corrupted": args.positions, "sensing_agents_roles": stats,
            "seconds": round(time.perf_counter() - t0, 1), "train_windows": len(train)}
    (out / "faults.json").write_text(json.dumps({"meta": meta, "accuracy": table}, indent=1))
    (out / "faults.md").write_text(f"backend: {args.backend} (decoding {sa.decoding_used()}, calibrate {args.calibrate}), {len(idx)} windows, "
                                   f"{args.positions} positions corrupted per window; sensing-agents roles: {stats}"
                                   f"\n\n{md}\n")
    print(meta)
    print(md)


if __name__ == "__main__":
    main()

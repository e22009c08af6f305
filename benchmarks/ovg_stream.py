"""OVG-HQ streaming cost: per-clip latency and memory over a 10-minute stream (issue 9 acceptance: < 5 ms per step).

Feeds ``--clips`` (300 = 10 minutes of 2-s clips) random 512-d clip features to
:class:`~polymodal.video.grounding.stream.OnlineGrounder` (text query of 12 tokens, untrained weights: the cost does
not depend on the weights) for each ``--memories`` variant, and records per step the wall time of ``step()``, the
bytes the grounder keeps (window buffer + carried state: constant by construction) and the process RSS. Writes
``.bench/ovg_stream.json`` and ``.bench/ovg_stream.png`` (latency and memory vs stream position).

    .venv/bin/python benchmarks/ovg_stream.py [--clips 300] [--width 128] [--heads 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import psutil
import torch

from polymodal.video.grounding.model import OVGConfig, OVGHQUnify
from polymodal.video.grounding.stream import OnlineGrounder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memories", default="ttt,lstm,attention,none")
    ap.add_argument("--out", default=".bench/ovg_stream.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    proc = psutil.Process()
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(args.clips, args.dim)).astype(np.float32)
    query = {"text": rng.normal(size=(12, args.dim)).astype(np.float32)}
    results = {}
    for memory in args.memories.split(","):
        torch.manual_seed(0)
        model = OVGHQUnify(OVGConfig(input_dim=args.dim, width=args.width, heads=args.heads, memory=memory)).eval()
        g = OnlineGrounder(model, query, "text", duration=2.0 * args.clips)
        for c in clips[:5]:  # warm-up (allocator, first-call overheads), then a fresh stream
            g.step(c)
        g = OnlineGrounder(model, query, "text", duration=2.0 * args.clips)
        ms, state_kib, rss_mib = [], [], []
        for c in clips:
            t0 = time.perf_counter()
            g.step(c)
            ms.append(1000 * (time.perf_counter() - t0))
            state_kib.append(g.state_bytes() / 1024)
            rss_mib.append(proc.memory_info().rss / 2**20)
        results[memory] = {"ms": ms, "state_kib": state_kib, "rss_mib": rss_mib,
                           "median_ms": statistics.median(ms), "p95_ms": float(np.percentile(ms, 95)),
                           "max_ms": max(ms), "fps": 1000 / statistics.mean(ms),
                           "state_kib_first_last": [state_kib[0], state_kib[-1]],
                           "rss_mib_first_last": [rss_mib[0], rss_mib[-1]],
                           "params": sum(p.numel() for p in model.parameters())}
        r = results[memory]
        print(f"{memory:>9}: median {r['median_ms']:.2f} ms/step, p95 {r['p95_ms']:.2f}, max {r['max_ms']:.2f}; "
              f"state {state_kib[0]:.1f} -> {state_kib[-1]:.1f} KiB; RSS {rss_mib[0]:.1f} -> {rss_mib[-1]:.1f} MiB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": platform.machine(), "torch": torch.__version__,
                               "cpus": psutil.cpu_count(), "load_avg": list(psutil.getloadavg()),
                               "results": results}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    t = np.arange(1, args.clips + 1) * 2 / 60
    for memory, r in results.items():
        axes[0].plot(t, r["ms"], lw=0.7, label=f"{memory} (median {r['median_ms']:.2f} ms)")
        axes[1].plot(t, r["state_kib"], label=memory)
        axes[2].plot(t, r["rss_mib"], label=memory)
    axes[0].axhline(5, color="k", ls=":", lw=0.8)
    axes[0].set_ylabel("ms per step")
    axes[1].set_ylabel("grounder state (KiB)")
    axes[2].set_ylabel("process RSS (MiB)")
    for ax in axes:
        ax.set_xlabel("stream time (min)")
        ax.legend(fontsize=7)
    fig.suptitle(f"OVG-HQ streaming: {args.clips} clips, width {args.width}, {args.threads} thread(s)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=110)
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()

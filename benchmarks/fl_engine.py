"""Federated engine: polymodal's in-process Simulator vs Flower's Ray simulation, side by side.

One FedAvg job, both sides with the same algorithm, data and seeding: scikit-learn digits (stratified 75/25
split, seed 0), IID over ``--clients`` clients, MLP 64-32-10, SGD lr 0.1, one local epoch, batch 32, every
client every round, ``--rounds`` rounds, central evaluation of the global model after each round. That is the
ready-made app ``polymodal.federated.flower_apps``:

- in-process: ``flower_apps.simulate``'s federation, i.e. :class:`polymodal.federated.core.Simulator` with
  ``make_client`` / ``make_strategy`` / ``initial_params`` / ``evaluator``, run with this (the project's)
  python. Each repeat is a fresh child process of this script (``--_inprocess-child``), so that its peak RSS
  (``ru_maxrss``) and its start-up (imports) belong to that job alone;
- Flower + Ray: ``flwr.simulation.run_simulation(server_app, client_app, num_supernodes=N, backend_name="ray",
  backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0}})`` with ``flower_apps.server_app`` /
  ``client_app`` (polymodal's Flower adapter: ``as_strategy(FedAvg)`` / ``as_client_app``), run by
  ``benchmarks/fl_sim_side/run_ray.py`` in the benchmark-only venv ``.bench/flwr-sim-venv`` (Ray must not
  enter the project's venv; create it with ``bash benchmarks/fl_sim_side/setup_venv.sh``). Peak memory there is
  the sum, over the driver and every Ray process (its descendants), of each process' peak RSS sampled every
  0.2 s with psutil.

Both sides read the digits split from one ``.npz`` written here (``flower_apps.save_digits_split``), so neither
imports scikit-learn at run time. The in-process side runs once per ``--threads`` setting: torch's default
intra-op threads (one per core, what ``flower_apps.simulate`` uses) and 1 thread (what Ray gives each ClientApp
actor: it sets ``OMP_NUM_THREADS=1`` for a ``num_cpus=1`` actor). Reported: the wall time of the job (median over
repeats; in-process: building the clients and running the rounds, imports done; Ray: the whole
``run_simulation`` call, which starts and stops Ray), the wall time of the whole process (imports included),
the median seconds per round after the first (start-up excluded), peak RSS, final accuracy, and the largest
absolute difference between the final parameter vectors.

Usage (the project's venv)::

    bash benchmarks/fl_sim_side/setup_venv.sh          # once: .bench/flwr-sim-venv (torch CPU, flwr[simulation])
    .venv/bin/python benchmarks/fl_engine.py [--rounds 20] [--clients 10] [--repeats 3] [--ray-repeats 2] \\
        [--threads 0,1] [--skip-ray]

Raw results go to ``.bench/fl_engine.json``; a markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_VENV = REPO / ".bench" / "flwr-sim-venv"
RAY_RUNNER = REPO / "benchmarks" / "fl_sim_side" / "run_ray.py"
SETUP_CMD = "bash benchmarks/fl_sim_side/setup_venv.sh"
MIB = 1024.0 ** 2


# ---------------------------------------------------------------------------------------------- in-process side
def inprocess_child(rounds: int, clients: int, seed: int, npz: str, threads: int = 0) -> dict:
    """One in-process job (this process only): ``flower_apps.simulate``'s federation, digits from ``npz``;
    ``threads``: ``torch.set_num_threads`` (0: torch's default, one per core)."""
    t_import = time.perf_counter()
    import psutil
    import torch
    import torch._dynamo  # noqa: F401 - torch.optim imports it lazily at the first SGD(): ~2.5 s, an import

    from polymodal.federated.core import Simulator
    from polymodal.federated.flower_apps import (
        evaluator,
        initial_params,
        make_client,
        make_strategy,
        settings,
    )

    import_s = time.perf_counter() - t_import
    if threads:
        torch.set_num_threads(threads)
    rss_after_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
    cfg = settings({"num-server-rounds": rounds, "num-partitions": clients, "seed": seed, "digits-npz": npz})
    t0 = time.perf_counter()
    sim = Simulator([make_client(i, clients, cfg["seed"], npz) for i in range(clients)], make_strategy(cfg),
                    initial_params(cfg["seed"]), seed=cfg["seed"], evaluate=evaluator(npz))
    hist = sim.run(rounds)
    run_s = time.perf_counter() - t0
    process_s = time.time() - psutil.Process().create_time()
    return {
        "side": "in-process", "threads_arg": threads, "run_s": run_s, "import_s": import_s, "process_s": process_s,
        "final_accuracy": hist[-1].metrics.get("accuracy"), "final_loss": hist[-1].metrics.get("loss"),
        "rounds_done": len(hist), "round_seconds_sum": sum(h.metrics["round_seconds"] for h in hist),
        "accuracy_per_round": [h.metrics.get("accuracy") for h in hist],
        "round_seconds": [h.metrics["round_seconds"] for h in hist],
        "final_params": sim.params.tolist(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB,
        "rss_after_import_mib": rss_after_import, "processes_seen": 1,
        "torch_threads": torch.get_num_threads(), "error": None,
    }


def _result_line(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return None


def _label(threads: int) -> str:
    return "default" if threads == 0 else f"{threads}"


def run_inprocess(args: argparse.Namespace, npz: Path, threads: int) -> list[dict]:
    runs = []
    for i in range(args.repeats):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_inprocess-child", "--rounds", str(args.rounds),
               "--clients", str(args.clients), "--seed", str(args.seed), "--digits-npz", str(npz),
               "--threads", str(threads)]
        t0 = time.perf_counter()
        sub = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO)
        res = _result_line(sub.stdout)
        if res is None:
            raise SystemExit(f"in-process run {i} failed (exit {sub.returncode}):\n{sub.stdout}\n{sub.stderr}")
        res["spawn_wall_s"] = time.perf_counter() - t0
        print(f"  in-process, torch threads {_label(threads)} ({res['torch_threads']}), repeat {i + 1}/"
              f"{args.repeats}: job {res['run_s']:.3f} s, process {res['process_s']:.2f} s, peak RSS "
              f"{res['peak_rss_mib']:.0f} MiB, accuracy {res['final_accuracy']:.4f}", flush=True)
        runs.append(res)
    return runs


# ---------------------------------------------------------------------------------------------- Ray side
def ray_python(venv: Path) -> tuple[Path | None, str]:
    """The benchmark venv's python if it imports flwr.simulation, ray and polymodal's apps, else why not."""
    py = venv / "bin" / "python"
    if not py.is_file():
        return None, f"no benchmark venv at {venv}"
    probe = subprocess.run([str(py), "-c", "import ray, flwr.simulation, polymodal.federated.flower_apps"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        return None, f"{py} cannot import ray / flwr.simulation / polymodal:\n{probe.stderr.strip()[-800:]}"
    return py, ""


def run_ray(args: argparse.Namespace, py: Path, npz: Path, work: Path) -> list[dict]:
    runs = []
    for i in range(args.ray_repeats):
        wdir = work / f"ray-{i}"
        cmd = [str(py), str(RAY_RUNNER), "--rounds", str(args.rounds), "--clients", str(args.clients),
               "--seed", str(args.seed), "--digits-npz", str(npz), "--workdir", str(wdir)]
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        t0 = time.perf_counter()
        sub = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=REPO, env=env)
        wdir.mkdir(parents=True, exist_ok=True)
        (wdir / "run.log").write_text(sub.stdout + "\n--- stderr ---\n" + sub.stderr)
        res = _result_line(sub.stdout)
        if res is None or res.get("error") or not res.get("rounds_done"):
            why = res.get("error") if res else f"exit {sub.returncode}, no RESULT line"
            raise SystemExit(f"Ray run {i} failed ({why}); log: {wdir / 'run.log'}\n{sub.stderr[-3000:]}")
        res["spawn_wall_s"] = time.perf_counter() - t0
        print(f"  flower+ray repeat {i + 1}/{args.ray_repeats}: job {res['run_s']:.2f} s, process "
              f"{res['process_s']:.2f} s, peak RSS sum {res['peak_rss_sum_mib']:.0f} MiB over "
              f"{res['processes_seen']} processes, accuracy {res['final_accuracy']:.4f}", flush=True)
        runs.append(res)
    return runs


# ---------------------------------------------------------------------------------------------- report
def _median(runs: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def _steady(run: dict) -> float:
    """Median seconds per round after the first (the first one carries any start-up)."""
    rs = run["round_seconds"]
    return float(statistics.median(rs[1:] if len(rs) > 1 else rs))


def summarise(runs: list[dict], rss_key: str) -> dict:
    return {"repeats": len(runs), "run_s": _median(runs, "run_s"), "run_s_all": [r["run_s"] for r in runs],
            "first_round_s": float(statistics.median(r["round_seconds"][0] for r in runs)),
            "steady_round_s": float(statistics.median(_steady(r) for r in runs)),
            "process_s": _median(runs, "process_s"), "process_s_all": [r["process_s"] for r in runs],
            "import_s": _median(runs, "import_s"), "round_seconds_sum": _median(runs, "round_seconds_sum"),
            "peak_rss_mib": _median(runs, rss_key), "peak_rss_mib_all": [r[rss_key] for r in runs],
            "processes": max(r["processes_seen"] for r in runs),
            "final_accuracy": runs[0]["final_accuracy"],
            "final_accuracy_all": [r["final_accuracy"] for r in runs]}


def machine_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"cpu": cpu, "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_at_start": list(os.getloadavg()),
            "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3}


def _spread(median: float, values: list[float], digits: int) -> str:
    return f"{median:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def markdown(result: dict) -> str:
    ray = result.get("ray")
    head = ("| side | repeats | wall s, job: median (min-max) | wall s, process incl. imports | s/round after "
            "round 1 | peak RSS MiB | processes | final accuracy | Ray / this: wall job; process; s/round |\n"
            "|---|---|---|---|---|---|---|---|---|")
    rows = []
    for key, ip in result["inprocess"].items():
        ratio = "-"
        if ray is not None:
            ratio = (f"**{ray['run_s'] / ip['run_s']:.1f}x**; {ray['process_s'] / ip['process_s']:.1f}x; "
                     f"{ray['steady_round_s'] / ip['steady_round_s']:.1f}x")
        rows.append(f"| polymodal `Simulator`, in-process, torch threads: {key} ({ip['torch_threads']}) "
                    f"| {ip['repeats']} | {_spread(ip['run_s'], ip['run_s_all'], 3)} | {ip['process_s']:.2f} "
                    f"| {ip['steady_round_s']:.4f} | {ip['peak_rss_mib']:.0f} | 1 "
                    f"| {ip['final_accuracy']:.4f} | {ratio} |")
    if ray is not None:
        rows.append(f"| Flower `run_simulation`, Ray backend (1 torch thread per actor) | {ray['repeats']} "
                    f"| {_spread(ray['run_s'], ray['run_s_all'], 2)} | {ray['process_s']:.2f} "
                    f"| {ray['steady_round_s']:.4f} | {ray['peak_rss_mib']:.0f} "
                    f"| {ray['processes']} | {ray['final_accuracy']:.4f} | 1 |")
    return "\n".join([head, *rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3, help="in-process repeats per thread setting (median)")
    ap.add_argument("--ray-repeats", type=int, default=2, help="Flower+Ray repeats (median)")
    ap.add_argument("--threads", default="0,1",
                    help="in-process torch thread settings to run, comma-separated (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="benchmark venv with flwr[simulation]")
    ap.add_argument("--skip-ray", action="store_true", help="in-process side only")
    ap.add_argument("--timeout", type=float, default=900.0, help="per-run limit (s)")
    ap.add_argument("--out", type=Path, default=REPO / ".bench" / "fl_engine.json")
    ap.add_argument("--digits-npz", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_inprocess-child", dest="child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    thread_settings = [int(t) for t in str(args.threads).split(",") if t.strip()]

    if args.child:
        print("RESULT " + json.dumps(inprocess_child(args.rounds, args.clients, args.seed, args.digits_npz,
                                                     thread_settings[0] if thread_settings else 0)))
        return 0

    py, why = (None, "skipped (--skip-ray)") if args.skip_ray else ray_python(args.venv)
    if py is None and not args.skip_ray:
        print(f"Flower/Ray side unavailable: {why}\nCreate the benchmark venv with:\n    {SETUP_CMD}\n"
              "(or pass --skip-ray for the in-process side only)", file=sys.stderr)

    from polymodal.federated.flower_apps import save_digits_split

    work = args.out.parent / "fl_engine"
    work.mkdir(parents=True, exist_ok=True)
    npz = save_digits_split(work / "digits-split.npz")
    result: dict = {"config": {"rounds": args.rounds, "clients": args.clients, "seed": args.seed, "lr": 0.1,
                               "local_epochs": 1, "batch_size": 32, "model": "MLP 64-32-10",
                               "data": "sklearn digits, stratified 75/25 (seed 0), IID partition"},
                    "machine": machine_info(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "inprocess": {}, "inprocess_runs": {}}
    print(f"FedAvg, {args.clients} clients x {args.rounds} rounds; load average "
          f"{result['machine']['loadavg_at_start'][0]:.2f}", flush=True)

    final_params = {}
    for threads in thread_settings:
        runs = run_inprocess(args, npz, threads)
        key = _label(threads)
        result["inprocess"][key] = {**summarise(runs, "peak_rss_mib"), "torch_threads": runs[0]["torch_threads"]}
        result["inprocess_runs"][key] = [{k: v for k, v in r.items() if k != "final_params"} for r in runs]
        final_params[key] = runs[0]["final_params"]
    if py is not None:
        ray_runs = run_ray(args, py, npz, work)
        result["ray"] = summarise(ray_runs, "peak_rss_sum_mib")
        result["ray"]["peak_rss_concurrent_mib"] = _median(ray_runs, "peak_rss_concurrent_mib")
        result["ray_runs"] = [{k: v for k, v in r.items() if k != "final_params"} for r in ray_runs]
        result["versions"] = ray_runs[0]["versions"]
        final_params["ray"] = ray_runs[0]["final_params"]
        result["ratios"] = {key: {"wall_job": result["ray"]["run_s"] / ip["run_s"],
                                  "wall_process": result["ray"]["process_s"] / ip["process_s"],
                                  "steady_round": result["ray"]["steady_round_s"] / ip["steady_round_s"],
                                  "peak_rss": result["ray"]["peak_rss_mib"] / ip["peak_rss_mib"],
                                  "goal_10x_met": result["ray"]["run_s"] / ip["run_s"] >= 10.0}
                            for key, ip in result["inprocess"].items()}
    else:
        result["ray"], result["ray_unavailable"] = None, why
    ref = next(iter(final_params.values()), None)
    result["final_params_max_abs_diff_vs_first"] = {
        k: max(abs(x - y) for x, y in zip(ref, v, strict=True)) for k, v in final_params.items()}
    result["machine"]["loadavg_at_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))

    print()
    print(markdown(result))
    print("\nfinal accuracy: " + ", ".join(
        [f"in-process ({k}) {v['final_accuracy']:.4f}" for k, v in result["inprocess"].items()]
        + ([f"Flower+Ray {result['ray']['final_accuracy']:.4f}"] if result["ray"] else [])))
    print(f"max |final parameter difference| vs the first row: {result['final_params_max_abs_diff_vs_first']}")
    if result["ray"]:
        print(f"Ray peak RSS: sum of per-process peaks {result['ray']['peak_rss_mib']:.0f} MiB, largest "
              f"concurrent total {result['ray']['peak_rss_concurrent_mib']:.0f} MiB; versions {result['versions']}")
        for key, r in result["ratios"].items():
            print(f"goal 'in-process at least 10x faster' (job wall, torch threads {key}): "
                  f"{'met' if r['goal_10x_met'] else 'NOT met'} ({r['wall_job']:.1f}x)")
    elif not args.skip_ray:
        print(f"Flower/Ray side NOT run: {why.splitlines()[0]}; create the benchmark venv with: {SETUP_CMD}")
    print(f"raw results: {args.out}")
    return 0 if py is not None or args.skip_ray else 2


if __name__ == "__main__":
    sys.exit(main())

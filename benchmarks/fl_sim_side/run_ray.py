"""Ray side of benchmarks/fl_engine.py: one FedAvg job on sklearn digits through Flower's Ray simulation.

Runs in the benchmark-only venv made by ``benchmarks/fl_sim_side/setup_venv.sh`` (never in the project's venv:
it needs ``flwr[simulation]``, i.e. Ray). The job is polymodal's ready-made Flower app
(``polymodal.federated.flower_apps:server_app`` / ``:client_app``: FedAvg through
``polymodal.federated.flower.as_strategy``, MLP 64-32-10, IID split, the Simulator's seeding) started with
``flwr.simulation.run_simulation(..., backend_name="ray", backend_config={"client_resources": {"num_cpus": 1,
"num_gpus": 0}})``. The app reads its settings from ``POLYMODAL_FL_*`` environment variables (run_simulation has
no run config); Ray's worker processes inherit them from this driver.

A monitor thread samples, every 0.2 s, the RSS of this process and of all its descendants (raylet, GCS server,
Ray workers / ClientApp actors, ...) with psutil. Printed last on stdout, one line ``RESULT {json}`` with:
``run_s`` (the run_simulation call: Ray start, the rounds, Ray shutdown), ``import_s``, ``process_s`` (from
process creation to the end of the job), the final accuracy, ``peak_rss_sum_mib`` (sum over processes of each
one's peak RSS), ``peak_rss_concurrent_mib`` (the largest total seen in one sample), the per-kind breakdown, the
server's per-round metrics and the final parameter vector.

Usage: .bench/flwr-sim-venv/bin/python benchmarks/fl_sim_side/run_ray.py --rounds 20 --clients 10 \
           --workdir .bench/fl_engine/ray-0 [--digits-npz FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path


def _kind(name: str, cmdline: list[str]) -> str:
    """A short label for a process of the Ray tree (for the memory breakdown)."""
    text = " ".join(cmdline[:3]) if cmdline else name
    if "raylet" in name or "raylet" in text:
        return "raylet"
    if "gcs_server" in name or "gcs_server" in text:
        return "gcs_server"
    if name.startswith("ray::") or "default_worker.py" in text:
        return "ray_worker"
    for key in ("log_monitor", "dashboard", "monitor.py", "runtime_env", "agent"):
        if key in text:
            return "ray_" + key.replace(".py", "")
    return name or "?"


class TreeMonitor(threading.Thread):
    """Peak RSS per process over the tree rooted at this process, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process()
        self.root_cmd = self.root.cmdline()
        self.interval = interval
        self.stop = threading.Event()
        self.peak: dict[int, int] = {}
        self.kind: dict[int, str] = {}
        self.cmd: dict[int, str] = {}
        self.peak_concurrent = 0
        self.samples = 0

    def sample(self) -> None:
        ps = self.psutil
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except ps.Error:
            return
        total = 0
        for p in procs:
            try:
                rss = p.memory_info().rss
            except ps.Error:  # exited between the listing and the read
                continue
            if self.kind.get(p.pid, "?") in ("?", "python"):  # a process caught mid-exec has no cmdline yet
                try:
                    cmd = p.cmdline()
                    if p.pid == self.root.pid:
                        self.kind[p.pid] = "driver"
                    elif cmd == self.root_cmd:  # a fork of the driver (Ray's process reaper)
                        self.kind[p.pid] = "driver_fork"
                    else:
                        self.kind[p.pid] = _kind(p.name(), cmd)
                    self.cmd[p.pid] = " ".join(cmd)[:160]
                except ps.Error:
                    pass
            total += rss
            self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
        self.peak_concurrent = max(self.peak_concurrent, total)
        self.samples += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def summary(self) -> dict:
        mib = 1024.0 ** 2
        by_kind: dict[str, dict[str, float]] = {}
        for pid, rss in self.peak.items():
            k = by_kind.setdefault(self.kind.get(pid, "?"), {"processes": 0, "peak_rss_sum_mib": 0.0})
            k["processes"] += 1
            k["peak_rss_sum_mib"] += rss / mib
        return {"peak_rss_sum_mib": sum(self.peak.values()) / mib,
                "peak_rss_concurrent_mib": self.peak_concurrent / mib,
                "driver_peak_rss_mib": self.peak.get(self.root.pid, 0) / mib,
                "processes_seen": len(self.peak), "samples": self.samples,
                "processes": [{"pid": pid, "kind": self.kind.get(pid, "?"), "peak_rss_mib": round(rss / mib, 1),
                               "cmd": self.cmd.get(pid, "")} for pid, rss in sorted(self.peak.items())],
                "by_kind": {k: {"processes": v["processes"], "peak_rss_sum_mib": round(v["peak_rss_sum_mib"], 1)}
                            for k, v in sorted(by_kind.items())}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--digits-npz", default="", help="digits split written by flower_apps.save_digits_split")
    ap.add_argument("--workdir", required=True, help="scratch folder (FLWR_HOME, the ServerApp's metrics JSON)")
    ap.add_argument("--interval", type=float, default=0.2, help="RSS sampling period (s)")
    args = ap.parse_args()

    work = Path(args.workdir).resolve()
    (work / "flwr-home").mkdir(parents=True, exist_ok=True)
    out_json = work / "server-metrics.json"
    out_json.unlink(missing_ok=True)
    # Before importing flwr / ray: no telemetry, no update check, no usage stats (nothing leaves the machine);
    # the app's settings, which the ServerApp thread and the Ray workers (children of this process) read.
    os.environ.update({
        "FLWR_HOME": str(work / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "POLYMODAL_FL_ROUNDS": str(args.rounds), "POLYMODAL_FL_PARTITIONS": str(args.clients),
        "POLYMODAL_FL_SEED": str(args.seed), "POLYMODAL_FL_LR": str(args.lr),
        "POLYMODAL_FL_LOCAL_EPOCHS": str(args.local_epochs), "POLYMODAL_FL_BATCH_SIZE": str(args.batch_size),
        "POLYMODAL_FL_OUT": str(out_json), "POLYMODAL_FL_DIGITS_NPZ": str(args.digits_npz),
    })

    monitor = TreeMonitor(args.interval)
    monitor.start()
    t_import = time.perf_counter()
    import flwr
    import ray
    import torch
    from flwr.simulation import run_simulation

    from polymodal.federated.flower_apps import client_app, server_app

    import_s = time.perf_counter() - t_import

    t0 = time.perf_counter()
    error = None
    try:
        run_simulation(server_app=server_app, client_app=client_app, num_supernodes=args.clients,
                       backend_name="ray", backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0}})
    except BaseException as exc:  # reported in the JSON line (SystemExit from flwr_exit too)
        error = f"{type(exc).__name__}: {exc}"
    run_s = time.perf_counter() - t0
    process_s = time.time() - monitor.root.create_time()
    monitor.sample()
    monitor.stop.set()
    monitor.join()

    payload = json.loads(out_json.read_text()) if out_json.exists() else {}
    if "error" in payload:
        error = error or payload["error"]
    rounds = payload.get("rounds", [])
    result = {
        "side": "flower-ray", "run_s": run_s, "import_s": import_s, "process_s": process_s,
        "final_accuracy": rounds[-1]["metrics"].get("accuracy") if rounds else None,
        "final_loss": rounds[-1]["metrics"].get("loss") if rounds else None,
        "rounds_done": len(rounds),
        "round_seconds_sum": sum(r["metrics"].get("round_seconds", 0.0) for r in rounds),
        "accuracy_per_round": [r["metrics"].get("accuracy") for r in rounds],
        "round_seconds": [r["metrics"].get("round_seconds") for r in rounds],
        "final_params": payload.get("final_params"),
        **monitor.summary(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "flwr": flwr.__version__,
                     "ray": ray.__version__},
        "error": error,
    }
    print("RESULT " + json.dumps(result), flush=True)
    return 0 if error is None and rounds else 1


if __name__ == "__main__":
    sys.exit(main())

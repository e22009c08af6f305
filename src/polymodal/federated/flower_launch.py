"""A real Flower deployment on 127.0.0.1: one ``flower-superlink``, N ``flower-supernode`` processes, the
ready-made app :mod:`polymodal.federated.flower_apps` submitted with ``flwr run`` (spec ``federated.md`` 1.5).

No Ray and no ``uv``: the SuperLink runs with ``--disable-runtime-dependency-installation`` (SuperNodes do not
install by default), and the FAB is a tiny app folder whose components point at the installed package. Every
process started here is stopped in a ``finally`` (process groups, then a forced kill of leftovers).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.federated.flower import FLWR_VERSION  # noqa: F401  (fails clearly when flwr is missing)


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if proc.poll() is not None:
            raise PolymodalError(f"flower-superlink exited with code {proc.returncode}:\n{_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise PolymodalError(f"flower-superlink did not listen on 127.0.0.1:{port} within {timeout:g} s:\n{_tail(log)}")


def _tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return f"(no log at {path})"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid TOML basic string


def write_flower_app(app_dir: Path, run_config: Mapping[str, Any], *, name: str = "polymodal-digits-fedavg",
                     serverapp: str = "polymodal.federated.flower_apps:server_app",
                     clientapp: str = "polymodal.federated.flower_apps:client_app") -> Path:
    """Write the tiny Flower app folder ``flwr run`` builds a FAB from: a ``pyproject.toml`` whose
    ``[tool.flwr.app.components]`` point at the installed polymodal apps (no code is copied, no dependencies
    are declared, so nothing is installed at run time) and whose ``[tool.flwr.app.config]`` is ``run_config``."""
    app_dir.mkdir(parents=True, exist_ok=True)
    lines = ["[build-system]", 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', "",
             "[project]", f"name = {_toml_value(name)}", 'version = "1.0.0"',
             'description = "polymodal app for a local Flower federation"', 'license = "MIT"',
             "dependencies = []", "", "[tool.flwr.app]", 'publisher = "polymodal"', "",
             "[tool.flwr.app.components]", f"serverapp = {_toml_value(serverapp)}",
             f"clientapp = {_toml_value(clientapp)}", "", "[tool.flwr.app.config]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in run_config.items()]
    (app_dir / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return app_dir


def _flower_procs(roots: list[subprocess.Popen]) -> list[Any]:
    import psutil

    procs = []
    for p in roots:
        try:
            root = psutil.Process(p.pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def _stop_all(roots: list[subprocess.Popen], known: list[Any]) -> None:
    """Terminate every process started (their process groups and all descendants seen), then kill leftovers."""
    import psutil

    procs = {p.pid: p for p in [*known, *_flower_procs(roots)]}  # psutil refuses to signal a reused pid

    def killpg(sig: int) -> None:
        for p in roots:
            if p.poll() is None:  # not reaped yet, so its pid (== its process group id) cannot have been reused
                try:
                    os.killpg(p.pid, sig)  # each was started in its own session
                except (ProcessLookupError, PermissionError):
                    pass

    killpg(signal.SIGTERM)
    for p in procs.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=8)
    killpg(signal.SIGKILL)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    for p in roots:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def launch_local_federation(n_supernodes: int = 3, rounds: int = 2, *, seed: int = 0, lr: float = 0.1,
                            local_epochs: int = 1, batch_size: int = 32, workdir: str | os.PathLike[str] | None = None,
                            timeout: float = 300.0, on_start: Callable[[list[int]], None] | None = None,
                            strategy: str = "fedavg", aggregator: str = "mean", attack: str = "none",
                            n_byzantine: int = 0, beta: float = 0.9, recipe: str = "", method: str = "",
                            recipe_set: Mapping[str, Any] | None = None, quick: bool = True) -> dict[str, Any]:
    """Run FedAvg on digits (:mod:`polymodal.federated.flower_apps`) on a real Flower 1.41 deployment on
    127.0.0.1 and return the metrics the ServerApp wrote.

    Started, each in its own session, with ``FLWR_HOME=<workdir>/flwr-home`` and ``FLWR_DISABLE_UPDATE_CHECK=1``:
    ``flower-superlink --insecure --host 127.0.0.1 --port P --disable-runtime-dependency-installation`` (one HTTP
    port for the Fleet, Control and Runtime APIs in 1.41) and ``n_supernodes`` times ``flower-supernode
    --insecure --superlink 127.0.0.1:P --port Q_i --node-config "partition-id=i num-partitions=N"``. Then
    ``flwr run <workdir>/app polymodal-local --format json`` submits the FAB built from the app folder
    (:func:`write_flower_app`) through the connection ``[superlink.polymodal-local]`` in
    ``$FLWR_HOME/config.toml``; the SuperLink's SuperExec starts ``flwr-serverapp`` and each SuperNode's starts
    one ``flwr-clientapp`` per message, all in this environment (isolation "subprocess"). The ServerApp writes
    ``<workdir>/metrics.json``; every process started here (and its descendants) is terminated before
    returning, also on errors. ``on_start`` is called with the pids of the started processes (for tests).

    ``recipe`` (``fedsm``, ``fedpall``, ``co-pfl``) runs ``method`` of that recipe instead, built from its config
    (``quick`` settings plus ``recipe_set`` overrides): the number of SuperNodes and rounds then come from the
    recipe's federation (``n_supernodes`` / ``rounds`` are ignored; set ``rounds`` etc. through ``recipe_set``).

    Returns the ServerApp's JSON (``rounds``: one dict per round as in ``Simulator.history``, ``final_params``,
    ``initial_metrics``, ``settings``) plus ``run_id``, ``workdir`` and ``seconds``.
    """
    extra: dict[str, Any] = {}
    if recipe:
        from polymodal.federated.flower_apps import recipe_federation

        overrides = json.dumps(dict(recipe_set or {}), sort_keys=True)
        fed = recipe_federation(recipe, method, overrides, quick)  # validates before any process starts
        n_supernodes, rounds = fed.n_clients, fed.rounds
        extra = {"recipe": recipe, "method": method, "recipe-set": overrides, "quick": bool(quick)}
    if n_supernodes < 1 or rounds < 1:
        raise ConfigError(f"n_supernodes and rounds must be >= 1, got {n_supernodes} and {rounds}")
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="polymodal-flower-"))
    work = work.resolve()
    home, logs, app_dir, out = work / "flwr-home", work / "logs", work / "app", work / "metrics.json"
    for d in (home, logs):
        d.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    bindir = str(Path(sys.executable).parent)  # flower-superexec / flwr-serverapp / flwr-clientapp live here
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1", "FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")  # N client processes share the CPU; tiny MLPs gain nothing from threads
    link_port, *node_ports = _free_ports(1 + n_supernodes)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "polymodal-local"\n\n[superlink.polymodal-local]\n'
        f'address = "127.0.0.1:{link_port}"\ninsecure = true\n')
    from polymodal.federated.flower_apps import save_digits_split

    npz = save_digits_split(work / "digits-split.npz")  # ClientApp processes then skip importing scikit-learn
    write_flower_app(app_dir, {"num-server-rounds": int(rounds), "num-partitions": int(n_supernodes),
                               "seed": int(seed), "lr": float(lr), "local-epochs": int(local_epochs),
                               "batch-size": int(batch_size), "timeout": float(timeout), "out-json": str(out),
                               "strategy": str(strategy), "aggregator": str(aggregator), "attack": str(attack),
                               "n-byzantine": int(n_byzantine), "beta": float(beta),
                               "digits-npz": str(npz), **extra})

    def exe(name: str) -> str:
        return str(Path(bindir) / name)

    roots: list[subprocess.Popen] = []
    log_of: dict[int, Path] = {}
    seen: dict[int, Any] = {}
    handles = []
    t0 = time.perf_counter()

    def spawn(cmd: list[str], log_name: str) -> subprocess.Popen:
        fh = open(logs / log_name, "wb")  # noqa: SIM115 - closed in finally
        handles.append(fh)
        p = subprocess.Popen(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        roots.append(p)
        log_of[p.pid] = logs / log_name
        return p

    try:
        link = spawn([exe("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port),
                      "--disable-runtime-dependency-installation"], "superlink.log")
        _wait_port(link_port, link, logs / "superlink.log", timeout=60)
        for i, port in enumerate(node_ports):
            spawn([exe("flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
                   "--port", str(port), "--node-config", f"partition-id={i} num-partitions={n_supernodes}"],
                  f"supernode-{i}.log")
        if on_start is not None:
            on_start([p.pid for p in roots])
        sub = subprocess.run([exe("flwr"), "run", str(app_dir), "polymodal-local", "--format", "json"],
                             cwd=work, env=env, capture_output=True, text=True, timeout=120)
        (logs / "flwr-run.log").write_text(sub.stdout + sub.stderr)
        try:
            run_id = json.loads(sub.stdout[sub.stdout.index("{"):])["run-id"]
        except (ValueError, KeyError) as exc:
            raise PolymodalError(f"flwr run failed (exit {sub.returncode}):\n{sub.stdout}\n{sub.stderr}") from exc
        if run_id is None:
            raise PolymodalError(f"flwr run did not start a run:\n{sub.stdout}\n{sub.stderr}")
        t_end, next_check = time.monotonic() + timeout, time.monotonic() + 30
        while not out.exists():
            seen.update((p.pid, p) for p in _flower_procs(roots))  # descendants, while their parents live
            for p in roots:
                if p.poll() is not None:
                    raise PolymodalError(f"a Flower process exited early (code {p.returncode}), its log:\n"
                                         f"{_tail(log_of[p.pid])}")
            if time.monotonic() > t_end:
                raise PolymodalError(f"run {run_id} did not finish within {timeout:g} s; SuperLink log:\n"
                                     f"{_tail(logs / 'superlink.log')}")
            if time.monotonic() > next_check:  # a ServerApp that died before writing anything
                next_check = time.monotonic() + 30
                status = _run_status(exe("flwr"), run_id, env, work)
                if status.startswith("finished"):
                    time.sleep(1.0)
                    if not out.exists():
                        raise PolymodalError(f"run {run_id} ended ({status}) without writing {out}; "
                                             f"SuperLink log:\n{_tail(logs / 'superlink.log')}")
            time.sleep(0.25)
        result = json.loads(out.read_text())
        if "error" in result:
            raise PolymodalError(f"the ServerApp of run {run_id} failed: {result['error']}")
        result.update(run_id=str(run_id), workdir=str(work), seconds=time.perf_counter() - t0)
        return result
    finally:
        _stop_all(roots, list(seen.values()))
        for fh in handles:
            fh.close()


def _run_status(flwr: str, run_id: str, env: dict[str, str], cwd: Path) -> str:
    try:
        sub = subprocess.run([flwr, "ls", "polymodal-local", "--run-id", str(run_id), "--format", "json"],
                             cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        runs = json.loads(sub.stdout[sub.stdout.index("{"):]).get("runs", [])
        return str(runs[0]["status"]) if runs else "unknown"
    except (ValueError, KeyError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


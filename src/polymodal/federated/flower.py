"""Flower adapter for the federated engine (spec ``federated.md`` 1.5; pinned to ``flwr==1.41.0``).

Three pieces, all on Flower's Message API (``flwr.app`` / ``flwr.serverapp`` / ``flwr.clientapp``):

- :func:`as_strategy` wraps any polymodal strategy (``configure_fit`` / ``aggregate_fit``: FedAvg, FedProx,
  Byrd-NAFL, any robust aggregator) as a ``flwr.serverapp.strategy.Strategy``. A round is the in-process
  :class:`~polymodal.federated.core.Simulator`'s round carried over messages: the download vector travels as
  one float32 array (``ArrayRecord`` key ``"arrays"``, array ``"vector"``), the polymodal config as a
  ``ConfigRecord`` (key ``"config"``), and the round / seed in a second ``ConfigRecord`` (key ``"pm"``).
  Replies carry the client's vector plus a ``MetricRecord`` (key ``"metrics"``) with ``num-examples`` and
  ``partition-id`` (the polymodal client id, which is how Flower node ids are mapped to polymodal ids).
  Error replies, missing replies (timeout), wrong shapes and non-finite vectors are dropped and recorded;
  Byzantine clients' uploads are replaced by the attack exactly as the Simulator does; the result is fed to
  the polymodal ``aggregate_fit`` in client-id order, so a Flower run reproduces the Simulator's numbers.
- :func:`as_client_app` turns a factory ``(partition_id, num_partitions, run_config) -> Client`` into a
  ``flwr.clientapp.ClientApp`` (``train`` runs ``fit`` seeded like the Simulator: ``rng =
  default_rng([seed, round, cid])``, see :func:`client_rng`; ``query`` reports the client id).
  The partition comes from ``context.node_config["partition-id"]`` / ``["num-partitions"]``: set by Flower's
  simulation runtime, and by ``flower-supernode --node-config "partition-id=0 num-partitions=3"`` in a
  deployment.
- :func:`launch_local_federation` starts a real deployment on 127.0.0.1 (one ``flower-superlink``, N
  ``flower-supernode`` processes), submits the ready-made app :mod:`polymodal.federated.flower_apps` with
  ``flwr run`` and returns the per-round metrics the ServerApp wrote. It never needs Ray or ``uv``: the
  SuperLink runs with ``--disable-runtime-dependency-installation`` (SuperNodes do not install by default),
  and the FAB is a tiny app folder whose components point at the installed package.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.core.offline import MissingDependencyError
from polymodal.federated.attacks import apply_attack
from polymodal.federated.core import Client, FitResult, RoundLog, Strategy

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Strategy as FlwrStrategy
except ImportError as exc:  # pragma: no cover - exercised only without flwr
    raise MissingDependencyError(
        "polymodal.federated.flower needs Flower; install it with: pip install 'flwr==1.41.0' "
        "(no [simulation] extra, Ray is not used)"
    ) from exc

__all__ = [
    "FLWR_VERSION",
    "PolymodalFlowerStrategy",
    "arrays_to_vector",
    "as_client_app",
    "as_strategy",
    "client_rng",
    "launch_local_federation",
    "partition_of",
    "vector_to_arrays",
]

FLWR_VERSION = "1.41.0"
ARRAYS_KEY, VECTOR_KEY, CONFIG_KEY, META_KEY, METRICS_KEY, ERROR_KEY = (
    "arrays", "vector", "config", "pm", "metrics", "error")
_CONFIG_SCALARS = (bool, int, float, str, bytes)


# ---------------------------------------------------------------------------------------------- records
def vector_to_arrays(vector: torch.Tensor) -> ArrayRecord:
    """A flat parameter vector as an ``ArrayRecord`` holding one float32 array named ``"vector"``."""
    arr = np.ascontiguousarray(vector.detach().cpu().numpy().astype(np.float32, copy=False))
    return ArrayRecord({VECTOR_KEY: Array(arr)})


def arrays_to_vector(arrays: ArrayRecord) -> torch.Tensor:
    """The flat float32 vector inside an ``ArrayRecord`` built by :func:`vector_to_arrays` (or any record with
    exactly one array)."""
    if VECTOR_KEY in arrays:
        arr = arrays[VECTOR_KEY].numpy()
    elif len(arrays) == 1:
        arr = next(iter(arrays.values())).numpy()
    else:
        raise ConfigError(f"expected an ArrayRecord with one array '{VECTOR_KEY}', got keys {list(arrays)}")
    return torch.from_numpy(np.array(arr, dtype=np.float32).reshape(-1))


def _config_record(config: Mapping[str, Any], what: str) -> ConfigRecord:
    """A polymodal config dict as a ConfigRecord (scalars and lists of scalars only, so nothing is lost)."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, tuple):
            v = list(v)
        ok = isinstance(v, _CONFIG_SCALARS) or (
            isinstance(v, list) and bool(v) and all(isinstance(x, type(v[0])) for x in v)
            and isinstance(v[0], _CONFIG_SCALARS))
        if not ok:
            raise ConfigError(f"{what} key {k!r}: {v!r} cannot travel in a Flower ConfigRecord "
                              "(bool, int, float, str, bytes or a non-empty list of one of them)")
        out[str(k)] = v
    return ConfigRecord(out)


def _metric_record(metrics: Mapping[str, Any]) -> MetricRecord:
    """The numeric (int / float) entries of ``metrics`` as a MetricRecord; other values are left out."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, int | float):
            out[str(k)] = v
    return MetricRecord(out)


def partition_of(context: Context) -> tuple[int, int]:
    """``(partition_id, num_partitions)`` from the node config: Flower's simulation runtime sets both keys; a
    deployed SuperNode gets them from ``flower-supernode --node-config "partition-id=0 num-partitions=3"``."""
    cfg = context.node_config
    if "partition-id" not in cfg or "num-partitions" not in cfg:
        raise ConfigError(
            "this SuperNode has no 'partition-id' / 'num-partitions' in its node config; start it with "
            "flower-supernode --node-config \"partition-id=<i> num-partitions=<n>\"")
    pid, n = int(cfg["partition-id"]), int(cfg["num-partitions"])
    if not 0 <= pid < n:
        raise ConfigError(f"node config partition-id={pid} is not in 0..{n - 1} (num-partitions={n})")
    return pid, n


# ---------------------------------------------------------------------------------------------- client
def client_rng(seed: int, rnd: int, cid: int) -> np.random.Generator:
    """The generator client ``cid`` gets in round ``rnd``: exactly what ``Simulator._fit_all`` hands to
    ``fit`` (a numpy generator only; no global torch seeding, a client needing torch randomness derives a
    ``torch.Generator`` from it). Must stay in step with the Simulator for Flower runs to reproduce it."""
    return np.random.default_rng([seed, rnd, cid])


ClientFactory = Callable[[int, int, dict[str, Any]], Client]


def as_client_app(client_factory: ClientFactory) -> ClientApp:
    """A ``ClientApp`` running a polymodal client: ``client_factory(partition_id, num_partitions, run_config)``
    rebuilds the client for this node's partition (each message may run in a fresh process, so the client
    must be rebuildable from its partition alone).

    ``train``: reads the download vector and the polymodal config, seeds exactly like the Simulator
    (:func:`client_rng`: ``np.random.default_rng([seed, round, cid])``, nothing else), runs
    ``client.fit`` and replies with its vector and a MetricRecord holding ``num-examples``, ``partition-id`` and
    the client's metrics. A failing ``fit`` replies ``failed = 1`` plus the reason (key ``"error"``), so the
    server records it under the client's id. ``query``: replies the client id and sample count (used by the
    strategy to map node ids to client ids before sampling).
    """
    app = ClientApp()

    def _client(context: Context) -> Client:
        pid, n = partition_of(context)
        return client_factory(pid, n, dict(context.run_config))

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        client = _client(context)
        cid = int(client.cid)
        try:
            meta = msg.content[META_KEY]
            seed, rnd = int(meta["seed"]), int(meta["round"])
            download = arrays_to_vector(msg.content[ARRAYS_KEY])
            config = dict(msg.content[CONFIG_KEY])
            rng = client_rng(seed, rnd, cid)
            res = client.fit(download, config, rng)
        except Exception as exc:  # a failing client is reported, not fatal (like the Simulator)
            return Message(RecordDict({
                METRICS_KEY: MetricRecord({"partition-id": cid, "num-examples": 0, "failed": 1}),
                ERROR_KEY: ConfigRecord({"reason": f"error: {type(exc).__name__}: {exc}"}),
            }), reply_to=msg)
        metrics = {**res.metrics, "num-examples": int(res.num_examples), "partition-id": cid}
        return Message(RecordDict({ARRAYS_KEY: vector_to_arrays(res.vector), METRICS_KEY: _metric_record(metrics)}),
                       reply_to=msg)

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        client = _client(context)
        return Message(RecordDict({METRICS_KEY: MetricRecord(
            {"partition-id": int(client.cid), "num-examples": int(client.num_examples)})}), reply_to=msg)

    return app


# ---------------------------------------------------------------------------------------------- strategy
def _wait_for_nodes(grid: Grid, n: int, timeout: float) -> list[int]:
    t_end = time.monotonic() + timeout
    while len(nodes := sorted(int(i) for i in grid.get_node_ids())) < n:
        if time.monotonic() > t_end:
            raise PolymodalError(f"only {len(nodes)} of the {n} required SuperNodes connected within {timeout:g} s")
        time.sleep(0.5)
    return nodes


class PolymodalFlowerStrategy(FlwrStrategy):
    """A Flower Message-API strategy that runs a polymodal strategy's rounds (see :func:`as_strategy`).

    ``history`` holds one :class:`~polymodal.federated.core.RoundLog` per round with the Simulator's metrics
    (clients, dropped, train_loss, the strategy's own metrics, bytes_down/up, evaluation, round_seconds);
    ``node_to_cid`` the learnt mapping from Flower node ids to polymodal client ids; ``params`` the current
    global vector; ``initial_metrics`` the evaluation of the initial parameters (when ``evaluate`` is given).
    """

    def __init__(self, strategy: Strategy, *, evaluate: Callable[[torch.Tensor], dict[str, float]] | None = None,
                 eval_every: int = 1, byzantine: Sequence[int] = (), attack: str = "none",
                 attack_kwargs: dict[str, float] | None = None, clients_per_round: int | None = None,
                 seed: int = 0, min_nodes: int = 1, node_wait_s: float = 120.0):
        if clients_per_round is not None and clients_per_round < 1:
            raise ConfigError(f"field 'clients_per_round': must be >= 1, got {clients_per_round}")
        if min_nodes < 1:
            raise ConfigError(f"field 'min_nodes': must be >= 1, got {min_nodes}")
        if attack != "none":
            apply_attack(attack, torch.zeros(1, 1), torch.zeros(0, 1), 1, **dict(attack_kwargs or {}))  # validate
        self.strategy = strategy
        self.evaluate = evaluate
        self.eval_every = max(1, int(eval_every))
        self.byzantine = {int(b) for b in byzantine}
        self.attack, self.attack_kwargs = attack, dict(attack_kwargs or {})
        self.clients_per_round = clients_per_round
        self.seed = int(seed)
        self.min_nodes = max(int(min_nodes), clients_per_round or 1)
        self.node_wait_s = float(node_wait_s)
        self.node_to_cid: dict[int, int] = {}
        self.params: torch.Tensor | None = None
        self.history: list[RoundLog] = []
        self.initial_metrics: dict[str, float] = {}
        self.num_rounds: int | None = None
        self.timeout: float | None = None
        self._sent: dict[int, int | None] = {}  # node id -> client id (None while unknown) of this round
        self._download: torch.Tensor | None = None
        self._t0 = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def initialize(self, arrays: ArrayRecord) -> None:
        """Start from ``arrays`` (the initial global vector): the polymodal strategy's ``initialize`` runs here."""
        self.params = arrays_to_vector(arrays).float()
        self.strategy.initialize(self.params)
        if self.evaluate is not None:
            self.initial_metrics = dict(self.evaluate(self.params.clone()))

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, timeout: float = 3600,
              train_config: ConfigRecord | None = None, evaluate_config: ConfigRecord | None = None,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None):
        """Flower's round loop (``Strategy.start``) after :meth:`initialize`; ``timeout`` (seconds) bounds each
        round's wait for replies, late clients are dropped as ``timeout``."""
        self.num_rounds, self.timeout = int(num_rounds), float(timeout)
        self.initialize(initial_arrays)
        return super().start(grid, initial_arrays, num_rounds=num_rounds, timeout=timeout,
                             train_config=train_config, evaluate_config=evaluate_config, evaluate_fn=evaluate_fn)

    def summary(self) -> None:
        """Log the wrapped strategy and the robustness settings."""
        from flwr.supercore import log

        log(logging.INFO, "\t├──> polymodal strategy: %s (%s)", getattr(self.strategy, "name", "?"),
            type(self.strategy).__name__)
        log(logging.INFO, "\t├──> clients per round: %s, seed %d", self.clients_per_round or "all", self.seed)
        log(logging.INFO, "\t└──> byzantine ids: %s, attack: %s", sorted(self.byzantine) or "-", self.attack)

    # -- node id <-> client id ---------------------------------------------------------------------------------
    def _learn(self, node_id: int, cid: int) -> None:
        for other, c in self.node_to_cid.items():
            if c == cid and other != node_id:
                raise ConfigError(f"SuperNodes {other} and {node_id} both report partition-id {cid}; give every "
                                  "SuperNode its own --node-config partition-id")
        self.node_to_cid[node_id] = cid

    def _discover(self, grid: Grid, nodes: list[int], rnd: int) -> None:
        """Ask nodes whose client id is unknown for it (a ``query`` message answered by :func:`as_client_app`)."""
        unknown = [n for n in nodes if n not in self.node_to_cid]
        if not unknown:
            return
        msgs = [Message(RecordDict({META_KEY: ConfigRecord({"round": rnd})}), n, "query", group_id=f"q{rnd}")
                for n in unknown]
        for reply in grid.send_and_receive(msgs, timeout=self.timeout):
            if reply.has_content() and METRICS_KEY in reply.content:
                self._learn(int(reply.metadata.src_node_id), int(reply.content[METRICS_KEY]["partition-id"]))

    def _sample(self, rnd: int, ids: list[int]) -> list[int]:
        """The Simulator's sampling: all clients, or ``clients_per_round`` drawn with ``rng([seed, rnd, 0xC1])``."""
        ids = sorted(ids)
        if self.clients_per_round is None or self.clients_per_round >= len(ids):
            return ids
        rng = np.random.default_rng([self.seed, rnd, 0xC1])
        return sorted(int(i) for i in rng.choice(ids, size=self.clients_per_round, replace=False))

    # -- training ----------------------------------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Round ``server_round`` (Flower counts from 1; polymodal round = ``server_round - 1``): sample clients,
        ask the polymodal strategy what to download and send it with the config, round and seed."""
        self._t0 = time.perf_counter()
        rnd = server_round - 1
        if self.params is None:
            self.initialize(arrays)
        nodes = _wait_for_nodes(grid, self.min_nodes, self.node_wait_s)
        if self.clients_per_round is None:
            targets = nodes
        else:
            self._discover(grid, nodes, rnd)
            by_cid = {c: n for n, c in self.node_to_cid.items() if n in nodes}
            targets = [by_cid[c] for c in self._sample(rnd, list(by_cid))]
        download, pm_config = self.strategy.configure_fit(rnd, self.params)
        self._download = download.detach().float().cpu()
        self._sent = {n: self.node_to_cid.get(n) for n in targets}
        meta = {**dict(config), "server-round": server_round, "round": rnd, "seed": self.seed}
        content = RecordDict({ARRAYS_KEY: vector_to_arrays(self._download),
                              CONFIG_KEY: _config_record(pm_config, "polymodal config"),
                              META_KEY: _config_record(meta, "train config")})
        return [Message(content, n, "train", group_id=str(server_round)) for n in targets]

    def _collect(self, replies: Iterable[Message]) -> tuple[dict[int, FitResult], dict[int | str, str]]:
        """Valid results by client id, and why the others were dropped (the Simulator's checks)."""
        assert self._download is not None
        results: dict[int, FitResult] = {}
        dropped: dict[int | str, str] = {}
        answered: set[int] = set()
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            answered.add(node)
            if msg.has_error():
                key = self._sent.get(node)
                dropped[f"node-{node}" if key is None else key] = f"error: {msg.error.reason}"
                continue
            content = msg.content
            if METRICS_KEY not in content or "partition-id" not in content[METRICS_KEY]:
                dropped[f"node-{node}"] = "reply without a 'metrics' record holding partition-id"
                continue
            m = dict(content[METRICS_KEY])
            cid = int(m.pop("partition-id"))
            self._learn(node, cid)
            if m.get("failed"):
                dropped[cid] = str(content[ERROR_KEY]["reason"]) if ERROR_KEY in content else "error"
                continue
            if ARRAYS_KEY not in content:
                dropped[cid] = "reply without an 'arrays' record"
                continue
            vec = arrays_to_vector(content[ARRAYS_KEY])
            n_ex = int(m.pop("num-examples", 0))
            if vec.shape != self._download.shape:
                dropped[cid] = f"bad shape: {tuple(vec.shape)} != {tuple(self._download.shape)}"
            elif not torch.isfinite(vec).all():
                dropped[cid] = "non-finite values in the update"
            else:
                results[cid] = FitResult(vec, n_ex, {k: float(v) for k, v in m.items()
                                                     if isinstance(v, int | float)})
        for node in set(self._sent) - answered:
            cid = self.node_to_cid.get(node)
            within = "in time" if self.timeout is None else f"within {self.timeout:g} s"
            dropped[f"node-{node}" if cid is None else cid] = f"timeout: no reply {within}"
        return results, dropped

    def _apply_attack(self, rnd: int, results: dict[int, FitResult]) -> dict[int, FitResult]:
        """Byzantine uploads replaced by the attack: the same rule and seed as ``Simulator._apply_attack``."""
        byz = [c for c in results if c in self.byzantine]
        if not byz or self.attack in ("none", "label_flip"):
            return results
        honest = [c for c in results if c not in self.byzantine]
        if not honest:
            return results
        gen = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, rnd, 0xA7]).integers(2**31)))
        forged = apply_attack(self.attack, torch.stack([results[c].vector for c in honest]),
                              torch.stack([results[c].vector for c in byz]), len(results), gen,
                              **self.attack_kwargs)
        out = dict(results)
        for k, c in enumerate(byz):
            out[c] = FitResult(forged[k], results[c].num_examples, {**results[c].metrics, "byzantine": 1.0})
        return out

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop failed / late / malformed / non-finite replies, apply the attack, call the polymodal
        ``aggregate_fit`` in client-id order, evaluate when due, log the round."""
        rnd = server_round - 1
        assert self.params is not None and self._download is not None
        results, dropped = self._collect(replies)
        metrics: dict[str, float] = {"clients": float(len(results)), "dropped": float(len(dropped))}
        if results:
            results = self._apply_attack(rnd, results)
            ordered = [(c, results[c]) for c in sorted(results)]
            self.params, agg_metrics = self.strategy.aggregate_fit(rnd, self.params, ordered)
            metrics.update(agg_metrics)
            honest = [r.metrics["loss"] for c, r in ordered if c not in self.byzantine and "loss" in r.metrics]
            if honest:
                metrics["train_loss"] = float(np.mean(honest))
        d = int(self._download.numel())
        metrics["bytes_down"] = float(4 * d * len(self._sent))
        metrics["bytes_up"] = float(4 * d * len(results))
        last = self.num_rounds is not None and server_round == self.num_rounds
        if self.evaluate is not None and ((rnd + 1) % self.eval_every == 0 or last):
            metrics.update(self.evaluate(self.params))
        metrics["round_seconds"] = time.perf_counter() - self._t0
        sampled = sorted(c for n, c in ((n, self.node_to_cid.get(n)) for n in self._sent) if c is not None)
        self.history.append(RoundLog(rnd, sampled, dropped, metrics))
        return vector_to_arrays(self.params), _metric_record(metrics)

    # -- no federated evaluation: the global model is evaluated centrally through ``evaluate`` -------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """No client-side evaluation (central evaluation happens in :meth:`aggregate_train`)."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def history_json(self) -> list[dict[str, Any]]:
        """``history`` as JSON-ready dicts (dropped keys as strings)."""
        return [{**asdict(h), "dropped": {str(k): v for k, v in h.dropped.items()}} for h in self.history]


def as_strategy(strategy: Strategy, *, evaluate: Callable[[torch.Tensor], dict[str, float]] | None = None,
                byzantine: Sequence[int] = (), attack: str = "none", attack_kwargs: dict[str, float] | None = None,
                clients_per_round: int | None = None, seed: int = 0, eval_every: int = 1, min_nodes: int = 1,
                node_wait_s: float = 120.0) -> PolymodalFlowerStrategy:
    """Wrap a polymodal strategy as a Flower Message-API ``Strategy`` (:class:`PolymodalFlowerStrategy`).

    Same knobs and the same seeding as :class:`~polymodal.federated.core.Simulator`: ``clients_per_round``
    (all when None; sampled over client ids with ``default_rng([seed, round, 0xC1])`` after a ``query`` that
    maps node ids to client ids), ``byzantine`` client ids whose uploads ``attack`` replaces, ``evaluate(params)
    -> dict`` every ``eval_every`` rounds and after the last one. ``min_nodes``: wait (up to ``node_wait_s``)
    until that many SuperNodes are connected before each round. Run it with
    ``strategy.start(grid, vector_to_arrays(initial), num_rounds=R, timeout=T)``.
    """
    return PolymodalFlowerStrategy(strategy, evaluate=evaluate, eval_every=eval_every, byzantine=byzantine,
                                   attack=attack, attack_kwargs=attack_kwargs, clients_per_round=clients_per_round,
                                   seed=seed, min_nodes=min_nodes, node_wait_s=node_wait_s)


# ---------------------------------------------------------------------------------------------- local deployment
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
                            timeout: float = 300.0, on_start: Callable[[list[int]], None] | None = None
                            ) -> dict[str, Any]:
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

    Returns the ServerApp's JSON (``rounds``: one dict per round as in ``Simulator.history``, ``final_params``,
    ``initial_metrics``, ``settings``) plus ``run_id``, ``workdir`` and ``seconds``.
    """
    if n_supernodes < 1 or rounds < 1:
        raise ConfigError(f"n_supernodes and rounds must be >= 1, got {n_supernodes} and {rounds}")
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="polymodal-flower-"))
    work = work.resolve()
    home, logs, app_dir, out = work / "flwr-home", work / "logs", work / "app", work / "metrics.json"
    for d in (home, logs):
        d.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    bindir = str(Path(sys.executable).parent)  # flower-superexec / flwr-serverapp / flwr-clientapp live here
    env = {**os.environ, "FLWR_HOME": str(home), "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1",
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
                               "digits-npz": str(npz)})

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


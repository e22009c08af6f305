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
- :func:`polymodal.federated.flower_launch.launch_local_federation` starts a real deployment on 127.0.0.1 (one ``flower-superlink``, N
  ``flower-supernode`` processes), submits the ready-made app :mod:`polymodal.federated.flower_apps` with
  ``flwr run`` and returns the per-round metrics the ServerApp wrote. It never needs Ray or ``uv``: the
  SuperLink runs with ``--disable-runtime-dependency-installation`` (SuperNodes do not install by default),
  and the FAB is a tiny app folder whose components point at the installed package.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import ConfigError, PolymodalError
from polymodal.core.offline import MissingDependencyError
from polymodal.federated.attacks import apply_attack
from polymodal.federated.core import (
    Client,
    FitResult,
    RoundLog,
    Strategy,
    aggregate_round,
    central_evaluation,
    check_upload,
    client_rng,
    combine_client_evals,
)

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
    "partition_of",
    "vector_to_arrays",
]

FLWR_VERSION = "1.41.0"
ARRAYS_KEY, VECTOR_KEY, CONFIG_KEY, META_KEY, METRICS_KEY, ERROR_KEY = (
    "arrays", "vector", "config", "pm", "metrics", "error")
#: extra uploads (``FitResult.arrays``) travel in the same ArrayRecord as ``"extra.<name>"``
EXTRA_PREFIX = "extra."
#: the key of a client's personal state in ``context.state`` (persisted by the SuperNode between messages)
STATE_KEY = "polymodal-client-state"
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


def result_to_arrays(res: FitResult) -> ArrayRecord:
    """A client's reply: its vector as ``"vector"`` and each extra upload as ``"extra.<name>"``."""
    record = vector_to_arrays(res.vector)
    for name, t in res.arrays.items():
        record[EXTRA_PREFIX + name] = Array(np.ascontiguousarray(t.detach().cpu().numpy()))
    return record


def arrays_to_result_parts(arrays: ArrayRecord) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Inverse of :func:`result_to_arrays`: the vector and the extra uploads (dtypes kept)."""
    vec = torch.from_numpy(np.array(arrays[VECTOR_KEY].numpy(), dtype=np.float32).reshape(-1))
    extras = {k[len(EXTRA_PREFIX):]: torch.from_numpy(np.array(v.numpy()))
              for k, v in arrays.items() if k.startswith(EXTRA_PREFIX)}
    return vec, extras


def _state_to_record(state: Mapping[str, torch.Tensor]) -> ArrayRecord:
    return ArrayRecord({k: Array(np.ascontiguousarray(v.detach().cpu().numpy())) for k, v in state.items()})


def _record_to_state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.array(v.numpy())) for k, v in record.items()}


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
ClientFactory = Callable[[int, int, dict[str, Any]], Client]


def as_client_app(client_factory: ClientFactory) -> ClientApp:
    """A ``ClientApp`` running a polymodal client: ``client_factory(partition_id, num_partitions, run_config)``
    rebuilds the client for this node's partition (each message may run in a fresh process, so the client
    must be rebuildable from its partition alone; a stateful client's ``state_dict`` is kept in
    ``context.state``, which the SuperNode persists between the messages of a run).

    ``train``: reads the download vector and the polymodal config, seeds exactly like the Simulator
    (:func:`client_rng`: ``np.random.default_rng([seed, round, cid])``, plus the phase for extra exchanges),
    runs ``client.fit`` and replies with its vector (and extra arrays) and a MetricRecord holding
    ``num-examples``, ``partition-id`` and the client's metrics. A failing ``fit`` replies ``failed = 1`` plus the
    reason (key ``"error"``), so the server records it under the client's id. ``evaluate``: the client's
    personalised evaluation (``client.evaluate(params, config)``) on its own test split. ``query``: replies the
    client id and sample count (used by the strategy to map node ids to client ids before sampling).
    """
    app = ClientApp()

    def _client(context: Context) -> Client:
        pid, n = partition_of(context)
        client = client_factory(pid, n, dict(context.run_config))
        if hasattr(client, "load_state_dict") and STATE_KEY in context.state:
            client.load_state_dict(_record_to_state(context.state[STATE_KEY]))
        return client

    def _failed(cid: int, exc: Exception, msg: Message) -> Message:
        return Message(RecordDict({
            METRICS_KEY: MetricRecord({"partition-id": cid, "num-examples": 0, "failed": 1}),
            ERROR_KEY: ConfigRecord({"reason": f"error: {type(exc).__name__}: {exc}"}),
        }), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        pid, _ = partition_of(context)
        try:
            client = _client(context)
            cid = int(client.cid)
            meta = msg.content[META_KEY]
            seed, rnd, phase = int(meta["seed"]), int(meta["round"]), int(meta.get("phase", 0))
            download = arrays_to_vector(msg.content[ARRAYS_KEY])
            config = dict(msg.content[CONFIG_KEY])
            res = client.fit(download, config, client_rng(seed, rnd, cid, phase))
            if hasattr(client, "state_dict"):
                context.state[STATE_KEY] = _state_to_record(client.state_dict())
        except Exception as exc:  # a failing client is reported, not fatal (like the Simulator)
            return _failed(pid, exc, msg)
        metrics = {**res.metrics, "num-examples": int(res.num_examples), "partition-id": cid}
        return Message(RecordDict({ARRAYS_KEY: result_to_arrays(res), METRICS_KEY: _metric_record(metrics)}),
                       reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        pid, _ = partition_of(context)
        try:
            client = _client(context)
            params = arrays_to_vector(msg.content[ARRAYS_KEY])
            config = dict(msg.content[CONFIG_KEY]) if CONFIG_KEY in msg.content else {}
            out = client.evaluate(params, config) if hasattr(client, "evaluate") else None
        except Exception as exc:
            return _failed(pid, exc, msg)
        return Message(RecordDict({METRICS_KEY: _metric_record({**(out or {}), "partition-id": pid,
                                                                 "evaluated": int(out is not None)})}),
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
                 seed: int = 0, min_nodes: int = 1, node_wait_s: float = 120.0, evaluate_clients: bool = False):
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
        self.evaluate_clients = bool(evaluate_clients)
        self.node_to_cid: dict[int, int] = {}
        self._grid: Grid | None = None
        self._bytes_up = self._bytes_down = 0
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
        self._grid = grid
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
        self._bytes_down = 4 * int(self._download.numel()) * len(targets)
        self._bytes_up = 0
        meta = {**dict(config), "server-round": server_round, "round": rnd, "seed": self.seed}
        content = RecordDict({ARRAYS_KEY: vector_to_arrays(self._download),
                              CONFIG_KEY: _config_record(pm_config, "polymodal config"),
                              META_KEY: _config_record(meta, "train config")})
        return [Message(content, n, "train", group_id=str(server_round)) for n in targets]

    def _collect(self, replies: Iterable[Message], download: torch.Tensor, sent: Mapping[int, int | None]
                 ) -> tuple[dict[int, FitResult], dict[int | str, str]]:
        """Valid results by client id, and why the others were dropped (the Simulator's checks)."""
        results: dict[int, FitResult] = {}
        dropped: dict[int | str, str] = {}
        answered: set[int] = set()
        for msg in replies:
            node = int(msg.metadata.src_node_id)
            answered.add(node)
            if msg.has_error():
                key = sent.get(node)
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
            vec, extras = arrays_to_result_parts(content[ARRAYS_KEY])
            n_ex = int(m.pop("num-examples", 0))
            res = FitResult(vec, n_ex, {k: float(v) for k, v in m.items() if isinstance(v, int | float)}, extras)
            self._bytes_up += 4 * res.numel()
            reason = check_upload(res, download, self.strategy)
            if reason is not None:
                dropped[cid] = reason
            else:
                results[cid] = res
        for node in set(sent) - answered:
            cid = self.node_to_cid.get(node)
            within = "in time" if self.timeout is None else f"within {self.timeout:g} s"
            dropped[f"node-{node}" if cid is None else cid] = f"timeout: no reply {within}"
        return results, dropped

    def _exchange(self, rnd: int, server_round: int, dropped: dict[int | str, str]):
        """``exchange(ids | None, download, config)`` for ``strategy.post_round``: an extra train message to those
        clients (all connected ones for None), seeded by the phase like the Simulator's."""
        phase = [0]

        def exchange(ids, download: torch.Tensor, config: dict[str, Any]) -> dict[int, FitResult]:
            assert self._grid is not None
            phase[0] += 1
            nodes = sorted(int(i) for i in self._grid.get_node_ids())
            self._discover(self._grid, nodes, rnd)
            by_cid = {c: n for n, c in self.node_to_cid.items() if n in nodes}
            wanted = sorted(by_cid) if ids is None else sorted(int(i) for i in ids)
            missing = [c for c in wanted if c not in by_cid]
            for c in missing:
                dropped[c] = f"phase {phase[0]}: no connected SuperNode"
            sent = {by_cid[c]: c for c in wanted if c in by_cid}
            down = download.detach().float().cpu()
            self._bytes_down += 4 * int(down.numel()) * len(sent)
            meta = {"server-round": server_round, "round": rnd, "seed": self.seed, "phase": phase[0]}
            content = RecordDict({ARRAYS_KEY: vector_to_arrays(down),
                                  CONFIG_KEY: _config_record(config, "polymodal config"),
                                  META_KEY: _config_record(meta, "train config")})
            msgs = [Message(content, n, "train", group_id=f"{server_round}.{phase[0]}") for n in sent]
            results, lost = self._collect(self._grid.send_and_receive(msgs, timeout=self.timeout), down, sent)
            dropped.update({k: f"phase {phase[0]}: {why}" for k, why in lost.items() if k not in dropped})
            return results

        return exchange

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Drop failed / late / malformed / non-finite replies, apply the attack, call the polymodal
        ``aggregate_fit`` in client-id order, evaluate when due, log the round."""
        rnd = server_round - 1
        assert self.params is not None and self._download is not None
        results, dropped = self._collect(replies, self._download, self._sent)
        metrics: dict[str, float] = {"clients": float(len(results)), "dropped": float(len(dropped))}
        self.params, round_metrics = aggregate_round(self.strategy, self.params, results, self.byzantine,
                                                     self.attack, self.attack_kwargs, self.seed, rnd)
        metrics.update(round_metrics)
        post = getattr(self.strategy, "post_round", None)
        if post is not None:
            self.params, post_metrics = post(rnd, self.params, self._exchange(rnd, server_round, dropped))
            metrics.update(post_metrics)
        metrics["bytes_down"] = float(self._bytes_down)
        metrics["bytes_up"] = float(self._bytes_up)
        if self._due(server_round):
            metrics.update(central_evaluation(self.strategy, rnd, self.params, self.evaluate))
        metrics["round_seconds"] = time.perf_counter() - self._t0
        sampled = sorted(c for n, c in ((n, self.node_to_cid.get(n)) for n in self._sent) if c is not None)
        self.history.append(RoundLog(rnd, sampled, dropped, metrics))
        return vector_to_arrays(self.params), _metric_record(metrics)

    def _due(self, server_round: int) -> bool:
        last = self.num_rounds is not None and server_round == self.num_rounds
        return server_round % self.eval_every == 0 or last

    # -- personalised evaluation on the clients' own test splits (``evaluate_clients``) -------------------------
    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """With ``evaluate_clients``, when evaluation is due: every connected client evaluates the global
        parameters with its personal state (``client.evaluate(params, config)``). Otherwise nothing (the central
        evaluation happens in :meth:`aggregate_train`)."""
        if not self.evaluate_clients or not self._due(server_round) or self.params is None:
            return []
        meta = {"round": server_round - 1, "seed": self.seed}
        content = RecordDict({ARRAYS_KEY: vector_to_arrays(self.params), CONFIG_KEY: _config_record(meta, "eval")})
        return [Message(content, int(n), "evaluate", group_id=f"e{server_round}") for n in grid.get_node_ids()]

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Combine the clients' personalised accuracies (:func:`combine_client_evals`) into the round's log."""
        evals: dict[int, dict[str, float]] = {}
        for msg in replies:
            if msg.has_error() or METRICS_KEY not in msg.content:
                continue
            m = dict(msg.content[METRICS_KEY])
            if m.get("failed") or not m.get("evaluated"):
                continue
            evals[int(m.pop("partition-id"))] = {k: float(v) for k, v in m.items()}
        combined = combine_client_evals(evals)
        if self.history and combined:
            self.history[-1].metrics.update(combined)
        return _metric_record(combined) if combined else None

    def history_json(self) -> list[dict[str, Any]]:
        """``history`` as JSON-ready dicts (dropped keys as strings)."""
        return [{**asdict(h), "dropped": {str(k): v for k, v in h.dropped.items()}} for h in self.history]


def as_strategy(strategy: Strategy, *, evaluate: Callable[[torch.Tensor], dict[str, float]] | None = None,
                byzantine: Sequence[int] = (), attack: str = "none", attack_kwargs: dict[str, float] | None = None,
                clients_per_round: int | None = None, seed: int = 0, eval_every: int = 1, min_nodes: int = 1,
                node_wait_s: float = 120.0, evaluate_clients: bool = False) -> PolymodalFlowerStrategy:
    """Wrap a polymodal strategy as a Flower Message-API ``Strategy`` (:class:`PolymodalFlowerStrategy`).

    Same knobs and the same seeding as :class:`~polymodal.federated.core.Simulator`: ``clients_per_round``
    (all when None; sampled over client ids with ``default_rng([seed, round, 0xC1])`` after a ``query`` that
    maps node ids to client ids), ``byzantine`` client ids whose uploads ``attack`` replaces, ``evaluate(params)
    -> dict`` every ``eval_every`` rounds and after the last one. ``min_nodes``: wait (up to ``node_wait_s``)
    until that many SuperNodes are connected before each round. ``evaluate_clients``: every client also
    evaluates the global parameters on its own test split (personalised evaluation, Flower's evaluate messages).
    Strategies with ``post_round`` get their extra exchanges over the same Grid. Run it with
    ``strategy.start(grid, vector_to_arrays(initial), num_rounds=R, timeout=T)``.
    """
    return PolymodalFlowerStrategy(strategy, evaluate=evaluate, eval_every=eval_every, byzantine=byzantine,
                                   attack=attack, attack_kwargs=attack_kwargs, clients_per_round=clients_per_round,
                                   seed=seed, min_nodes=min_nodes, node_wait_s=node_wait_s,
                                   evaluate_clients=evaluate_clients)


# ---------------------------------------------------------------------------------------------- local deployment

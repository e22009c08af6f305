"""Ready-made Flower apps: FedAvg or Byrd-NAFL (and its robust-SGD / heavy-ball baselines, any aggregator and
attack) on scikit-learn digits, IID over ``num-partitions`` clients, MLP 64-32-10 (the model of
``tests/federated/test_core.py``); or, with the ``recipe`` setting, any method of a federated recipe that
registered its federation (:func:`~polymodal.federated.federation.register_federation`: ``fedsm``, ``fedpall``,
``co-pfl``), built from the recipe's config (``quick`` settings, plus the JSON overrides in ``recipe-set``) exactly
as the recipe builds it, in the ServerApp and in every ClientApp process.

``server_app`` and ``client_app`` are what a FAB's ``[tool.flwr.app.components]`` points at
(``polymodal.federated.flower_apps:server_app`` / ``:client_app``); :func:`~polymodal.federated.flower.
launch_local_federation` writes such a FAB. Settings come from the run config (``[tool.flwr.app.config]`` or
``flwr run --run-config``), else from the environment, else the defaults:

==================  ===========================  ===========
run-config key      environment variable         default
==================  ===========================  ===========
num-server-rounds   POLYMODAL_FL_ROUNDS          2
num-partitions      POLYMODAL_FL_PARTITIONS      3
seed                POLYMODAL_FL_SEED            0
lr                  POLYMODAL_FL_LR              0.1
local-epochs        POLYMODAL_FL_LOCAL_EPOCHS    1
batch-size          POLYMODAL_FL_BATCH_SIZE      32
timeout             POLYMODAL_FL_TIMEOUT         300 (s, per round)
out-json            POLYMODAL_FL_OUT             "" (no file)
digits-npz          POLYMODAL_FL_DIGITS_NPZ      "" (load from scikit-learn)
strategy            POLYMODAL_FL_STRATEGY        "fedavg" (or "byrd-nafl", "byrd-sgd", "heavy-ball")
aggregator          POLYMODAL_FL_AGGREGATOR      "mean" (any name of ``aggregators.AGGREGATORS``)
attack              POLYMODAL_FL_ATTACK          "none" (any name of ``attacks.ATTACKS``)
n-byzantine         POLYMODAL_FL_N_BYZANTINE     0 (clients 0..n-1 are Byzantine; also the aggregator's f)
beta                POLYMODAL_FL_BETA            0.9 (momentum of the Byrd-NAFL family)
recipe              POLYMODAL_FL_RECIPE          "" (a registered federated recipe: fedsm, fedpall, co-pfl)
method              POLYMODAL_FL_METHOD          "" (one of the recipe's methods; default the recipe's own)
recipe-set          POLYMODAL_FL_RECIPE_SET      "{}" (JSON object of recipe config overrides)
quick               POLYMODAL_FL_QUICK           true (start from the recipe's --quick settings)
==================  ===========================  ===========

With ``recipe``, the federation (clients, rounds, sampling, evaluation) comes from the recipe's config and
``num-server-rounds`` / ``num-partitions`` must match it (:func:`~polymodal.federated.flower_launch.
launch_local_federation` sets them).

The data split (stratified 75/25, seed 0), the IID partition (seeded by ``seed``) and the initial model
(``torch.manual_seed(seed)``) are functions of the settings alone, so the ServerApp, every ClientApp process and
the in-process reference :func:`simulate` build the same federation; :func:`simulate` is the
:class:`~polymodal.federated.core.Simulator` run a Flower run must reproduce.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from flwr.serverapp import ServerApp
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms import ByrdNAFL
from polymodal.federated.attacks import label_flip
from polymodal.federated.core import Simulator, TorchClient, get_vector
from polymodal.federated.data import load_digits_data, train_test_split_stratified
from polymodal.federated.flower import FLWR_VERSION, as_client_app, as_strategy, vector_to_arrays
from polymodal.federated.partition import iid
from polymodal.federated.strategies import FedAvg

_SETTINGS: dict[str, tuple[str, type, Any]] = {
    "num-server-rounds": ("POLYMODAL_FL_ROUNDS", int, 2),
    "num-partitions": ("POLYMODAL_FL_PARTITIONS", int, 3),
    "seed": ("POLYMODAL_FL_SEED", int, 0),
    "lr": ("POLYMODAL_FL_LR", float, 0.1),
    "local-epochs": ("POLYMODAL_FL_LOCAL_EPOCHS", int, 1),
    "batch-size": ("POLYMODAL_FL_BATCH_SIZE", int, 32),
    "timeout": ("POLYMODAL_FL_TIMEOUT", float, 300.0),
    "out-json": ("POLYMODAL_FL_OUT", str, ""),
    "digits-npz": ("POLYMODAL_FL_DIGITS_NPZ", str, ""),
    "strategy": ("POLYMODAL_FL_STRATEGY", str, "fedavg"),
    "aggregator": ("POLYMODAL_FL_AGGREGATOR", str, "mean"),
    "attack": ("POLYMODAL_FL_ATTACK", str, "none"),
    "n-byzantine": ("POLYMODAL_FL_N_BYZANTINE", int, 0),
    "beta": ("POLYMODAL_FL_BETA", float, 0.9),
    "recipe": ("POLYMODAL_FL_RECIPE", str, ""),
    "method": ("POLYMODAL_FL_METHOD", str, ""),
    "recipe-set": ("POLYMODAL_FL_RECIPE_SET", str, "{}"),
    "quick": ("POLYMODAL_FL_QUICK", lambda v: v if isinstance(v, bool) else str(v).lower() in ("1", "true", "yes"),
              True),
}
STRATEGIES = ("fedavg", "byrd-nafl", "byrd-sgd", "heavy-ball")


def settings(run_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The app's settings: run config, else environment, else default (table in the module docstring)."""
    run_config = run_config or {}
    out = {}
    for key, (var, cast, default) in _SETTINGS.items():
        if key in run_config:
            out[key] = cast(run_config[key])
        elif var in os.environ:
            out[key] = cast(os.environ[var])
        else:
            out[key] = default
    return out


def model_fn() -> nn.Module:
    """MLP 64-32-10."""
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")


@lru_cache(maxsize=2)
def digits_split(npz: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: digits flattened to 64 features, stratified 75/25 split (seed 0).

    ``npz``: a file written by :func:`save_digits_split` to read instead (the same arrays, without importing
    scikit-learn: every ClientApp message runs in a fresh process, and the import dominates its start-up)."""
    if npz and Path(npz).is_file():
        with np.load(npz) as f:
            return tuple(f[k] for k in _SPLIT_KEYS)  # type: ignore[return-value]
    train, test = train_test_split_stratified(load_digits_data(), 0.25, seed=0)
    return train.flat(), train.y, test.flat(), test.y


def save_digits_split(path: str | Path) -> Path:
    """Write :func:`digits_split` to ``path`` (``.npz``) for the ``digits-npz`` setting."""
    path = Path(path)
    np.savez(path, **dict(zip(_SPLIT_KEYS, digits_split(), strict=True)))
    return path


def make_client(partition_id: int, num_partitions: int, seed: int, npz: str = "", *, flip: bool = False
                ) -> TorchClient:
    """Client ``partition_id`` of an IID split of the training digits into ``num_partitions`` (seeded by ``seed``);
    ``flip``: its labels flipped (the data-level label-flip attack)."""
    x, y, _, _ = digits_split(npz)
    part = iid(len(y), num_partitions, seed=seed)[partition_id]
    labels = label_flip(y[part], 10) if flip else y[part]
    return TorchClient(partition_id, model_fn, x[part], labels)


def _flips(cfg: Mapping[str, Any], cid: int) -> bool:
    return cfg["attack"] == "label_flip" and cid < cfg["n-byzantine"]


def initial_params(seed: int) -> torch.Tensor:
    """The initial global vector: ``model_fn()`` after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return get_vector(model_fn())


def evaluator(npz: str = ""):
    """``evaluate(params) -> {"accuracy", "loss"}`` on the held-out digits."""
    _, _, xt, yt = digits_split(npz)
    x, y = torch.as_tensor(xt), torch.as_tensor(yt)
    model = model_fn()

    def evaluate(params: torch.Tensor) -> dict[str, float]:
        nn.utils.vector_to_parameters(params.float(), model.parameters())
        with torch.no_grad():
            logits = model(x)
        return {"accuracy": float((logits.argmax(1) == y).float().mean()),
                "loss": float(nn.functional.cross_entropy(logits, y))}

    return evaluate


def make_strategy(cfg: Mapping[str, Any]):
    """FedAvg (local epochs, aggregator over parameters) or the Byrd-NAFL family (one gradient per round)."""
    name, byz = cfg["strategy"], tuple(range(cfg["n-byzantine"]))
    if name == "fedavg":
        return FedAvg(lr=cfg["lr"], local_epochs=cfg["local-epochs"], batch_size=cfg["batch-size"],
                      aggregator=cfg["aggregator"], n_byzantine=cfg["n-byzantine"])
    momentum = {"byrd-nafl": "nesterov", "byrd-sgd": "none", "heavy-ball": "heavy_ball"}.get(name)
    if momentum is None:
        raise ConfigError(f"setting 'strategy': {name!r} is not one of {STRATEGIES}")
    return ByrdNAFL(aggregator=cfg["aggregator"], beta=cfg["beta"], lr=cfg["lr"], n_byzantine=cfg["n-byzantine"],
                    momentum=momentum, batch_size=cfg["batch-size"], byzantine_ids=byz)


def _attack_setup(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"byzantine": tuple(range(cfg["n-byzantine"])), "attack": cfg["attack"]}


def simulate(run_config: Mapping[str, Any] | None = None) -> Simulator:
    """The in-process reference: the same federation run by :class:`~polymodal.federated.core.Simulator`."""
    cfg = settings(run_config)
    if cfg["recipe"]:
        fed = _federation_of(cfg)
        sim = fed.simulator()
        sim.run(fed.rounds)
        return sim
    n = cfg["num-partitions"]
    sim = Simulator([make_client(i, n, cfg["seed"], flip=_flips(cfg, i)) for i in range(n)], make_strategy(cfg),
                    initial_params(cfg["seed"]), seed=cfg["seed"], evaluate=evaluator(), **_attack_setup(cfg))
    sim.run(cfg["num-server-rounds"])
    return sim


def recipe_federation(recipe: str, method: str = "", overrides: Mapping[str, Any] | str | None = None,
                      quick: bool = True):
    """The :class:`~polymodal.federated.federation.Federation` of ``method`` (default: the recipe's own name) of a
    federated recipe, built from its config (``quick`` settings, then ``overrides``) by the builder it registered."""
    from polymodal.core.execute import make_config
    from polymodal.core.registry import get_recipe
    from polymodal.federated.federation import FEDERATIONS

    rec = get_recipe(recipe)  # imports the family's recipes, which register their federations
    if rec.name not in FEDERATIONS:
        raise ConfigError(f"recipe {rec.name!r} has no Flower federation; choose one of {', '.join(sorted(FEDERATIONS))}")
    if isinstance(overrides, str):
        try:
            overrides = json.loads(overrides or "{}")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"setting 'recipe-set' is not a JSON object: {exc}") from exc
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"setting 'recipe-set' must be a JSON object, got {overrides!r}")
    cfg = make_config(rec, overrides=dict(overrides), quick=quick)
    return FEDERATIONS[rec.name](cfg, method or rec.name)


@lru_cache(maxsize=4)
def _cached_federation(recipe: str, method: str, overrides: str, quick: bool):
    return recipe_federation(recipe, method, overrides, quick)


def _federation_of(cfg: Mapping[str, Any]):
    return _cached_federation(cfg["recipe"], cfg["method"], cfg["recipe-set"], cfg["quick"])


def _client_factory(partition_id: int, num_partitions: int, run_config: dict[str, Any]):
    cfg = settings(run_config)
    if cfg["recipe"]:
        fed = _federation_of(cfg)
        if num_partitions != fed.n_clients:
            raise ConfigError(f"{cfg['recipe']}/{cfg['method']} has {fed.n_clients} clients but this SuperNode was "
                              f"started with num-partitions={num_partitions}")
        return fed.make_client(partition_id)
    return make_client(partition_id, num_partitions, cfg["seed"], cfg["digits-npz"], flip=_flips(cfg, partition_id))


def _write_json(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(target)  # atomic: a reader never sees a half-written file


def run_server(grid, context) -> dict[str, Any]:
    """The ServerApp's main: wrap FedAvg with :func:`~polymodal.federated.flower.as_strategy`, wait for
    ``num-partitions`` SuperNodes, run the rounds, write the metrics JSON (``out-json``), return it."""
    cfg = settings(context.run_config)
    try:
        if cfg["recipe"]:
            fed = _federation_of(cfg)
            strategy = as_strategy(fed.make_strategy(), evaluate=fed.evaluate, seed=fed.seed,
                                   clients_per_round=fed.clients_per_round, eval_every=fed.eval_every,
                                   evaluate_clients=fed.evaluate_clients, min_nodes=fed.n_clients,
                                   node_wait_s=cfg["timeout"])
            strategy.start(grid, vector_to_arrays(fed.initial), num_rounds=fed.rounds, timeout=cfg["timeout"])
        else:
            strategy = as_strategy(make_strategy(cfg), evaluate=evaluator(cfg["digits-npz"]), seed=cfg["seed"],
                                   min_nodes=cfg["num-partitions"], node_wait_s=cfg["timeout"], **_attack_setup(cfg))
            strategy.start(grid, vector_to_arrays(initial_params(cfg["seed"])), num_rounds=cfg["num-server-rounds"],
                           timeout=cfg["timeout"])
        assert strategy.params is not None
        payload = {"rounds": strategy.history_json(), "initial_metrics": strategy.initial_metrics,
                   "final_params": strategy.params.tolist(),
                   "node_to_cid": {str(k): v for k, v in strategy.node_to_cid.items()},
                   "settings": cfg, "flwr": FLWR_VERSION, "run_id": int(context.run_id)}
    except Exception as exc:
        if cfg["out-json"]:
            _write_json(cfg["out-json"], {"error": f"{type(exc).__name__}: {exc}",
                                          "traceback": traceback.format_exc(), "settings": cfg})
        raise
    if cfg["out-json"]:
        _write_json(cfg["out-json"], payload)
    return payload


# Plain ``name = ...`` assignments: ``flwr run`` checks the component references by parsing this file (AST), so
# ``server_app`` / ``client_app`` must be assigned by name at module level (a tuple unpacking is not found).
server_app = ServerApp()
client_app = as_client_app(_client_factory)


@server_app.main()
def _main(grid, context) -> None:
    run_server(grid, context)

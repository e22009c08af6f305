"""Flower adapter (flwr==1.41.0): the wrapped strategy reproduces the in-process Simulator bit for bit, through an
in-process Grid and through a real local deployment (SuperLink + 3 SuperNodes as separate processes)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

flwr = pytest.importorskip("flwr")

from flower_testing import InProcessGrid  # noqa: E402

from polymodal.federated import flower_apps as fa  # noqa: E402
from polymodal.federated.core import Simulator  # noqa: E402
from polymodal.federated.flower import as_client_app, as_strategy, vector_to_arrays  # noqa: E402
from polymodal.federated.flower_launch import launch_local_federation  # noqa: E402
from polymodal.federated.strategies import FedAvg  # noqa: E402

# Both paths ship float32 vectors losslessly, seed every client with default_rng([seed, round, cid]) and aggregate
# in client-id order, so the results are bit-identical; 1e-6 only guards against a platform's float noise.
TOL = 1e-6


RUN_CONFIG = {"num-server-rounds": 2, "num-partitions": 3, "seed": 0}


BYRD_CONFIG = {**RUN_CONFIG, "num-partitions": 5, "strategy": "byrd-nafl", "aggregator": "coordinate_median",
               "attack": "label_flip", "n-byzantine": 1}


@pytest.mark.parametrize("run_config", [RUN_CONFIG, BYRD_CONFIG], ids=["fedavg", "byrd-nafl"])
def test_in_process_grid_matches_simulator(task_identity, run_config):
    cfg = fa.settings(run_config)
    n = cfg["num-partitions"]
    strategy = as_strategy(fa.make_strategy(cfg), evaluate=fa.evaluator(), seed=0, min_nodes=n,
                           byzantine=tuple(range(cfg["n-byzantine"])), attack=cfg["attack"])
    result = strategy.start(InProcessGrid(fa.client_app, n, run_config), vector_to_arrays(fa.initial_params(0)),
                            num_rounds=2, timeout=60)
    sim = fa.simulate(run_config)
    assert torch.equal(strategy.params, sim.params)
    for got, want in zip(strategy.history, sim.history, strict=True):
        assert got.sampled == want.sampled == list(range(n)) and got.dropped == want.dropped == {}
        for key in ("train_loss", "accuracy", "loss", "bytes_up", "bytes_down", "clients"):
            assert got.metrics[key] == want.metrics[key], key
    assert sorted(strategy.node_to_cid.values()) == list(range(n))
    assert result.train_metrics_clientapp[2]["accuracy"] == sim.history[-1].metrics["accuracy"]


class OfflineClient:
    cid, num_examples = 3, 10

    def fit(self, download, config, rng):
        raise RuntimeError("sensor offline")


def test_sampling_attack_and_failures_match_simulator(task_identity):
    """clients_per_round (sampled after a query maps node ids), a sign-flipping Byzantine client under coordinate
    median, and a client whose fit raises: same sampling, drops and parameters as the Simulator."""

    def factory(pid, n, run_config):
        return OfflineClient() if pid == 3 else fa.make_client(pid, 3, 0)

    def strategy():
        return FedAvg(lr=0.1, aggregator="coordinate_median", n_byzantine=1)

    kw = dict(clients_per_round=3, seed=5, byzantine=(1,), attack="sign_flip")
    wrapped = as_strategy(strategy(), evaluate=fa.evaluator(), **kw)
    wrapped.start(InProcessGrid(as_client_app(factory), 4, {}), vector_to_arrays(fa.initial_params(0)),
                  num_rounds=3, timeout=60)
    sim = Simulator([factory(i, 4, {}) for i in range(4)], strategy(), fa.initial_params(0),
                    evaluate=fa.evaluator(), **kw)
    sim.run(3)
    assert torch.equal(wrapped.params, sim.params)
    assert [h.sampled for h in wrapped.history] == [h.sampled for h in sim.history]
    assert [h.dropped for h in wrapped.history] == [h.dropped for h in sim.history]
    assert any(3 in h.dropped and "sensor offline" in h.dropped[3] for h in wrapped.history)
    assert [h.metrics["accuracy"] for h in wrapped.history] == [h.metrics["accuracy"] for h in sim.history]


def _our_flower_processes(home: Path, ports: list[str]):
    """Live (non-zombie) Flower processes started for this federation: FLWR_HOME is ours or a port of ours is
    on the command line."""
    import psutil

    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["status"] == psutil.STATUS_ZOMBIE or not ("flower-" in cmd or "flwr" in cmd):
            continue
        try:
            ours = p.environ().get("FLWR_HOME") == str(home)
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            ours = False
        if ours or any(f"127.0.0.1:{port}" in cmd or f"--port {port}" in cmd for port in ports):
            found.append((p.pid, cmd))
    return found


@pytest.mark.slow
def test_local_deployment_reproduces_the_simulator(tmp_path):
    """flower-superlink + 3 flower-supernode processes on 127.0.0.1, app submitted with `flwr run`."""
    import psutil

    started: list[int] = []
    running: list[tuple[int, str]] = []

    def on_start(pids):
        started.extend(pids)
        running.extend(_our_flower_processes(tmp_path / "flwr-home", []))  # the detector sees them while alive

    result = launch_local_federation(n_supernodes=3, rounds=2, seed=0, workdir=tmp_path, timeout=240,
                                     on_start=on_start)
    sim = fa.simulate(RUN_CONFIG)
    rounds = result["rounds"]
    assert len(rounds) == 2 and all(r["sampled"] == [0, 1, 2] and r["dropped"] == {} for r in rounds)
    assert abs(rounds[-1]["metrics"]["accuracy"] - sim.history[-1].metrics["accuracy"]) <= TOL
    np.testing.assert_allclose(result["final_params"], sim.params.numpy(), rtol=0, atol=TOL)
    assert sorted(result["node_to_cid"].values()) == [0, 1, 2] and len(started) == 4

    assert {pid for pid, _ in running} >= set(started)

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert [pid for pid in started if alive(pid)] == []
    conf = (tmp_path / "flwr-home" / "config.toml").read_text()
    port = conf.split("127.0.0.1:")[1].split('"')[0]
    assert _our_flower_processes(tmp_path / "flwr-home", [port]) == []
    assert os.path.exists(tmp_path / "logs" / "superlink.log")


# tiny federations of the three recipes that registered one (2 rounds; FedSM re-trains its classifier in round 2)
RECIPE_RUNS = {
    "fedsm": ("fedsm", {"rounds": 2, "crt_rounds": 1, "n_clients": 3, "clients_per_round": 2, "eval_every": 1,
                        "methods": ["fedsm", "fedavg"]}, "fedsm/accuracy"),
    "fedpall": ("fedpall", {"rounds": 2, "domains": ["mnist", "sk-digits", "mnist-inverted"], "train_per_client": 40,
                            "test_per_domain": 40, "local_epochs": 1}, "personal_accuracy"),
    "co-pfl": ("co-pfl", {"rounds": 2, "n_clients": 3, "eval_every": 1, "max_samples": 300}, "personal_accuracy"),
}


@pytest.mark.slow
def test_recipe_federations_run_on_a_local_deployment(tmp_path):
    """FedSM (extra post-round exchanges), FedPall (feature uploads, server-side training) and CO-PFL (personal
    state kept by each SuperNode between messages, personalised evaluation messages) over real SuperLink and
    SuperNode processes: the same numbers as the in-process Simulator (one torch thread, as every ClientApp
    process of the launcher, so float sums are done in the same order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for recipe, (method, overrides, key) in RECIPE_RUNS.items():
            result = launch_local_federation(workdir=tmp_path / recipe, timeout=400, recipe=recipe, method=method,
                                             recipe_set=overrides)
            print(f"{recipe}: {result['seconds']:.1f} s over Flower")
            sim = fa.simulate({"recipe": recipe, "method": method, "recipe-set": result["settings"]["recipe-set"]})
            rounds = result["rounds"]
            assert len(rounds) == len(sim.history) == 2, recipe
            for got, want in zip(rounds, sim.history, strict=True):
                assert got["dropped"] == {} and got["sampled"] == want.sampled, recipe
                assert abs(got["metrics"][key] - want.metrics[key]) <= TOL, (recipe, key)
            np.testing.assert_allclose(result["final_params"], sim.params.numpy(), rtol=0, atol=TOL, err_msg=recipe)
    finally:
        torch.set_num_threads(threads)

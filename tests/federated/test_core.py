"""The in-process FL engine: FedAvg learns, order independence, failing/late/NaN clients, exact resume;
Byrd-NAFL's update rules."""

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.core.runs import Run
from polymodal.federated.algorithms import ByrdNAFL
from polymodal.federated.core import FitResult, Simulator, TorchClient, get_vector
from polymodal.federated.strategies import FedAvg, FedProx


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    return x[order[:1400]], d.target[order[:1400]], x[order[1400:]], d.target[order[1400:]]


def model_fn():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def make_clients(digits, n=5):
    x, y, _, _ = digits
    parts = np.array_split(np.arange(len(x)), n)
    return [TorchClient(i, model_fn, x[p], y[p]) for i, p in enumerate(parts)]


def evaluator(digits):
    _, _, xt, yt = digits
    model = model_fn()

    def evaluate(params):
        nn.utils.vector_to_parameters(params, model.parameters())
        with torch.no_grad():
            return {"accuracy": float((model(torch.as_tensor(xt)).argmax(1).numpy() == yt).mean())}

    return evaluate


def initial():
    torch.manual_seed(0)
    return get_vector(model_fn())


def test_fedavg_learns_digits(digits):
    sim = Simulator(make_clients(digits), FedAvg(lr=0.1, local_epochs=2), initial(), seed=0,
                    evaluate=evaluator(digits))
    hist = sim.run(10)
    assert hist[-1].metrics["accuracy"] > 0.85 and hist[-1].metrics["accuracy"] > hist[0].metrics["accuracy"]
    assert hist[-1].metrics["bytes_up"] == 4 * initial().numel() * 5


def test_result_does_not_depend_on_client_order(digits):
    a = Simulator(make_clients(digits), FedProx(lr=0.1, mu=0.01), initial(), clients_per_round=3, seed=4)
    b = Simulator(make_clients(digits)[::-1], FedProx(lr=0.1, mu=0.01), initial(), clients_per_round=3, seed=4)
    a.run(3)
    b.run(3)
    assert torch.equal(a.params, b.params)
    assert [h.sampled for h in a.history] == [h.sampled for h in b.history]


class BrokenClient:
    def __init__(self, cid, kind):
        self.cid, self.kind, self.num_examples = cid, kind, 10

    def fit(self, download, config, rng):
        if self.kind == "raise":
            raise RuntimeError("sensor offline")
        if self.kind == "slow":
            import time

            time.sleep(2.0)
        return FitResult(torch.full_like(download, float("nan") if self.kind == "nan" else 0.0), 10)


def test_failing_late_and_nonfinite_clients_are_dropped_and_recorded(digits):
    clients = [*make_clients(digits, 3), BrokenClient(10, "raise"), BrokenClient(11, "nan"), BrokenClient(12, "slow")]
    sim = Simulator(clients, FedAvg(lr=0.1), initial(), seed=0, client_timeout=1.0, evaluate=evaluator(digits))
    log = sim.step()
    assert set(log.dropped) == {10, 11, 12}
    assert "sensor offline" in log.dropped[10] and "non-finite" in log.dropped[11] and "timeout" in log.dropped[12]
    assert log.metrics["clients"] == 3 and torch.isfinite(sim.params).all()


def test_killed_run_resumes_to_the_same_result(digits, tmp_path):
    def sim():
        return Simulator(make_clients(digits), FedAvg(lr=0.1, aggregator="centered_clipping", tau=5.0), initial(),
                         clients_per_round=4, seed=1)

    whole = sim()
    whole.run(6)
    run = Run.create(tmp_path / "r", "fedavg", {})
    first = sim()
    first.run(3, run)
    resumed = sim()  # a new process would rebuild everything, then read the checkpoint
    resumed.run(6, Run.open(tmp_path / "r"))
    assert torch.equal(whole.params, resumed.params)
    assert [r["step"] for r in Run.open(tmp_path / "r").read_metrics()] == list(range(6))


class QuadraticClient:
    """f_i(x) = ||x − c_i||² / 2: the gradient at the download is download − c_i (deterministic)."""

    def __init__(self, cid, c):
        self.cid, self.c, self.num_examples = cid, torch.as_tensor(c, dtype=torch.float32), 1

    def fit(self, download, config, rng):
        assert config["mode"] == "gradient"
        return FitResult(download - self.c, 1)


def _quadratic(momentum, beta, rounds=6):
    clients = [QuadraticClient(i, [float(i), -float(i)]) for i in range(4)]
    s = ByrdNAFL(aggregator="mean", beta=beta, lr=0.1, n_byzantine=0, momentum=momentum)
    sim = Simulator(clients, s, torch.tensor([5.0, 5.0]), seed=0)
    return [sim.step() and sim.params.clone() for _ in range(rounds)]


def test_nesterov_form_equals_velocity_form():
    c_bar = torch.tensor([1.5, -1.5])  # mean of the c_i
    x, v, beta, eta = torch.tensor([5.0, 5.0]), torch.zeros(2), 0.9, 0.1
    expected = []
    for _ in range(6):
        v = beta * v - eta * ((x + beta * v) - c_bar)  # v_{t+1} = beta v_t − eta g(x_t + beta v_t)
        x = x + v
        expected.append(x.clone())
    for got, want in zip(_quadratic("nesterov", 0.9), expected, strict=True):
        torch.testing.assert_close(got, want)


def test_beta_zero_is_robust_sgd_and_heavy_ball_follows_its_rule():
    for a, b in zip(_quadratic("nesterov", 0.0), _quadratic("none", 0.9), strict=True):
        assert torch.equal(a, b)
    c_bar = torch.tensor([1.5, -1.5])
    x, v = torch.tensor([5.0, 5.0]), torch.zeros(2)
    for got in _quadratic("heavy_ball", 0.9):
        v = 0.9 * v - 0.1 * (x - c_bar)
        x = x + v
        torch.testing.assert_close(got, x)


def test_nafl_with_median_survives_sign_flipping_where_mean_fails(digits):
    x, y, _, _ = digits
    parts = np.array_split(np.arange(len(x)), 10)
    results = {}
    for agg in ("mean", "coordinate_median"):
        clients = [TorchClient(i, model_fn, x[p], y[p]) for i, p in enumerate(parts)]
        s = ByrdNAFL(aggregator=agg, beta=0.9, lr=0.05, n_byzantine=2, byzantine_ids=(0, 1), batch_size=64)
        sim = Simulator(clients, s, initial(), seed=0, byzantine=(0, 1), attack="sign_flip",
                        evaluate=evaluator(digits), eval_every=40)
        results[agg] = sim.run(40)[-1].metrics["accuracy"]
    print(results)
    assert results["coordinate_median"] > 0.7 and results["mean"] < 0.3


def test_personalised_evaluation_on_each_clients_test_split(digits):
    x, y, _, _ = digits
    parts = np.array_split(np.arange(len(x)), 4)
    clients = [TorchClient(i, model_fn, x[p[:200]], y[p[:200]], x_test=x[p[200:]], y_test=y[p[200:]])
               for i, p in enumerate(parts)]
    sim = Simulator(clients, FedAvg(lr=0.1), initial(), seed=0, evaluate_clients=True)
    log = sim.run(3)[-1]
    by_hand = [c.evaluate(sim.params)["accuracy"] for c in clients]
    assert log.metrics["personal_accuracy_mean"] == pytest.approx(np.mean(by_hand))
    assert log.metrics["personal_accuracy_min"] == pytest.approx(min(by_hand))

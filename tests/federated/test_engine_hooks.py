"""The engine's hooks for stateful and multi-phase algorithms: personal client state, extra uploads, ``post_round``
exchanges, evaluation hooks and personalised evaluation — the Simulator and the Flower strategy (through an
in-process Grid, one ClientApp process per message) must give identical numbers, and a resumed Simulator the same
numbers as an uninterrupted one."""

import numpy as np
import pytest
import torch

from polymodal.core.runs import Run
from polymodal.federated import partition
from polymodal.federated.algorithms.personal import (
    PersonalClient,
    SharedFedAvg,
    get_state_vector,
    set_state_vector,
    state_mask,
)
from polymodal.federated.core import FitResult, Simulator, combine_client_evals
from polymodal.federated.data import load_digits_data
from polymodal.federated.federation import Federation, run_methods, summarize
from polymodal.federated.models import MLPNet, SmallCNN


@pytest.fixture(scope="module")
def split():
    ds = load_digits_data()
    x, y = ds.flat()[:600], ds.y[:600]
    train, test = partition.local_train_test(partition.dirichlet(y, 4, 0.3, 0), 0.25, seed=0)
    return x, y, train, test


def model_fn():
    return MLPNet(64, 10, hidden=32, feat_dim=16)


def initial():
    torch.manual_seed(0)
    return get_state_vector(model_fn())


def personal_client(split, share):
    x, y, train, test = split

    def make(cid):
        return PersonalClient(cid, model_fn, x[train[cid]], y[train[cid]], x_test=x[test[cid]], y_test=y[test[cid]],
                              share=share)

    return make


class PrototypeRound(SharedFedAvg):
    """FedAvg plus a ``post_round`` with two extra phases: every client reports per-class feature sums (extra
    arrays), then the round's online clients score the mean feature; ``evaluation`` adds a central metric."""

    upload_like_download = True

    def __init__(self, mask):
        super().__init__(mask, lr=0.05)
        self.online: list[int] = []
        self.total = torch.zeros(10)

    def aggregate_fit(self, rnd, params, results):
        self.online = [c for c, _ in results]
        return super().aggregate_fit(rnd, params, results)

    def post_round(self, rnd, params, exchange):
        sums = exchange(None, params, {"mode": "sums"})
        if not sums:
            return params, {"phase1_clients": 0.0}
        counts = torch.stack([r.arrays["counts"] for r in sums.values()]).sum(0)
        replies = exchange(self.online, counts.float(), {"mode": "score"})
        self.total = counts.float()
        return params, {"phase1_clients": float(len(sums)), "phase2_score": sum(r.vector.item()
                                                                             for r in replies.values())}

    def evaluation(self, rnd, params, evaluate):
        return {"seen_samples": float(self.total.sum()), "round_plus_one": float(rnd + 1)}

    def state_dict(self):
        return {"total": self.total}

    def load_state_dict(self, state):
        self.total = state["total"]


class PhasedClient(PersonalClient):
    def fit(self, download, config, rng):
        if config.get("mode") == "sums":
            counts = torch.bincount(self.y, minlength=10)
            return FitResult(torch.zeros(0), self.num_examples, {}, {"counts": counts})
        if config.get("mode") == "score":
            return FitResult(torch.tensor([float(rng.random()) + float(download[self.cid])]), self.num_examples)
        return super().fit(download, config, rng)


class VariableUpload(PrototypeRound):
    upload_like_download = False


def test_share_rules_select_the_documented_entries():
    m = SmallCNN(1, 10, feat_dim=8)
    names = [k for k, v in m.state_dict().items() if v.is_floating_point()]
    sizes = {k: v.numel() for k, v in m.state_dict().items() if v.is_floating_point()}
    bn = sum(sizes[k] for k in names if k.startswith(("body.1.", "body.5.")))
    head = sum(sizes[k] for k in names if k.startswith("head."))
    total = sum(sizes.values())
    assert int(state_mask(m, "all").sum()) == total
    assert int(state_mask(m, "no_bn").sum()) == total - bn  # BN weight, bias, running mean and var stay local
    assert int(state_mask(m, "body").sum()) == total - head
    assert int(state_mask(m, "none").sum()) == 0
    # writing a shared subset touches exactly the masked entries
    mask = state_mask(m, "no_bn")
    before = get_state_vector(m)
    set_state_vector(m, torch.full((int(mask.sum()),), 7.0), mask)
    after = get_state_vector(m)
    assert torch.all(after[mask] == 7.0) and torch.equal(after[~mask], before[~mask])


def test_personal_parts_stay_local_and_shared_parts_are_averaged(split):
    mask = state_mask(model_fn(), "body")
    make = personal_client(split, "body")
    sim = Simulator([make(c) for c in range(4)], SharedFedAvg(mask, lr=0.05), initial(), seed=0)
    sim.run(2)
    vecs = [get_state_vector(c.model) for c in sim.clients.values()]
    # heads differ between clients (personal), bodies were trained from the same download and then differ too;
    # but the global vector's shared part is the sample-weighted mean of the uploads of the last round
    heads = torch.stack([v[~mask] for v in vecs])
    assert (heads - heads[0]).abs().max() > 0
    assert torch.equal(sim.params[~mask], initial()[~mask])  # unshared entries of the global vector never change
    w = torch.tensor([float(c.num_examples) for c in sim.clients.values()])
    mean = (w[:, None] * torch.stack([v[mask] for v in vecs])).sum(0) / w.sum()
    assert torch.allclose(sim.params[mask], mean, atol=1e-6)


def test_combine_client_evals_weights_by_test_counts():
    evals = {0: {"accuracy": 0.5, "correct": 1.0, "total": 2.0}, 3: {"accuracy": 1.0, "correct": 6.0, "total": 6.0}}
    out = combine_client_evals(evals)
    assert out["personal_accuracy"] == pytest.approx(7 / 8)
    assert out["personal_accuracy_mean"] == pytest.approx(0.75)
    assert out["personal_accuracy_min"] == 0.5 and out["personal_accuracy_std"] == pytest.approx(0.25)
    assert out["client_accuracy/3"] == 1.0


def test_post_round_exchanges_and_evaluation_hook(split):
    make = personal_client(split, "all")
    mask = state_mask(model_fn(), "all")
    clients = [PhasedClient(c, model_fn, *(lambda k: (make(k).x.numpy(), make(k).y.numpy()))(c)) for c in range(4)]
    sim = Simulator(clients, VariableUpload(mask), initial(), seed=1, clients_per_round=2)
    log = sim.step()
    assert log.metrics["phase1_clients"] == 4  # every client, not only the 2 sampled ones
    assert log.metrics["seen_samples"] == sum(c.num_examples for c in clients)
    assert log.metrics["round_plus_one"] == 1.0
    # phase 2 seeds client k with client_rng(seed, round, cid, 2): reproduce its score by hand
    want = sum(float(np.random.default_rng([1, 0, c, 2]).random()) + float(sim.strategy.total[c])
               for c in log.sampled)
    assert log.metrics["phase2_score"] == pytest.approx(want)


def test_shape_check_is_per_strategy(split):
    x, y, train, _ = split
    clients = [PhasedClient(c, model_fn, x[train[c]], y[train[c]]) for c in range(2)]
    mask = state_mask(model_fn(), "all")
    strict = Simulator(clients, PrototypeRound(mask), initial(), seed=0)
    log = strict.step()
    assert "phase 1: bad shape" in log.dropped[0]  # phase-1 uploads (empty vectors) are dropped by a strict strategy
    assert log.metrics["phase1_clients"] == 0
    lenient = Simulator([PhasedClient(c, model_fn, x[train[c]], y[train[c]]) for c in range(2)],
                        VariableUpload(mask), initial(), seed=0)
    assert lenient.step().dropped == {}


def test_resume_restores_client_state_and_gives_identical_numbers(split, tmp_path):
    mask = state_mask(model_fn(), "body")
    make = personal_client(split, "body")

    def sim():
        return Simulator([make(c) for c in range(4)], SharedFedAvg(mask, lr=0.05), initial(), seed=0,
                         evaluate_clients=True)

    whole = sim()
    whole.run(4)
    run = Run.create(tmp_path / "r", "test", {})
    first = sim()
    first.run(2, run)
    resumed = sim()  # fresh clients: their personal heads come back from the checkpoint
    resumed.run(4, Run.open(tmp_path / "r"))
    assert torch.equal(resumed.params, whole.params)
    for a, b in zip(resumed.clients.values(), whole.clients.values(), strict=True):
        assert torch.equal(get_state_vector(a.model), get_state_vector(b.model))
    assert resumed.history[-1].metrics["personal_accuracy"] == whole.history[-1].metrics["personal_accuracy"]


def test_run_methods_resumes_and_rows(split, tmp_path):
    make = personal_client(split, "all")

    def build(method):
        share = {"fedavg": "all", "local": "none"}[method]
        mask = state_mask(model_fn(), share)
        return Federation(4, personal_client(split, share), lambda: SharedFedAvg(mask, lr=0.05), initial(), rounds=3,
                          evaluate_clients=True, score="personal_accuracy")

    assert make(0).num_examples > 0
    run = Run.create(tmp_path / "m", "test", {})
    res = run_methods(run, ["fedavg", "local"], build)
    assert set(res.rows) == {"fedavg", "local"}
    assert res.rows["local"]["personal_accuracy"] == summarize(build("local").simulator().run(3),
                                                               "personal_accuracy")["personal_accuracy"]
    lines = run.read_metrics()
    assert {r["method"] for r in lines} == {"fedavg", "local"} and len(lines) == 6
    again = run_methods(Run.open(tmp_path / "m"), ["fedavg", "local"], build)  # both recorded: nothing reruns
    assert again.rows == res.rows and len(Run.open(tmp_path / "m").read_metrics()) == 6


flwr = pytest.importorskip("flwr")


def test_flower_reproduces_personal_state_and_extra_phases(split, task_identity):
    from flower_testing import InProcessGrid

    from polymodal.federated.flower import as_client_app, as_strategy, vector_to_arrays

    x, y, train, test = split
    mask = state_mask(model_fn(), "body")

    def make(cid):
        return PhasedClient(cid, model_fn, x[train[cid]], y[train[cid]], x_test=x[test[cid]], y_test=y[test[cid]],
                            share="body")

    sim = Simulator([make(c) for c in range(4)], VariableUpload(mask), initial(), seed=3, clients_per_round=2,
                    evaluate_clients=True)
    sim.run(3)
    # the client app rebuilds the client for every message: personal heads must come back from context.state
    app = as_client_app(lambda pid, n, rc: make(pid))
    wrapped = as_strategy(VariableUpload(mask), seed=3, clients_per_round=2, min_nodes=4, evaluate_clients=True)
    wrapped.start(InProcessGrid(app, 4, {}), vector_to_arrays(initial()), num_rounds=3, timeout=60)
    assert torch.equal(wrapped.params, sim.params)
    for got, want in zip(wrapped.history, sim.history, strict=True):
        assert got.sampled == want.sampled
        for key in ("phase1_clients", "phase2_score", "seen_samples", "personal_accuracy", "personal_accuracy_mean",
                    "bytes_up", "bytes_down", "train_loss"):
            assert got.metrics[key] == want.metrics[key], key

"""FedSM (spec section 2): relevance S, prototypes, pseudo-feature selection and mixup, CRT as evaluation-only,
the CRT weight bug flag, clip_kd, and a tiny end-to-end compare of the ``fedsm`` recipe."""

import json

import numpy as np
import pytest
import torch
from scipy import stats

import polymodal.federated.fedsm_recipe as fr
from polymodal.core.config import build_config
from polymodal.core.errors import ConfigError
from polymodal.federated import partition
from polymodal.federated.algorithms.fedsm import (
    FedAvgFull,
    FedSM,
    FedSMClient,
    augment_batch,
    crt_average,
    default_variants,
    global_prototypes,
    make_pseudo_features,
    make_real_balanced_features,
    semantic_relevance,
    train_linear_head,
)
from polymodal.federated.algorithms.personal import get_state_vector
from polymodal.federated.core import Simulator
from polymodal.federated.models import MLPNet

torch.set_num_threads(1)


class FakeEncoder:
    def __init__(self, vectors):
        self.vectors = np.asarray(vectors, dtype=np.float64)

    def encode(self, names):
        return self.vectors[: len(names)]


# ---------------------------------------------------------------------------------------------- data
def test_long_tail_counts_follow_the_formula():
    cfg = build_config(fr.FedSMConfig, {"imb_factor": 0.1, "n_clients": 10, "clients_per_round": 4})
    s = fr.fedsm_setting(cfg)
    pool, _ = fr.load_pools(cfg)
    n_max = len(pool.y) / 10  # the mean class size of the pool, as the official img_max
    have = np.bincount(pool.y)  # a class with fewer images than its target keeps what it has
    expected = [min(int(n_max * 0.1 ** (c / 9)), int(have[c])) for c in range(10)]
    assert s.class_counts.tolist() == expected
    assert expected == [min(a, int(b)) for a, b in zip(partition.long_tail_counts(n_max, 10, 0.1), have,
                                                      strict=True)]
    assert expected[1:] == [int(n_max * 0.1 ** (c / 9)) for c in range(1, 10)]
    assert sorted(np.concatenate(s.parts).tolist()) == list(range(len(s.y)))  # disjoint, full coverage
    assert np.bincount(s.y_test).tolist() == [50] * 10  # balanced test set
    assert s.groups == {"many": [0, 1, 2], "few": [7, 8, 9], "medium": [3, 4, 5, 6]}


def test_class_groups_thresholds():
    groups, thr = fr.class_groups(np.array([500, 120, 100, 30, 20, 5]), many_above=100, few_below=20)
    assert groups == {"many": [0, 1], "few": [5], "medium": [2, 3, 4]}
    assert thr == {"many_above": 100.0, "few_below": 20.0}


# ---------------------------------------------------------------------------------------------- S
@pytest.mark.parametrize("diag_mean", ["with_diag", "off_diag"])
def test_semantic_relevance_hand_vectors(diag_mean):
    S = semantic_relevance(["a", "b", "c"], FakeEncoder([[2, 0], [1, 1], [0, 3]]), diag_mean)
    r = 1 / np.sqrt(2)
    off = np.array([[0, r, 0], [r, 0, r], [0, r, 0]])
    mask = ~np.eye(3, dtype=bool)
    np.testing.assert_allclose(S[mask], off[mask], atol=1e-6)
    np.testing.assert_allclose(S, S.T, atol=1e-6)  # symmetric off the diagonal (and on it here)
    if diag_mean == "with_diag":
        expected = [(1 + r + 0) / 3, (r + 1 + r) / 3, (0 + r + 1) / 3]
    else:
        expected = [(r + 0) / 2, (r + r) / 2, (0 + r) / 2]
    np.testing.assert_allclose(np.diag(S), expected, atol=1e-6)


def test_semantic_relevance_minilm(minilm):
    from polymodal.federated.data import FASHION_MNIST_CLASSES

    S = semantic_relevance(FASHION_MNIST_CLASSES, minilm)
    mask = ~np.eye(10, dtype=bool)
    assert S.shape == (10, 10) and np.allclose(S[mask], S.T[mask], atol=1e-5)
    full = S.copy()
    np.fill_diagonal(full, 1.0)
    np.testing.assert_allclose(np.diag(S), full.mean(1), atol=1e-5)
    assert S[0, 6] == S[0][mask[0]].max()  # "T-shirt/top" is closest to "Shirt"


def test_semantic_relevance_rejects_bad_input():
    with pytest.raises(ConfigError, match="diag_mean"):
        semantic_relevance(["a", "b"], FakeEncoder(np.eye(2)), "median")


# ---------------------------------------------------------------------------------------------- prototypes
def test_global_prototypes_two_clients():
    means = np.array([[[3.0, 4.0], [9.0, 9.0]],     # client A: class 0 mean (3, 4) x2, class 1 absent
                      [[0.0, 2.0], [5.0, 0.0]]])    # client B: class 0 mean (0, 2) x1, class 1 (5, 0) x3
    counts = np.array([[2, 0], [1, 3]])
    P = global_prototypes(means, counts)
    np.testing.assert_allclose(P[0], (2 * np.array([0.6, 0.8]) + np.array([0.0, 1.0])) / 3, atol=1e-6)
    np.testing.assert_allclose(P[1], [1.0, 0.0], atol=1e-6)
    assert abs(np.linalg.norm(P[0]) - 1) > 0.01  # not re-normalised
    assert np.all(global_prototypes(means, np.zeros((2, 2)))[0] == 0)  # a class nobody holds: zeros


# ---------------------------------------------------------------------------------------------- selection + mixup
def _toy(n_per_label=(2, 2, 2), dim=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(n_per_label)), n_per_label)
    return rng.normal(size=(len(labels), dim)), labels


def test_probabilistic_selection_frequencies_follow_S():
    feats, labels = _toy()
    C = 3
    S = np.array([[0.2, 0.5, 0.3], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    P = np.zeros((C, 4))
    rng = np.random.default_rng(123)
    counts = np.zeros(len(labels))
    trials = 3000
    for _ in range(trials):  # the first draw of class 0 is proportional to S[0, y_i]
        _, _, d = make_pseudo_features(feats, labels, P, S, 1, rng, classes=[0], return_details=True)
        counts[d["indices"][0, 0]] += 1
    expected = S[0, labels] / S[0, labels].sum() * trials
    assert stats.chisquare(counts, expected).pvalue > 0.001


def test_selection_never_repeats_and_falls_back_to_replacement():
    feats, labels = _toy((30, 30, 30))
    S = np.full((3, 3), 0.5)
    rng = np.random.default_rng(0)
    for selection in ("probabilistic", "uniform", "deterministic"):
        _, _, d = make_pseudo_features(feats, labels, np.zeros((3, 4)), S, 50, rng, selection=selection,
                                       return_details=True)
        for row in d["indices"]:
            assert len(set(row.tolist())) == 50
    small, small_y = _toy((2, 2, 2))
    _, _, d = make_pseudo_features(small, small_y, np.zeros((3, 4)), S, 10, rng, return_details=True)
    assert d["indices"].shape == (3, 10) and set(d["indices"].ravel()) <= set(range(6))


def test_deterministic_selection_takes_the_most_relevant_labels():
    feats, labels = _toy((5, 5, 5))
    S = np.array([[0.1, 0.9, 0.5], [0.2, 0.2, 0.2], [0.3, 0.3, 0.9]])
    _, _, d = make_pseudo_features(feats, labels, np.zeros((3, 4)), S, 7, np.random.default_rng(0),
                                   selection="deterministic", return_details=True)
    assert sorted(labels[d["indices"][0]].tolist()) == [1] * 5 + [2] * 2
    assert labels[d["indices"][2]].tolist().count(2) == 5


def test_lambda_range_two_decimals_and_labels():
    feats, labels = _toy((40, 40, 40))
    x, y, d = make_pseudo_features(feats, labels, np.ones((3, 4)), np.ones((3, 3)), 40,
                                   np.random.default_rng(1), return_details=True)
    lam = d["lambdas"]
    assert lam.min() >= 0.35 and lam.max() <= 0.95
    np.testing.assert_allclose(lam * 100, np.round(lam * 100), atol=1e-9)
    assert y.tolist() == [0] * 40 + [1] * 40 + [2] * 40  # labels = target class
    assert x.shape == (120, 4)


def test_pseudo_feature_is_the_hand_computed_mixup():
    feats = np.array([[3.0, 4.0]])
    protos = np.array([[1.0, 0.0], [0.0, 2.0]])
    x, y = make_pseudo_features(feats, np.array([1]), protos, np.ones((2, 2)), 1, np.random.default_rng(0),
                                low=0.5, high=0.5)
    np.testing.assert_allclose(x[0], 0.5 * np.array([1.0, 0.0]) + 0.5 * np.array([0.6, 0.8]), atol=1e-6)
    np.testing.assert_allclose(x[1], 0.5 * np.array([0.0, 2.0]) + 0.5 * np.array([0.6, 0.8]), atol=1e-6)
    assert y.tolist() == [0, 1]
    feats, labels = _toy((10, 10, 10))
    P = np.random.default_rng(3).normal(size=(3, 4))
    x, y, d = make_pseudo_features(feats, labels, P, np.ones((3, 3)), 5, np.random.default_rng(4),
                                   return_details=True)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for k in range(len(y)):
        c, j = divmod(k, 5)
        lam = d["lambdas"][c, j]
        np.testing.assert_allclose(x[k], lam * P[c] + (1 - lam) * unit[d["indices"][c, j]], atol=1e-5)


def test_real_balanced_features_and_head_training():
    feats, labels = _toy((30, 3, 10))
    x, y = make_real_balanced_features(feats, labels, 8, np.random.default_rng(0))
    assert np.bincount(y).tolist() == [8, 8, 8]
    for xi, yi in zip(x, y, strict=True):  # real rows of the right class, not normalised
        assert any(np.allclose(xi, f) for f in feats[labels == yi])
    sep = np.array([[5.0, 0.0], [0.0, 5.0]])[np.repeat([0, 1], 20)] + np.random.default_rng(0).normal(size=(40, 2))
    w, b = train_linear_head(sep, np.repeat([0, 1], 20), 2, epochs=50, lr=0.1, batch_size=8,
                             rng=np.random.default_rng(0))
    assert w.shape == (2, 2) and b.shape == (2,)
    assert ((torch.as_tensor(sep, dtype=torch.float32) @ w.T + b).argmax(1).numpy() == np.repeat([0, 1], 20)).all()


def test_crt_average_weights_and_bug():
    heads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    avg, w = crt_average(heads, [10, 30])
    np.testing.assert_allclose(avg.numpy(), [0.25, 0.75])
    avg_bug, w_bug = crt_average(heads, [10, 30], all_sizes=[5, 15, 20, 60], replicate_bug=True)
    np.testing.assert_allclose(w_bug.numpy(), [0.05, 0.15])  # sizes of clients 0, 1 over all clients
    np.testing.assert_allclose(avg_bug.numpy(), [0.05, 0.15])


def test_augment_batch_crops_and_flips():
    x = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 1, 3, 3)
    rng = np.random.default_rng(0)
    assert torch.equal(augment_batch(x, rng, 0, False), x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for _ in range(5):
        out = augment_batch(x, rng, 1, True)
        assert out.shape == x.shape
        for b in range(2):
            crops = [padded[b, :, i:i + 3, j:j + 3] for i in range(3) for j in range(3)]
            assert any(torch.equal(out[b], c) or torch.equal(out[b], c.flip(-1)) for c in crops)


# ---------------------------------------------------------------------------------------------- federation
DIM, C, FEAT = 16, 3, 8


def _model():
    return MLPNet(DIM, C, hidden=12, feat_dim=FEAT)


def _tiny(n_clients=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(C, DIM)) * 2
    clients = []
    for cid in range(n_clients):
        n = 12 + 4 * cid
        y = rng.choice(C, size=n, p=[0.6, 0.3, 0.1])
        y[:C] = np.arange(C)
        x = centers[y] + rng.normal(size=(n, DIM))
        clients.append(FedSMClient(cid, _model, x.astype(np.float32), y, n_classes=C))
    torch.manual_seed(seed)
    return clients, get_state_vector(_model())


TRAIN = {"lr": 0.1, "local_epochs": 2, "batch_size": 8, "augment": False, "crop_pad": 0, "hflip": False}
S3 = np.array([[0.5, 0.4, 0.2], [0.4, 0.5, 0.3], [0.2, 0.3, 0.5]], dtype=np.float32)


def _fedsm(rounds=4, **kw):
    args = dict(n_classes=C, feat_dim=FEAT, relevance=S3, variants=default_variants((0.1,)), crt_epochs=3,
                crt_feat_num=10, crt_lr=0.1, **TRAIN)
    args.update(kw)
    return FedSM(rounds, 2, 2, **{k: v for k, v in args.items() if k not in ("rounds",)})


def test_crt_head_is_evaluation_only_backbone_equals_fedavg():
    clients, init = _tiny()
    evaluated = []

    def evaluate(params):
        evaluated.append(params.clone())
        return {"accuracy": float(params[-3:].sum())}

    sims = [Simulator(clients, _fedsm(), init, clients_per_round=2, seed=3, evaluate=evaluate),
            Simulator(_tiny()[0], FedAvgFull(**TRAIN), init, clients_per_round=2, seed=3)]
    for rnd in range(4):
        logs = [s.step() for s in sims]
        assert torch.equal(sims[0].params, sims[1].params), f"round {rnd}: backbone differs from FedAvg"
        if rnd >= 2:  # the CRT window (last 2 rounds): every variant evaluated with its own head
            assert logs[0].metrics["crt/clients"] == 2 and logs[0].metrics["crt/prototype_clients"] == 4
            assert logs[0].metrics["fedsm/crt"] == 1.0
            assert logs[0].metrics["fedsm/accuracy"] != logs[0].metrics["accuracy"]
        else:
            assert "crt/clients" not in logs[0].metrics and logs[0].metrics["fedsm/crt"] == 0.0
            assert logs[0].metrics["fedsm/accuracy"] == logs[0].metrics["accuracy"]
    strategy = sims[0].strategy
    assert set(strategy.heads) == set(default_variants((0.1,)))
    assert torch.equal(evaluated[-1][:-C * FEAT - C], sims[0].params[:-C * FEAT - C])  # only the head swapped


def test_resume_mid_crt_gives_the_uninterrupted_numbers():
    def sim():
        clients, init = _tiny()
        return Simulator(clients, _fedsm(), init, clients_per_round=2, seed=2,
                         evaluate=lambda p: {"accuracy": float(p[-3:].sum())})

    full = sim()
    full.run(4)
    first = sim()
    first.run(3)  # stopped after the first CRT round
    state = first.state()
    resumed = sim()
    resumed.load_state(state)
    resumed.run(4)
    assert torch.equal(full.params, resumed.params)
    assert full.history[-1].metrics["fedsm/accuracy"] == resumed.history[-1].metrics["fedsm/accuracy"]


def test_replicate_crt_weight_bug_changes_only_the_weights():
    runs = []
    for bug in (False, True):
        clients, init = _tiny()
        strat = _fedsm(replicate_crt_weight_bug=bug)
        sim = Simulator(clients, strat, init, clients_per_round=2, seed=5, evaluate=lambda p: {"accuracy": 0.0})
        sim.run(4)
        runs.append((sim, strat))
    (sim0, s0), (sim1, s1) = runs
    assert torch.equal(sim0.params, sim1.params)
    assert s0.last_crt_clients == s1.last_crt_clients
    sizes_all = [c.num_examples for c in sorted(sim0.clients.values(), key=lambda c: c.cid)]
    online = [sim0.clients[c].num_examples for c in s0.last_crt_clients]
    np.testing.assert_allclose(s0.last_crt_weights.numpy(), np.array(online) / sum(online))
    np.testing.assert_allclose(s1.last_crt_weights.numpy(), np.array(sizes_all[:2]) / sum(sizes_all))
    for name in s0.heads:
        assert torch.equal(s0.last_client_heads[name], s1.last_client_heads[name])
        w = s1.last_crt_weights.float()
        torch.testing.assert_close(s1.heads[name], (w[:, None] * s1.last_client_heads[name]).sum(0))
        assert not torch.allclose(s0.heads[name], s1.heads[name])


def test_variant_heads_do_not_depend_on_the_other_variants():
    clients, init = _tiny()
    heads = {}
    for variants in (default_variants(), {"fedsm": {"selection": "probabilistic"}}):
        strat = _fedsm(variants=variants)
        sim = Simulator(clients, strat, init, clients_per_round=2, seed=1, evaluate=lambda p: {"accuracy": 0.0})
        sim.run(4)
        heads[len(variants)] = strat.heads["fedsm"]
    assert torch.equal(heads[4], heads[1])


def test_fedprox_term_changes_the_trajectory():
    outs = []
    for mu in (0.0, 0.5):
        clients, init = _tiny()
        sim = Simulator(clients, FedAvgFull(prox_mu=mu, **TRAIN), init, clients_per_round=2, seed=0)
        sim.run(2)
        outs.append(sim.params)
    assert not torch.equal(outs[0], outs[1])


def test_clip_kd_and_bad_settings_raise():
    with pytest.raises(ConfigError, match="CLIP"):
        FedSM(clip_kd=True, n_classes=C, feat_dim=FEAT, relevance=S3)
    with pytest.raises(ConfigError, match="clip_kd"):
        build_config(fr.FedSMConfig, {"clip_kd": True})
    with pytest.raises(ConfigError, match="methods"):
        build_config(fr.FedSMConfig, {"methods": ["fedsm", "ccvr"]})
    with pytest.raises(ConfigError, match="crt_rounds"):
        build_config(fr.FedSMConfig, {"rounds": 10, "crt_rounds": 20})
    with pytest.raises(ConfigError, match="clients_per_round"):
        build_config(fr.FedSMConfig, {"n_clients": 5, "clients_per_round": 8})
    with pytest.raises(ConfigError, match="relevance|class_names"):
        FedSM(n_classes=C, feat_dim=FEAT)
    with pytest.raises(ConfigError, match="selection"):
        FedSM(n_classes=C, feat_dim=FEAT, relevance=S3, variants={"x": {"selection": "top"}})


def test_crt_messages_travel_over_flower_records():
    pytest.importorskip("flwr")
    from polymodal.federated.flower import _config_record, arrays_to_result_parts, result_to_arrays

    strat = _fedsm()
    _config_record(strat.crt_config, "polymodal config")
    clients, init = _tiny()
    res = clients[0].fit(init, {"mode": "prototypes"}, np.random.default_rng(0))
    vec, extras = arrays_to_result_parts(result_to_arrays(res))
    assert vec.numel() == 0 and torch.equal(extras["counts"], res.arrays["counts"])


def test_flower_in_process_grid_matches_the_simulator(task_identity):
    """Both CRT phases as extra Flower train messages (fresh client per message: no feature cache survives),
    prototypes and counts as extra arrays, the CRT config as a ConfigRecord: the Simulator's numbers."""
    pytest.importorskip("flwr")
    from flower_testing import InProcessGrid

    from polymodal.federated.flower import as_client_app, as_strategy, vector_to_arrays

    def evaluate(params):
        return {"accuracy": float(params[-C:].sum()), "norm": float(params.norm())}

    clients, init = _tiny()
    sim = Simulator(clients, _fedsm(), init, clients_per_round=2, seed=4, evaluate=evaluate)
    sim.run(4)
    app = as_client_app(lambda pid, n, run_config: _tiny()[0][pid])
    strategy = as_strategy(_fedsm(), evaluate=evaluate, clients_per_round=2, seed=4, min_nodes=4)
    strategy.start(InProcessGrid(app, 4, {}), vector_to_arrays(init), num_rounds=4, timeout=60)
    assert torch.equal(strategy.params, sim.params)
    for got, want in zip(strategy.history, sim.history, strict=True):
        for key in ("accuracy", "fedsm/accuracy", "creff/accuracy", "fedsm-deterministic-noise0.1/accuracy"):
            assert got.metrics[key] == want.metrics[key], key
    assert strategy.history[-1].metrics["crt/clients"] == 2


def test_federation_is_rebuilt_from_config_alone():
    from polymodal.federated.federation import FEDERATIONS

    cfg = build_config(fr.FedSMConfig, {**fr.QUICK, "methods": ["fedprox"], "rounds": 2, "crt_rounds": 0})
    a, b = FEDERATIONS["fedsm"](cfg, "fedprox"), fr.build_federation(cfg, "fedprox")
    assert torch.equal(a.initial, b.initial) and a.clients_per_round == 4 and a.n_clients == 10
    assert torch.equal(a.make_client(3).y, b.make_client(3).y)
    with pytest.raises(ConfigError, match="fedprox"):
        fr.build_federation(cfg, "fedavg")


# ---------------------------------------------------------------------------------------------- end to end
SMALL = {"rounds": 4, "crt_rounds": 2, "eval_every": 2, "local_epochs": 1, "crt_epochs": 3, "crt_feat_num": 10,
         "hidden": 16, "feat_dim": 8, "noise_sigmas": [0.3]}


def test_recipe_quick_compare_rows_and_report(tmp_path, minilm):
    from polymodal.core.execute import prepare_compare, run_compare
    from polymodal.core.registry import get_recipe

    d = prepare_compare(get_recipe("fedsm"), overrides=SMALL, quick=True, out=tmp_path / "cmp")
    result = run_compare(d, isolate=False)
    names = [r["method"] for r in result["rows"]]
    assert names == ["fedsm", "fedsm-uniform", "fedsm-deterministic", "creff", "fedsm-noise0.3",
                     "fedsm-deterministic-noise0.3", "fedavg", "fedprox"]
    for r in result["rows"]:
        m = r["metrics"]
        assert 0 <= m["accuracy"] <= 1 and m["best_accuracy"] >= m["accuracy"]
        assert {"many_accuracy", "medium_accuracy", "few_accuracy", "crt_seconds"} <= set(m)
        assert (m["crt_seconds"] > 0) == (r["method"] not in ("fedavg", "fedprox"))
    extra = json.loads((d / "fedsm" / "result.json").read_text())["extra"]
    assert [r for r, _ in extra["curves"]["fedsm"]] == [2, 4]
    assert extra["info"]["fedsm"]["relevance"] and extra["info"]["fedsm"]["groups"]["few"] == [7, 8, 9]
    report = (d / "report.md").read_text()
    assert "## Many / medium / few classes" in report and (d / "accuracy_curves.png").is_file()
    assert (d / "relevance.png").is_file()

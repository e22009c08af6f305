"""CO-PFL (spec federated.md 4.3 / 4.5): the score, weight, mask, aggregation and momentum math by hand, the
client / strategy round, the reduction to FedAvg, resume, and a quick end-to-end compare of the recipe."""

import json
import math

import numpy as np
import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.core.execute import prepare_compare, run_compare
from polymodal.core.registry import get_recipe
from polymodal.core.runs import Run
from polymodal.federated.algorithms.copfl import (
    COPFL,
    COPFLClient,
    contribution_scores,
    cowa_weights,
    gradient_scores,
    mamo_betas,
    mamo_reset,
    masked_aggregate,
    minmax_normalise,
    personal_mask,
    prediction_deviation,
)
from polymodal.federated.algorithms.personal import PersonalClient, SharedFedAvg, get_state_vector, state_mask
from polymodal.federated.copfl_recipe import ROWS, COPFLConfig, build, spread_table
from polymodal.federated.core import FitResult, Simulator
from polymodal.federated.models import MLPNet

torch.set_num_threads(1)

TINY = {"n_clients": 6, "rounds": 3, "eval_every": 1, "hidden": 16, "feat_dim": 8, "lr": 0.05, "max_samples": 600}


# ---------------------------------------------------------------------------------------------- scores
def test_gradient_score_parallel_is_zero_and_opposite_is_one():
    parallel = torch.tensor([[1.0, 2.0], [2.0, 4.0], [0.5, 1.0]])
    assert gradient_scores(parallel).tolist() == pytest.approx([0.0] * 3, abs=1e-6)
    opposite = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    assert gradient_scores(opposite)[0].item() == pytest.approx(1.0)
    # orthogonal to the others' mean -> 0.5; a zero update has no direction -> 0.5; one client -> 0.5
    ortho = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert gradient_scores(ortho)[0].item() == pytest.approx(0.5)
    assert gradient_scores(torch.tensor([[0.0, 0.0], [1.0, 0.0]]))[0].item() == pytest.approx(0.5)
    assert gradient_scores(torch.tensor([[1.0, 2.0]])).tolist() == [0.5]


def test_gradient_score_hand_computed_angle():
    # client 0 = (1, 0); the others' mean = ((0, 1) + (1, 1)) / 2 = (0.5, 1): cos = 0.5 / sqrt(1.25)
    d = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert gradient_scores(d)[0].item() == pytest.approx(math.acos(0.5 / math.sqrt(1.25)) / math.pi)


def test_weights_sum_to_one_and_softmax_by_hand():
    g = torch.tensor([0.0, 1.0])
    w = cowa_weights(g, tau=0.5)
    assert w.tolist() == pytest.approx([1 / (1 + math.e ** 2), math.e ** 2 / (1 + math.e ** 2)])
    for rule in ("softmax", "proportional", "size"):
        w = cowa_weights(torch.tensor([0.2, 0.7, 0.1, 0.0]), 0.3, rule, sizes=[10, 30, 20, 40])
        assert float(w.sum()) == pytest.approx(1.0) and bool((w >= 0).all())
    assert cowa_weights(torch.tensor([0.2, 0.6]), weights="proportional").tolist() == pytest.approx([0.25, 0.75])
    assert cowa_weights(torch.zeros(4), weights="proportional").tolist() == pytest.approx([0.25] * 4)
    assert cowa_weights(torch.zeros(2), weights="size", sizes=[1, 3]).tolist() == pytest.approx([0.25, 0.75])
    with pytest.raises(ConfigError, match="weights"):
        cowa_weights(g, weights="median")
    with pytest.raises(ConfigError, match="tau"):
        cowa_weights(g, tau=0.0)


def test_a_client_pointing_away_gets_the_highest_score_and_weight():
    deltas = torch.tensor([[1.0, 0.0, 0.2], [1.0, 0.1, 0.0], [0.9, 0.0, 0.1], [-1.0, 0.0, 0.0]])
    gamma = contribution_scores(deltas, torch.zeros(4), alpha_mix=0.5)  # equal data scores
    assert int(gamma.argmax()) == 3
    assert int(cowa_weights(gamma, 0.5).argmax()) == 3
    # the data score alone: the client whose predictions moved most from the global model ranks first
    gamma = contribution_scores(torch.ones(3, 2), torch.tensor([0.1, 0.9, 0.3]), alpha_mix=0.0)
    assert gamma.tolist() == pytest.approx([0.0, 1.0, 0.25])


def test_minmax_and_prediction_deviation_by_hand():
    assert minmax_normalise(torch.tensor([1.0, 3.0, 2.0])).tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert minmax_normalise(torch.tensor([2.0, 2.0])).tolist() == [0.5, 0.5]
    lg = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    ll = torch.log(torch.tensor([[0.25, 0.75], [0.9, 0.1]]))
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert prediction_deviation(lg, ll) == pytest.approx(kl0 / 2)
    assert prediction_deviation(lg, lg) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------- mask + aggregation
@pytest.mark.parametrize("d,p", [(10, 0.25), (17226, 0.2), (7, 0.1), (100, 0.3), (5, 0.0)])
def test_mask_selects_exactly_floor_p_d(d, p):
    gen = torch.Generator().manual_seed(d)
    a, b = torch.randn(d, generator=gen), torch.randn(d, generator=gen)
    for rule in ("magnitude", "sign_disagreement"):
        assert int(personal_mask(a, b, p, rule).sum()) == math.floor(p * d)
    assert int(personal_mask(torch.zeros(d), torch.zeros(d), p).sum()) == math.floor(p * d)  # ties


def test_mask_rules_pick_the_documented_coordinates():
    local = torch.tensor([0.0, 5.0, 1.0, -0.1, 2.0])
    glob = torch.tensor([0.0, 1.0, 0.0, 0.1, 2.0])
    assert personal_mask(local, glob, 0.4).nonzero().flatten().tolist() == [1, 2]  # |diff| 4 and 1
    # sign disagreement first (coordinate 3: -0.1 vs 0.1), then the largest |diff|
    assert personal_mask(local, glob, 0.4, "sign_disagreement").nonzero().flatten().tolist() == [1, 3]
    with pytest.raises(ConfigError, match="mask_rule"):
        personal_mask(local, glob, 0.4, "random")


def test_aggregation_by_hand_per_coordinate_renormalised():
    params = torch.zeros(3)
    deltas = torch.tensor([[1.0, 2.0, 3.0], [5.0, 6.0, 7.0]])
    personal = torch.tensor([[False, True, False], [False, False, True]])
    new, covered = masked_aggregate(params, deltas, personal, torch.tensor([0.25, 0.75]))
    assert new.tolist() == pytest.approx([0.25 * 1 + 0.75 * 5, 6.0, 3.0])
    assert covered.all()


def test_mask_zero_and_equal_scores_give_the_equal_weight_average():
    gen = torch.Generator().manual_seed(0)
    params, deltas = torch.randn(6, generator=gen), torch.randn(4, 6, generator=gen)
    w = cowa_weights(torch.full((4,), 0.37), 0.5)
    new, _ = masked_aggregate(params, deltas, torch.zeros(4, 6, dtype=torch.bool), w)
    assert torch.allclose(new, params + deltas.mean(0), atol=1e-6)


def _result(delta, personal_idx, gamma_data=0.3, n=10):
    return FitResult(delta.float(), n, {"gamma_data": gamma_data, "loss": 0.0},
                     {"personal_idx": torch.as_tensor(personal_idx, dtype=torch.int32)})


def test_strategy_round_with_symmetric_updates_is_the_plain_average():
    # three updates 120 degrees apart (+ a common component): every Gamma_grad equal, Gamma_data equal
    angles = [0.0, 2 * math.pi / 3, 4 * math.pi / 3]
    deltas = [torch.tensor([math.cos(a), math.sin(a), 1.0]) for a in angles]
    strat = COPFL()
    params = torch.tensor([1.0, 2.0, 3.0])
    new, metrics = strat.aggregate_fit(0, params, [(c, _result(d, [])) for c, d in enumerate(deltas)])
    assert torch.allclose(new, params + torch.stack(deltas).mean(0), atol=1e-6)
    assert metrics["weight_max"] == pytest.approx(1 / 3) and metrics["shared_coverage"] == 1.0


def test_all_personal_masks_never_change_the_global_model():
    strat = COPFL()
    params = torch.tensor([1.0, -2.0, 0.5])
    res = [(c, _result(torch.randn(3), [0, 1, 2], gamma_data=float(c))) for c in range(3)]
    new, metrics = strat.aggregate_fit(0, params, res)
    assert torch.equal(new, params) and metrics["shared_coverage"] == 0.0


def test_malformed_uploads_are_skipped_not_fatal():
    strat = COPFL()
    params = torch.zeros(3)
    good = _result(torch.ones(3), [])
    bad = FitResult(torch.ones(3), 5, {"loss": 0.0})  # no mask, no data score
    new, metrics = strat.aggregate_fit(0, params, [(0, good), (1, bad)])
    assert torch.allclose(new, torch.ones(3)) and metrics["malformed"] == 1.0


# ---------------------------------------------------------------------------------------------- MAMO
def test_mamo_reset_only_touches_shared_coordinates():
    mom = torch.tensor([1.0, 2.0, 3.0, 4.0])
    personal = torch.tensor([True, False, True, False])
    assert mamo_reset(mom, personal, "reset").tolist() == [1.0, 0.0, 3.0, 0.0]
    server = torch.tensor([9.0, 8.0, 7.0, 6.0])
    assert mamo_reset(mom, personal, "server", server).tolist() == [1.0, 8.0, 3.0, 6.0]
    assert mamo_betas(personal, 0.5, 0.9).tolist() == pytest.approx([0.9, 0.5, 0.9, 0.5])
    with pytest.raises(ConfigError, match="server momentum"):
        mamo_reset(mom, personal, "server")


# ---------------------------------------------------------------------------------------------- client
def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12)).astype(np.float32), rng.integers(0, 3, n)


def _model_fn():
    return MLPNet(12, 3, 8, 4)


def _config(**kw):
    strat = COPFL(lr=0.1, batch_size=16, **kw)
    return strat.configure_fit(0, torch.zeros(1))[1]


def test_client_round_uploads_shared_delta_mask_and_data_score():
    x, y = _data()
    client = COPFLClient(0, _model_fn, x, y, x_test=x[:10], y_test=y[:10])
    torch.manual_seed(0)
    theta_g = get_state_vector(_model_fn())
    d = theta_g.numel()
    res = client.fit(theta_g.clone(), _config(), np.random.default_rng(0))
    k = math.floor(0.2 * d)
    idx = res.arrays["personal_idx"].long()
    assert idx.numel() == k and int(client.personal.sum()) == k
    assert torch.equal(res.vector[idx], torch.zeros(k))  # personal coordinates are not uploaded
    delta = get_state_vector(client.model) - theta_g
    shared = ~client.personal
    assert torch.allclose(res.vector[shared], delta[shared])
    assert res.metrics["gamma_data"] >= 0
    # the client keeps its personal coordinates at the next download, takes the global ones elsewhere
    before_state = get_state_vector(client.model)
    new_global = torch.zeros(d)
    assert torch.equal(client.personalised_vector(new_global)[client.personal], before_state[client.personal])
    assert torch.equal(client.personalised_vector(new_global)[shared], torch.zeros(int(shared.sum())))


def test_client_mamo_keeps_personal_momentum_and_switches_off():
    x, y = _data()
    client = COPFLClient(0, _model_fn, x, y)
    torch.manual_seed(0)
    theta_g = get_state_vector(_model_fn())
    client.fit(theta_g.clone(), _config(), np.random.default_rng(0))
    assert bool(client.momentum.abs().sum() > 0)
    cfg = _config(mamo=False, pwpm=False)
    client.fit(theta_g.clone(), cfg, np.random.default_rng(1))
    assert int(client.personal.sum()) == 0  # PWPM off: nothing personal


def test_evaluate_does_not_change_the_client_state():
    x, y = _data()
    client = COPFLClient(0, _model_fn, x, y, x_test=x[:20], y_test=y[:20])
    torch.manual_seed(0)
    theta_g = get_state_vector(_model_fn())
    client.fit(theta_g.clone(), _config(), np.random.default_rng(0))
    state = {k: v.clone() for k, v in client.state_dict().items()}
    out = client.evaluate(torch.zeros_like(theta_g), {"round": 0, "seed": 0})
    assert out is not None and out["total"] == 20.0
    assert all(torch.equal(state[k], v) for k, v in client.state_dict().items())


def test_copfl_without_its_components_is_fedavg_with_momentum():
    """PWPM off, MAMO off (plain momentum restarted every round) and data-size weights reduce CO-PFL to FedAvg."""
    rng = np.random.default_rng(3)
    x, y = rng.random((90, 12)).astype(np.float32), rng.integers(0, 3, 90)
    parts = [np.arange(0, 30), np.arange(30, 50), np.arange(50, 90)]
    torch.manual_seed(0)
    init = get_state_vector(_model_fn())
    mask = state_mask(_model_fn(), "all")
    fedavg = Simulator([PersonalClient(c, _model_fn, x[p], y[p]) for c, p in enumerate(parts)],
                       SharedFedAvg(mask, lr=0.1, momentum=0.9, batch_size=8), init, seed=1)
    copfl = Simulator([COPFLClient(c, _model_fn, x[p], y[p]) for c, p in enumerate(parts)],
                      COPFL(pwpm=False, mamo=False, weights="size", beta_shared=0.9, lr=0.1, batch_size=8), init,
                      seed=1)
    fedavg.run(3)
    copfl.run(3)
    assert torch.allclose(fedavg.params, copfl.params, atol=1e-5)


@pytest.mark.parametrize("mamo_shared", ["reset", "server"])
def test_resume_gives_identical_numbers(tmp_path, mamo_shared):
    cfg = COPFLConfig(**{**TINY, "rounds": 4, "mamo_shared": mamo_shared})
    fed = build(cfg, "co-pfl")
    full = fed.simulator()
    full.run(4)
    run = Run.create(tmp_path / "r", "co-pfl", {})
    first = fed.simulator()
    first.run(2, run, checkpoint="co-pfl.pt")
    resumed = fed.simulator()  # fresh clients and strategy: everything comes from the checkpoint
    resumed.run(4, run, checkpoint="co-pfl.pt")
    assert torch.equal(full.params, resumed.params)
    assert full.history[-1].metrics["personal_accuracy"] == resumed.history[-1].metrics["personal_accuracy"]
    c_full, c_res = full.clients[3].state_dict(), resumed.clients[3].state_dict()
    assert all(torch.equal(c_full[k], c_res[k]) for k in c_full)


def test_client_state_dict_round_trip():
    x, y = _data()
    a = COPFLClient(0, _model_fn, x, y)
    torch.manual_seed(0)
    a.fit(get_state_vector(_model_fn()), _config(), np.random.default_rng(0))
    b = COPFLClient(0, _model_fn, x, y)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


# ---------------------------------------------------------------------------------------------- config + recipe
def test_bad_settings_fail_with_the_field_name():
    with pytest.raises(ConfigError, match="weights"):
        COPFL(weights="median")
    with pytest.raises(ConfigError, match="personal_frac"):
        COPFL(personal_frac=1.5)
    with pytest.raises(ConfigError, match="mamo_shared"):
        COPFL(mamo_shared="keep")
    from polymodal.core.config import build_config

    with pytest.raises(ConfigError, match="methods"):
        build_config(COPFLConfig, {"methods": ["co-pfl", "fedprox"]})
    with pytest.raises(ConfigError, match="data"):
        build_config(COPFLConfig, {"data": "cifar10"})
    with pytest.raises(ConfigError, match="methods"):
        build(COPFLConfig(**TINY), "fedprox")


def test_every_row_builds_from_config_and_method_alone():
    cfg = COPFLConfig(**TINY)
    for m in ROWS:
        fed = build(cfg, m)
        assert fed.n_clients == 6 and fed.score == "personal_accuracy"
        assert fed.make_client(0).num_examples > 0


def test_per_client_corruption_is_fixed_per_client():
    from polymodal.federated.copfl_recipe import CORRUPTIONS, corrupt_images, setting_of

    x = np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)
    for kind in CORRUPTIONS:
        out = corrupt_images(x, kind, [0, 1, 0])
        assert out.shape == x.shape and out.dtype == np.float32 and not np.allclose(out, x)
        assert np.array_equal(out, corrupt_images(x, kind, [0, 1, 0]))  # fixed (seeded) corruption
    contrast = corrupt_images(x, "contrast")
    assert np.allclose(contrast.std(axis=(1, 2, 3)), 0.5 * x.std(axis=(1, 2, 3)), atol=1e-6)
    plain, corrupted = setting_of(COPFLConfig(**TINY)), setting_of(COPFLConfig(**TINY, corruption="per-client"))
    assert np.array_equal(plain.client_data(0)[1], corrupted.client_data(0)[1])  # same labels and partition
    assert not np.allclose(plain.client_data(1)[0], corrupted.client_data(1)[0])
    assert build(COPFLConfig(**TINY, corruption="per-client"), "co-pfl").make_client(2).num_examples > 0


def test_spread_table_counts_clients_beating_local():
    headers, rows = spread_table({"local": {"0": 0.5, "1": 0.9}, "co-pfl": {"0": 0.6, "1": 0.8}})
    assert headers[-1] == "clients > local"
    assert rows[1][0] == "co-pfl" and rows[1][-1] == "1/2" and rows[1][2] == pytest.approx(0.7)


def test_quick_compare_end_to_end(tmp_path):
    over = {**TINY, "rounds": 2, "methods": ["co-pfl", "fedavg", "local", "co-pfl-sizeweights"]}
    d = prepare_compare(get_recipe("co-pfl"), overrides=over, quick=True, out=tmp_path / "cmp")
    result = run_compare(d, isolate=False)
    names = [r["method"] for r in result["rows"]]
    assert names == ["co-pfl", "fedavg", "local", "co-pfl-sizeweights"]
    for r in result["rows"]:
        m = r["metrics"]
        assert 0 <= m["personal_accuracy"] <= 1 and m["personal_accuracy_min"] <= m["personal_accuracy_mean"]
        assert m["best_personal_accuracy"] >= m["personal_accuracy"]
    extra = json.loads((d / "co-pfl" / "result.json").read_text())["extra"]
    assert len(extra["client_accuracy"]["co-pfl"]) == 6 and [r for r, _ in extra["curves"]["local"]] == [1, 2]
    report = (d / "report.md").read_text()
    assert "## Per-client accuracy" in report and "## Partition" in report
    assert (d / "client_accuracy.png").is_file() and (d / "accuracy_curves.png").is_file()


@pytest.mark.parametrize("method,extra", [("co-pfl", {}), ("co-pfl", {"mamo_shared": "server"}), ("ditto", {})],
                         ids=["co-pfl", "co-pfl-server-momentum", "ditto"])
def test_flower_in_process_grid_matches_the_simulator(task_identity, method, extra):
    """Personal state (model, mask, momentum) kept in the SuperNode's context, the mask and data score as
    extra uploads, personalised evaluation messages: the same numbers as the Simulator."""
    pytest.importorskip("flwr")
    from flower_testing import run_over_flower

    fed = build(COPFLConfig(**{**TINY, "n_clients": 4, **extra}), method)
    sim = fed.simulator()
    sim.run(fed.rounds)
    strategy = run_over_flower(fed)  # a fresh client for every message
    assert torch.equal(strategy.params, sim.params)
    for got, want in zip(strategy.history, sim.history, strict=True):
        assert got.metrics["personal_accuracy"] == want.metrics["personal_accuracy"]

"""FedPall (spec federated.md 3.3-3.5, 3.7 checks), FedProto (1.4) and the ``fedpall`` recipe."""

import json
import math

import numpy as np
import pytest
import torch

from polymodal.core.config import build_config
from polymodal.core.errors import ConfigError
from polymodal.federated.algorithms import fedpall as fp
from polymodal.federated.algorithms.fedpall import (
    FedPall,
    FedPallClient,
    PackLayout,
    adversarial_kl,
    feature_mask,
    mix_features,
    mixing_lambda,
    proto_infonce,
)
from polymodal.federated.algorithms.fedproto import (
    FedProto,
    FedProtoClient,
    average_prototypes,
    class_means,
    nearest_prototype,
    pack_prototypes,
    prototype_distance,
)
from polymodal.federated.algorithms.personal import get_state_vector, state_mask
from polymodal.federated.core import Simulator
from polymodal.federated.fedpall_recipe import (
    ALL_METHODS,
    METHODS,
    FedPallConfig,
    build_fedpall_federation,
)
from polymodal.federated.models import SmallCNN

torch.set_num_threads(1)

C, FEAT, HID, K = 3, 8, 8, 3


def model_fn():
    return SmallCNN(3, C, feat_dim=FEAT, head_hidden=HID, pool=2)


def toy_clients(n: int = 12, k: int = K, cls=FedPallClient, **kw):
    out = []
    for cid in range(k):
        rng = np.random.default_rng(cid)
        x = rng.random((n, 3, 8, 8)).astype(np.float32) + 0.3 * cid  # a per-client shift: feature drift
        y = np.arange(n) % C
        out.append(cls(cid, model_fn, x, y, x_test=x[:6], y_test=y[:6], **kw))
    return out


def strategy(**kw) -> FedPall:
    args = dict(n_classes=C, feat_dim=FEAT, n_clients=K, head_hidden=HID, disc_hidden=HID, local_epochs=1,
                batch_size=4)
    return FedPall(**{**args, **kw})


# ---------------------------------------------------------------------------------------------- loss terms
def test_adversarial_kl_zero_at_uniform_positive_otherwise_and_hand_value():
    assert adversarial_kl(torch.zeros(4, 5)).abs().item() < 1e-7
    assert adversarial_kl(torch.full((2, 3), 7.0)).abs().item() < 1e-6  # equal logits = uniform
    assert adversarial_kl(torch.tensor([[2.0, 0.0, 0.0]])).item() > 0
    # p = (0.25, 0.75): KL(U || p) = 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75)
    logits = torch.tensor([[0.0, math.log(3.0)]])
    want = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert adversarial_kl(logits).item() == pytest.approx(want, abs=1e-6)
    # batch mean, as KLDivLoss(reduction="batchmean") against the uniform target
    both = torch.cat([logits, torch.zeros(1, 2)])
    ref = torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(both, 1), torch.full((2, 2), 0.5))
    assert adversarial_kl(both).item() == pytest.approx(ref.item(), abs=1e-6)


def test_infonce_hand_values_on_two_classes():
    r = torch.tensor([[0.6, 0.8]])
    y = torch.tensor([0])
    protos = torch.tensor([[1.0, 0.0], [0.0, 0.5]])  # P_1 has norm 0.5 (a mean of unit vectors)
    valid = torch.tensor([True, True])
    tau = 3.0
    # default: both prototypes normalised: -log(e^{0.6/3} / (e^{0.6/3} + e^{0.8/3}))
    want = -math.log(math.exp(0.2) / (math.exp(0.2) + math.exp(0.8 / 3)))
    assert proto_infonce(r, y, protos, valid, tau).item() == pytest.approx(want, abs=1e-6)
    # the code's quirk: the denominator uses the raw prototypes, <r^, P_1> = 0.4
    quirk = -math.log(math.exp(0.2) / (math.exp(0.2) + math.exp(0.4 / 3)))
    assert proto_infonce(r, y, protos, valid, tau, replicate_quirk=True).item() == pytest.approx(quirk, abs=1e-6)
    # a feature's own scale does not matter (r is normalised)
    assert proto_infonce(5 * r, y, protos, valid, tau).item() == pytest.approx(want, abs=1e-6)
    # invalid classes leave the denominator; a sample without a prototype leaves the mean; none: 0
    assert proto_infonce(r, y, protos, torch.tensor([True, False]), tau).item() == pytest.approx(0.0, abs=1e-6)
    assert proto_infonce(r, y, protos, torch.tensor([False, True]), tau).item() == 0.0


def test_mixing_lambda_has_two_decimals_in_range():
    rng = np.random.default_rng(0)
    lams = [mixing_lambda(rng) for _ in range(2000)]
    assert min(lams) >= 0.8 and max(lams) <= 1.0
    assert all(round(v, 2) == v for v in lams)
    assert len(set(lams)) > 15  # it does vary


@pytest.mark.parametrize("dim,keep,ones", [(10, 0.9, 9), (128, 0.9, 115), (512, 0.9, 461), (7, 0.5, 4)])
def test_mask_keeps_the_stated_count(dim, keep, ones):
    rng = np.random.default_rng(1)
    masks = [feature_mask(dim, keep, rng) for _ in range(5)]
    assert all(int(m.sum()) == ones and set(m.unique().tolist()) <= {0.0, 1.0} for m in masks)
    assert not all(torch.equal(masks[0], m) for m in masks[1:])  # positions are random
    bern = feature_mask(10000, 0.9, rng, "bernoulli")
    assert 0.88 < float(bern.mean()) < 0.92
    with pytest.raises(ConfigError, match="mask_mode"):
        feature_mask(4, 0.9, rng, "nope")


def test_mix_features_hand_example():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    protos = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    out = mix_features(f, torch.tensor([1, 0]), protos, 0.8, torch.tensor([1.0, 0.0]))
    assert torch.allclose(out, torch.tensor([[0.8 * 1 + 0.2 * 30, 0.0], [0.8 * 3 + 0.2 * 10, 0.0]]))


# ---------------------------------------------------------------------------------------------- the client
def test_head_gets_g_non_bn_and_keeps_local_bn():
    client = toy_clients()[0]
    s = strategy()
    g = get_state_vector(s.G) + 0.5  # some G distinct from the client's head
    before = get_state_vector(client.model.head)
    client.receive_head(g, momentum=1.0)
    after = get_state_vector(client.model.head)
    nonbn = state_mask(client.model.head, "no_bn")
    assert torch.equal(after[nonbn], g[nonbn])
    assert torch.equal(after[~nonbn], before[~nonbn])  # BN weight, bias, running stats untouched
    names = [k for k, v in client.model.head.state_dict().items() if v.is_floating_point()]
    assert any("running_mean" in n for n in names) and (~nonbn).sum() > 0
    client.receive_head(g + 1.0, momentum=0.25)
    mixed = get_state_vector(client.model.head)
    assert torch.allclose(mixed[nonbn], 0.75 * g[nonbn] + 0.25 * (g[nonbn] + 1.0))


def _download(s: FedPall, valid: bool = True) -> torch.Tensor:
    g, d, p, _ = s.layout.unpack(s.initial_vector())
    protos = torch.nn.functional.normalize(torch.randn(C, FEAT, generator=torch.Generator().manual_seed(0)), dim=1)
    return s.layout.pack(g, d, protos, torch.full((C,), valid))


def test_discriminator_gets_no_gradient_and_is_not_changed_by_clients():
    s = strategy()
    client = toy_clients()[1]
    down = _download(s)
    _, d_state, _, _ = s.layout.unpack(down)
    res = client.fit(down.clone(), s.configure_fit(0, down)[1], np.random.default_rng(0))
    disc = client._disc
    assert disc is not None and all(p.grad is None and not p.requires_grad for p in disc.parameters())
    ref = fp.Discriminator(FEAT, K, HID)
    fp.set_state_vector(ref, d_state)
    assert all(torch.equal(a, b) for a, b in zip(disc.parameters(), ref.parameters(), strict=True))
    assert res.metrics["adv"] > 0 and res.metrics["proto"] > 0
    # the server's D is untouched by client training
    assert torch.equal(get_state_vector(s.D), d_state)


def test_ablation_flags_switch_off_exactly_one_term_each(monkeypatch):
    calls = {"adv": 0, "proto": 0}
    real_adv, real_proto = fp.adversarial_kl, fp.proto_infonce

    def spy_adv(*a, **k):
        calls["adv"] += 1
        return real_adv(*a, **k)

    def spy_proto(*a, **k):
        calls["proto"] += 1
        return real_proto(*a, **k)

    monkeypatch.setattr(fp, "adversarial_kl", spy_adv)
    monkeypatch.setattr(fp, "proto_infonce", spy_proto)
    want = {1: (False, False), 2: (False, True), 3: (True, False), 4: (True, True)}
    for comp, (adv_on, proto_on) in want.items():
        calls.update(adv=0, proto=0)
        s = strategy(loss_component=comp)
        client = toy_clients()[0]
        client.fit(_download(s), s.configure_fit(1, s.initial_vector())[1], np.random.default_rng(0))
        assert (calls["adv"] > 0, calls["proto"] > 0) == (adv_on, proto_on), comp
    # beta = 0 / mu = 0 switch off exactly their own term
    for kw, (adv_on, proto_on) in (({"beta_adv": 0.0}, (False, True)), ({"mu_proto": 0.0}, (True, False))):
        calls.update(adv=0, proto=0)
        s = strategy(**kw)
        toy_clients()[0].fit(_download(s), s.configure_fit(1, s.initial_vector())[1], np.random.default_rng(0))
        assert (calls["adv"] > 0, calls["proto"] > 0) == (adv_on, proto_on), kw
    # no prototypes yet (round 1): no InfoNCE
    calls.update(adv=0, proto=0)
    s = strategy()
    toy_clients()[0].fit(_download(s, valid=False), s.configure_fit(0, s.initial_vector())[1],
                         np.random.default_rng(0))
    assert calls["proto"] == 0 and calls["adv"] > 0
    # cls_component=False: the head is not overwritten by G
    s = strategy(cls_component=False)
    client = toy_clients()[0]
    seen = []
    monkeypatch.setattr(client, "receive_head", lambda *a, **k: seen.append(1))
    client.fit(_download(s), s.configure_fit(1, s.initial_vector())[1], np.random.default_rng(0))
    assert not seen
    s = strategy()
    client.fit(_download(s), s.configure_fit(1, s.initial_vector())[1], np.random.default_rng(0))
    assert seen == [1]


def test_train_mode_extraction_flag_updates_bn_statistics():
    client = toy_clients()[0]
    bn = [m for m in client.model.body if isinstance(m, torch.nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    client.extract_features(train_mode=False)
    assert torch.equal(bn.running_mean, before)
    client.extract_features(train_mode=True)  # the official code's behaviour
    assert not torch.equal(bn.running_mean, before)


# ---------------------------------------------------------------------------------------------- the server
def test_server_prototypes_are_count_weighted_means_of_normalised_client_means():
    s = strategy(n_clients=2)
    from polymodal.federated.core import FitResult

    f0 = torch.zeros(3, FEAT)
    f0[:, 0] = torch.tensor([2.0, 4.0, 0.0])  # class 0 mean (3, 0, ...) -> unit e0; class 1: one zero vector
    f1 = torch.zeros(1, FEAT)
    f1[0, 1] = 5.0  # client 1, class 0: unit e1
    res = [(0, FitResult(torch.zeros(0), 3, arrays={"features": f0, "labels": torch.tensor([0, 0, 1])})),
           (1, FitResult(torch.zeros(0), 1, arrays={"features": f1, "labels": torch.tensor([0])}))]
    _, _, ids, protos, valid, details = s.mixed_features(0, res)
    want0 = torch.zeros(FEAT)
    want0[0], want0[1] = 2 / 3, 1 / 3
    assert torch.allclose(protos[0], want0)
    assert valid.tolist() == [True, True, False]
    assert torch.equal(ids, torch.tensor([0, 0, 0, 1]))
    assert set(details["lambda"]) == {0, 1} and all(0.8 <= v <= 1.0 for v in details["lambda"].values())
    assert all(int(m.sum()) == round(0.9 * FEAT) for m in details["mask"].values())
    # seeded by (seed, round): the same round mixes identically, another round differently
    again = s.mixed_features(0, res)[5]
    other = s.mixed_features(1, res)[5]
    assert again["lambda"] == details["lambda"] and all(torch.equal(again["mask"][c], details["mask"][c]) for c in (0, 1))
    assert other["lambda"] != details["lambda"] or any(not torch.equal(other["mask"][c], details["mask"][c])
                                                        for c in (0, 1))


def _simulate(rounds: int, **kw):
    s = strategy(**kw)
    sim = Simulator(toy_clients(), s, s.initial_vector(), evaluate_clients=True, seed=3)
    uploads = []
    real = s.aggregate_fit

    def record(rnd, params, results):
        uploads.extend(results)
        return real(rnd, params, results)

    s.aggregate_fit = record
    hist = sim.run(rounds)
    return sim, hist, uploads


def test_simulator_run_only_features_leave_clients_and_extractors_stay_personal():
    sim, hist, uploads = _simulate(2)
    assert len(uploads) == 2 * K
    sizes = {c.cid: c.num_examples for c in sim.clients.values()}
    for cid, res in uploads:
        assert res.vector.numel() == 0  # no weights, no inputs
        assert set(res.arrays) == {"features", "labels"}
        feats = res.arrays["features"]
        assert feats.shape == (sizes[cid], FEAT) and feats.shape[1] != 3 * 8 * 8
        assert torch.equal(res.arrays["labels"], sim.clients[cid].y)
    # extractors are never averaged: they differ across clients after round 1
    bodies = [get_state_vector(c.model.body) for c in sim.clients.values()]
    assert all(not torch.allclose(bodies[i], bodies[j]) for i in range(K) for j in range(i + 1, K))
    # G (non-BN part of every client's head) after the next download equals the server's G
    g = sim.strategy.layout.unpack(sim.params)[0]
    client = sim.clients[0]
    client.receive_head(g)
    mask = state_mask(client.model.head, "no_bn")
    assert torch.equal(get_state_vector(client.model.head)[mask], g[mask])
    m = hist[-1].metrics
    assert {"server_g_loss", "server_d_loss", "personal_accuracy_mean", "client_accuracy/2"} <= set(m)
    assert m["valid_prototypes"] == C


def test_strategy_state_round_trip_and_resume_match_an_uninterrupted_run(tmp_path):
    _, full, _ = _simulate(3)
    s = strategy()
    sim = Simulator(toy_clients(), s, s.initial_vector(), evaluate_clients=True, seed=3)
    sim.run(2)
    state = sim.state()
    torch.save(state, tmp_path / "ck.pt")
    loaded = torch.load(tmp_path / "ck.pt", weights_only=True)
    s2 = strategy()
    sim2 = Simulator(toy_clients(), s2, s2.initial_vector(), evaluate_clients=True, seed=3)
    sim2.load_state(loaded)
    assert torch.equal(s2.protos, s.protos) and all(
        torch.equal(a, b) for a, b in zip(s2._g_bufs, s._g_bufs, strict=True))
    hist = sim2.run(3)
    assert hist[-1].metrics["personal_accuracy_mean"] == full[-1].metrics["personal_accuracy_mean"]
    assert hist[-1].metrics["server_g_loss"] == pytest.approx(full[-1].metrics["server_g_loss"], abs=1e-6)


def test_pack_layout_and_bad_inputs():
    s = strategy()
    vec = s.initial_vector()
    assert vec.numel() == s.layout.total == s.layout.g_size + s.layout.d_size + C * FEAT + C
    assert PackLayout(*s.layout.as_list()) == s.layout
    with pytest.raises(ConfigError, match="entries"):
        s.layout.unpack(vec[:-1])
    with pytest.raises(ConfigError, match="loss_component"):
        strategy(loss_component=5)
    with pytest.raises(ConfigError, match="preset"):
        strategy(preset="svhn")
    assert strategy(preset="office").beta_adv == 0.1 and strategy().mu_proto == 0.7


# ---------------------------------------------------------------------------------------------- FedProto
def test_fedproto_prototype_averaging_hand_example():
    feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    means, counts = class_means(feats, torch.tensor([0, 0, 1]), 3)
    assert torch.allclose(means, torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]))
    assert counts.tolist() == [2.0, 1.0, 0.0]
    other = torch.tensor([[[5.0, 5.0], [0.0, 0.0], [1.0, 1.0]]])
    all_means = torch.cat([means[None], other])
    all_counts = torch.tensor([[2.0, 1.0, 0.0], [1.0, 0.0, 4.0]])
    protos, valid = average_prototypes(all_means, all_counts)
    assert torch.allclose(protos[0], torch.tensor([(2 * 2 + 5) / 3, 5 / 3]))
    assert torch.allclose(protos[1], torch.tensor([0.0, 2.0])) and torch.allclose(protos[2], torch.tensor([1.0, 1.0]))
    assert valid.tolist() == [True, True, True]
    # FedPall's rule normalises the client means first
    pn, _ = average_prototypes(all_means, all_counts, normalise=True)
    s = 1 / math.sqrt(2)
    assert torch.allclose(pn[0], torch.tensor([(2 * 1 + s) / 3, s / 3]))
    # the FedProto server does the same from uploads
    from polymodal.federated.core import FitResult

    srv = FedProto(3, 2)
    res = [(c, FitResult(torch.zeros(0), 3, arrays={"protos": all_means[c], "counts": all_counts[c]})) for c in (0, 1)]
    vec, metrics = srv.aggregate_fit(0, srv.initial_vector(), res)
    assert torch.equal(vec, pack_prototypes(protos, valid)) and metrics["valid_prototypes"] == 3


def test_fedproto_distance_nearest_and_clients():
    f = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    p = torch.tensor([[0.0, 1.0], [5.0, 5.0]])
    y = torch.tensor([0, 1])
    valid = torch.tensor([True, True])
    assert prototype_distance(f, y, p, valid, "mse").item() == pytest.approx((1 + 0 + 25 + 25) / 4)
    assert prototype_distance(f, y, p, valid, "sq_l2").item() == pytest.approx((1 + 50) / 2)
    assert prototype_distance(f, y, p, torch.tensor([True, False]), "mse").item() == pytest.approx(0.5)
    assert nearest_prototype(torch.tensor([[4.0, 4.0], [0.0, 0.9]]), p, valid).tolist() == [1, 0]
    assert nearest_prototype(torch.tensor([[4.0, 4.0]]), p, torch.tensor([True, False])).tolist() == [0]
    srv = FedProto(C, FEAT, local_epochs=1, batch_size=4)
    clients = toy_clients(cls=FedProtoClient, n_classes=C, predict="prototype")
    sim = Simulator(clients, srv, srv.initial_vector(), evaluate_clients=True)
    hist = sim.run(2)
    assert "personal_accuracy_mean" in hist[-1].metrics and hist[-1].metrics["valid_prototypes"] == C
    bodies = [get_state_vector(c.model) for c in clients]
    assert not torch.allclose(bodies[0], bodies[1])  # nothing is averaged


# ---------------------------------------------------------------------------------------------- the recipe
TINY = {"rounds": 2, "train_per_client": 20, "test_per_domain": 20, "feat_dim": 16, "head_hidden": 16,
        "local_epochs": 1, "batch_size": 16, "eval_every": 1}


def test_config_validation_names_the_field():
    with pytest.raises(ConfigError, match="methods"):
        build_config(FedPallConfig, {"methods": ["fedpall", "moon"]})
    with pytest.raises(ConfigError, match="twice"):
        build_config(FedPallConfig, {"methods": ["fedbn", "fedbn"]})
    assert build_config(FedPallConfig, {"methods": ["fedrep"]}).methods == ("fedrep",)
    with pytest.raises(ConfigError, match="loss_component"):
        build_config(FedPallConfig, {"loss_component": 7})
    assert build_config(FedPallConfig, {}).methods == METHODS


def test_every_row_rebuilds_from_config_and_method():
    cfg = build_config(FedPallConfig, {**TINY, "domains": ["mnist", "sk-digits"]})
    for m in ALL_METHODS:
        a, b = build_fedpall_federation(cfg, m), build_fedpall_federation(cfg, m)
        assert a.n_clients == 2 and torch.equal(a.initial, b.initial)
        assert a.info["domains"] == ["mnist", "sk-digits"]
    # the optional fedrep row: only the body travels, the heads stay personal
    fed = build_fedpall_federation(cfg, "fedrep")
    sim = fed.simulator()
    sim.run(1)
    head = state_mask(sim.clients[0].model, "head")
    assert torch.equal(sim.params[head], fed.initial[head]) and not torch.equal(sim.params[~head], fed.initial[~head])
    from polymodal.federated.federation import FEDERATIONS

    assert FEDERATIONS["fedpall"] is build_fedpall_federation


def test_quick_compare_end_to_end(tmp_path):
    from polymodal.core.execute import prepare_compare, run_compare
    from polymodal.core.registry import get_recipe

    d = prepare_compare(get_recipe("fedpall"), overrides=TINY, quick=True, out=tmp_path / "cmp")
    result = run_compare(d, isolate=False)
    rows = {r["method"]: r["metrics"] for r in result["rows"]}
    assert list(rows) == list(METHODS)
    for m in rows.values():
        accs = [m[f"acc/{n}"] for n in ("mnist", "sk-digits", "mnist-inverted", "mnist-color", "sk-digits-noisy")]
        assert m["accuracy"] == pytest.approx(float(np.mean(accs)))
        assert 0 <= m["accuracy"] <= m["best_accuracy"] <= 1 and m["best_round"] in (1.0, 2.0)
    extra = json.loads((d / "fedpall" / "result.json").read_text())["extra"]
    assert [r for r, _ in extra["curves"]["fedpall"]] == [1, 2]
    report = (d / "report.md").read_text()
    assert "## Per-domain test accuracy, last round" in report and "mnist-color" in report
    assert (d / "accuracy_curves.png").is_file() and (d / "per_domain.png").is_file()


@pytest.mark.parametrize("method", ["fedpall", "fedproto", "fedbn"])
def test_flower_in_process_grid_matches_the_simulator(task_identity, method):
    """Features and prototypes as extra uploads, personal models in the SuperNode's context: the Flower
    strategy reproduces the Simulator's numbers."""
    pytest.importorskip("flwr")
    from flower_testing import run_over_flower

    cfg = build_config(FedPallConfig, {**TINY, "domains": ["mnist", "sk-digits", "mnist-color"]})
    fed = build_fedpall_federation(cfg, method)
    sim = fed.simulator()
    sim.run(fed.rounds)
    strategy = run_over_flower(fed)  # a fresh client for every message
    assert torch.equal(strategy.params, sim.params)
    for got, want in zip(strategy.history, sim.history, strict=True):
        assert got.metrics["personal_accuracy_mean"] == want.metrics["personal_accuracy_mean"]

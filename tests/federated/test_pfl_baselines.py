"""Personalised-FL baselines (spec federated.md 1.4): FedRep's freezing, Ditto's proximal pull (hand-checked
gradient), FedAvg-FT's evaluation that leaves the client unchanged, state round trips and resume."""

import numpy as np
import pytest
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.core.runs import Run
from polymodal.federated.algorithms.personal import (
    PersonalClient,
    get_state_vector,
    set_state_vector,
    state_mask,
)
from polymodal.federated.algorithms.pfl_baselines import (
    Ditto,
    DittoClient,
    FedAvgFT,
    FedAvgFTClient,
    FedRep,
    FedRepClient,
    body_mask,
)
from polymodal.federated.copfl_recipe import COPFLConfig, build
from polymodal.federated.models import MLPNet

torch.set_num_threads(1)


def _model_fn():
    return MLPNet(12, 3, 8, 4)


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12)).astype(np.float32), rng.integers(0, 3, n)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------- FedRep
def test_fedrep_head_phase_freezes_the_body_and_body_phase_freezes_the_head():
    x, y = _data()
    client = FedRepClient(0, _model_fn, x, y)
    mask = body_mask(client.model)
    torch.manual_seed(1)
    download = get_state_vector(_model_fn())[mask]
    cfg = {"lr": 0.1, "batch_size": 8, "momentum": 0.9}
    before_head = _state(client.model)
    res = client.fit(download, {**cfg, "head_epochs": 2, "body_epochs": 0}, np.random.default_rng(0))
    after = get_state_vector(client.model)
    assert torch.equal(after[mask], download) and torch.equal(res.vector, download)  # body untouched
    assert not torch.equal(client.model.head.weight, before_head["head.weight"])  # head trained
    head_before = client.model.head.weight.detach().clone()
    client.fit(download, {**cfg, "head_epochs": 0, "body_epochs": 1}, np.random.default_rng(1))
    assert torch.equal(client.model.head.weight, head_before)  # head frozen
    assert not torch.equal(get_state_vector(client.model)[mask], download)  # body trained
    assert all(p.requires_grad for p in client.model.parameters())  # freezing is undone


def test_fedrep_strategy_averages_only_the_body():
    model = _model_fn()
    strat = FedRep(state_mask(model, "body"), lr=0.1)
    vec, cfg = strat.configure_fit(0, get_state_vector(model))
    assert vec.numel() == int(body_mask(model).sum()) < get_state_vector(model).numel()
    assert cfg["head_epochs"] == 5 and cfg["body_epochs"] == 1
    with pytest.raises(ConfigError, match="head_epochs"):
        FedRep(state_mask(model, "body"), head_epochs=-1)


# ---------------------------------------------------------------------------------------------- Ditto
def _ditto_step(lam):
    """One full-batch SGD step of Ditto's personal model (momentum 0), from a personal model that differs from
    the global one; returns (personal before, personal after, global)."""
    x, y = _data(n=16)
    client = DittoClient(0, _model_fn, x, y)
    torch.manual_seed(5)
    set_state_vector(client.personal, get_state_vector(_model_fn()))
    torch.manual_seed(6)
    theta_g = get_state_vector(_model_fn())
    p0 = get_state_vector(client.personal)
    cfg = {"lr": 0.5, "batch_size": 16, "personal_epochs": 1, "local_epochs": 0, "ditto_lambda": lam}
    client.fit(theta_g, cfg, np.random.default_rng(0))
    return p0, get_state_vector(client.personal), theta_g, client


def test_ditto_prox_gradient_by_hand():
    p0, p_lam, theta_g, client = _ditto_step(0.1)
    _, p_zero, _, _ = _ditto_step(0.0)
    # same point, same batch: the two steps differ only by -lr * lambda * (theta_p - theta_g)
    assert torch.allclose(p_lam - p_zero, -0.5 * 0.1 * (p0 - theta_g), atol=1e-6)
    # full check: -lr * (dCE/dtheta + lambda (theta_p - theta_g)) with the CE gradient from autograd
    ref = _model_fn()
    set_state_vector(ref, p0)
    loss = nn.functional.cross_entropy(ref(client.x), client.y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(ref.parameters()))])
    assert torch.allclose(p_lam, p0 - 0.5 * (grad + 0.1 * (p0 - theta_g)), atol=1e-6)


def test_ditto_personal_model_is_pulled_toward_the_global_one():
    p0, p_big, theta_g, _ = _ditto_step(1.5)
    _, p_zero, _, _ = _ditto_step(0.0)
    assert float((p_big - theta_g).norm()) < float((p_zero - theta_g).norm())


def test_ditto_evaluates_the_personal_model_and_round_trips_both():
    x, y = _data()
    a = DittoClient(0, _model_fn, x, y, x_test=x[:20], y_test=y[:20])
    torch.manual_seed(2)
    g = get_state_vector(_model_fn())
    a.fit(g, {"lr": 0.2, "batch_size": 8, "ditto_lambda": 0.1}, np.random.default_rng(0))
    out1 = a.evaluate(torch.zeros_like(g))  # the global parameters do not matter
    out2 = a.evaluate(g)
    assert out1 == out2
    b = DittoClient(0, _model_fn, x, y, x_test=x[:20], y_test=y[:20])
    b.load_state_dict(a.state_dict())
    assert b.evaluate(g) == out1
    assert any(k.startswith("personal.") for k in a.state_dict())
    strat = Ditto(state_mask(a.model, "all"))
    assert strat.configure_fit(0, g)[1]["ditto_lambda"] == 0.1
    with pytest.raises(ConfigError, match="ditto_lambda"):
        Ditto(state_mask(a.model, "all"), ditto_lambda=-1.0)


# ---------------------------------------------------------------------------------------------- FedAvg-FT
def test_fedavg_ft_evaluation_leaves_the_client_unchanged_and_is_seeded():
    x, y = _data(n=80)
    client = FedAvgFTClient(0, _model_fn, x[:60], y[:60], x_test=x[60:], y_test=y[60:], ft_epochs=2, ft_lr=0.5)
    torch.manual_seed(3)
    g = get_state_vector(_model_fn())
    client.fit(g, {"lr": 0.1, "batch_size": 8}, np.random.default_rng(0))
    state = _state(client.model)
    cfg = {"round": 4, "seed": 0}
    first = client.evaluate(g, cfg)
    assert all(torch.equal(state[k], v) for k, v in client.model.state_dict().items())
    assert client.evaluate(g, cfg) == first  # seeded by (seed, round, client)
    # without fine-tuning it is the plain personalised evaluation of the global model
    plain = PersonalClient(0, _model_fn, x[:60], y[:60], x_test=x[60:], y_test=y[60:])
    no_ft = FedAvgFTClient(0, _model_fn, x[:60], y[:60], x_test=x[60:], y_test=y[60:], ft_epochs=0)
    assert no_ft.evaluate(g, cfg) == plain.evaluate(g, cfg)
    assert FedAvgFT(state_mask(client.model, "all")).name == "fedavg-ft"
    with pytest.raises(ConfigError, match="ft_epochs"):
        FedAvgFTClient(0, _model_fn, x, y, ft_epochs=-1)


def test_fine_tuning_changes_the_evaluated_model():
    """Fine-tuning is really applied before the evaluation (and undone after it)."""
    x, _ = _data(n=80, seed=4)
    y = x[:, :3].argmax(1)  # a learnable labelling
    torch.manual_seed(3)
    g = get_state_vector(_model_fn())
    ft = FedAvgFTClient(0, _model_fn, x[:60], y[:60], x_test=x[:60], y_test=y[:60], ft_epochs=20, ft_lr=0.5)
    plain = PersonalClient(0, _model_fn, x[:60], y[:60], x_test=x[:60], y_test=y[:60])
    # evaluated on its own training data, 20 epochs of fine-tuning fit it better than the random initial model
    assert ft.evaluate(g, {"round": 0, "seed": 0})["accuracy"] > plain.evaluate(g)["accuracy"]


# ---------------------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("method", ["fedrep", "ditto", "fedavg-ft"])
def test_baseline_resume_gives_identical_numbers(tmp_path, method):
    cfg = COPFLConfig(n_clients=5, rounds=3, eval_every=1, hidden=16, feat_dim=8, lr=0.05, max_samples=500,
                      head_epochs=2)
    fed = build(cfg, method)
    full = fed.simulator()
    full.run(3)
    run = Run.create(tmp_path / "r", "co-pfl", {})
    fed.simulator().run(1, run, checkpoint=f"{method}.pt")
    resumed = fed.simulator()
    resumed.run(3, run, checkpoint=f"{method}.pt")
    assert torch.equal(full.params, resumed.params)
    assert full.history[-1].metrics["personal_accuracy"] == resumed.history[-1].metrics["personal_accuracy"]

"""In-process federated simulator: clients, strategies, rounds, robustness, checkpoints (spec section 1.1).

A round: sample clients (seeded by (seed, round)) -> ``strategy.configure_fit`` (what clients download and how
they train) -> each sampled client's ``fit`` (seeded by (seed, round, client), so results do not depend on the
order clients run in) -> failures, late replies and non-finite updates are dropped and recorded -> Byzantine
clients' uploads are replaced by the attack -> ``strategy.aggregate_fit`` -> optional evaluation -> metrics into
the run folder and a checkpoint, so ``resume`` continues exactly where a killed run stopped.

Models travel as flat float32 vectors (``parameters_to_vector`` order), which is what robust aggregators and
attacks operate on, and what the Flower adapter ships as one array.

Stateful and multi-phase algorithms (FedSM, FedPall, CO-PFL and the personalised baselines) use four optional
hooks, honoured identically by the Simulator and the Flower strategy:

- ``FitResult.arrays``: named extra uploads (prototypes, counts, masks, features); a strategy whose uploads do
  not have the download's shape sets ``upload_like_download = False`` (then only finiteness is checked).
- ``Client.state_dict() / load_state_dict()``: a client's personal state (personal layers, masks, momentum),
  saved in the Simulator's checkpoint and, under Flower, in the SuperNode's ``context.state`` between messages.
- ``Strategy.post_round(rnd, params, exchange) -> (params, metrics)``: extra phases after aggregation (FedSM's
  classifier re-training); ``exchange(client_ids or None for all, download, config)`` runs ``fit`` on those
  clients over whatever transport the engine has and returns their results.
- ``Strategy.evaluation(rnd, params, evaluate) -> metrics``: what central evaluation reports (FedSM evaluates
  the backbone with several re-trained heads); ``Client.evaluate(params, config)`` is the personalised
  evaluation on a client's own test split (``evaluate_clients=True``), combined by :func:`combine_client_evals`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from polymodal.core.errors import ConfigError
from polymodal.core.runs import CHECKPOINT_NAME, Run
from polymodal.federated.attacks import apply_attack


# ---------------------------------------------------------------------------------------------- interfaces
@dataclass
class FitResult:
    """A client's reply: a flat vector (parameters, delta or gradient, as configured), its sample count, metrics."""

    vector: torch.Tensor
    num_examples: int
    metrics: dict[str, float] = field(default_factory=dict)
    #: named extra uploads (e.g. per-class feature means and counts); travel as extra arrays under Flower
    arrays: dict[str, torch.Tensor] = field(default_factory=dict)

    def numel(self) -> int:
        return int(self.vector.numel()) + sum(int(a.numel()) for a in self.arrays.values())

    def is_finite(self) -> bool:
        return bool(torch.isfinite(self.vector).all()) and all(
            bool(torch.isfinite(a).all()) for a in self.arrays.values() if a.is_floating_point())


class Client(Protocol):
    cid: int
    num_examples: int

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult: ...


#: ``exchange(client_ids | None, download, config) -> {cid: FitResult}``: an extra phase run by the engine
Exchange = Callable[[Sequence[int] | None, torch.Tensor, dict[str, Any]], dict[int, FitResult]]


class Strategy(Protocol):
    """Server logic: what to send, how to combine the replies. ``state_dict`` holds everything a resume needs."""

    name: str

    def initialize(self, params: torch.Tensor) -> None: ...

    def configure_fit(self, rnd: int, params: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]: ...

    def aggregate_fit(self, rnd: int, params: torch.Tensor,
                      results: list[tuple[int, FitResult]]) -> tuple[torch.Tensor, dict[str, float]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# ---------------------------------------------------------------------------------------------- clients
def client_data(client: Any, cid: int, x: np.ndarray, y: np.ndarray, x_test: np.ndarray | None = None,
                y_test: np.ndarray | None = None) -> None:
    """Set ``cid``, ``x`` (float32), ``y`` (int64), ``num_examples`` and the optional local test split on a
    client object; a ConfigError names the client when (x, y) is empty or of unequal length."""
    if len(x) != len(y) or len(x) == 0:
        raise ConfigError(f"client {cid}: needs a non-empty (x, y) of equal length, got {len(x)} and {len(y)}")
    if (x_test is None) != (y_test is None) or (x_test is not None and len(x_test) != len(y_test)):
        raise ConfigError(f"client {cid}: x_test and y_test must be given together, with equal lengths")
    client.cid = int(cid)
    client.x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    client.y = torch.as_tensor(np.asarray(y, dtype=np.int64))
    client.num_examples = len(client.y)
    client.x_test = None if x_test is None else torch.as_tensor(np.asarray(x_test, dtype=np.float32))
    client.y_test = None if y_test is None else torch.as_tensor(np.asarray(y_test, dtype=np.int64))


def predict_labels(model: nn.Module, x: torch.Tensor, device: str = "cpu") -> torch.Tensor:
    """Arg-max labels of ``model`` (eval mode, no gradients) on ``x``, on the CPU."""
    model.eval()
    with torch.no_grad():
        return model(x.to(device)).argmax(1).cpu()


def score_test_split(client: Any, predict: Callable[[torch.Tensor], torch.Tensor] | None = None
                     ) -> dict[str, float] | None:
    """``accuracy`` / ``correct`` / ``total`` of ``predict`` (default ``client.predict``) on the client's own test
    split (None without one): what a personalised client's ``evaluate`` reports for :func:`combine_client_evals`."""
    if client.x_test is None or client.y_test is None or len(client.y_test) == 0:
        return None
    correct = int(((predict or client.predict)(client.x_test) == client.y_test).sum())
    return {"accuracy": correct / len(client.y_test), "correct": float(correct), "total": float(len(client.y_test))}


def get_vector(model: nn.Module) -> torch.Tensor:
    return nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def set_vector(model: nn.Module, vec: torch.Tensor) -> None:
    with torch.no_grad():
        nn.utils.vector_to_parameters(vec.to(next(model.parameters()).device), model.parameters())


class TorchClient:
    """A client holding (x, y) and training a copy of the shared architecture with SGD.

    ``config`` keys (set by the strategy): ``mode`` = "params" (return the trained parameters), "delta"
    (download − trained) or "gradient" (one minibatch gradient at the download, no step); ``local_steps``,
    ``local_epochs`` (used when local_steps is 0), ``lr``, ``batch_size``, ``prox_mu`` (FedProx term).
    """

    def __init__(self, cid: int, model_fn: Callable[[], nn.Module], x: np.ndarray, y: np.ndarray, *,
                 device: str = "cpu", x_test: np.ndarray | None = None, y_test: np.ndarray | None = None):
        client_data(self, cid, x, y, x_test, y_test)
        self.device = device
        self._model_fn = model_fn
        self._model: nn.Module | None = None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = self._model_fn().to(self.device)
        return self._model

    def _batch(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = rng.choice(self.num_examples, size=min(batch_size, self.num_examples), replace=False)
        return self.x[idx].to(self.device), self.y[idx].to(self.device)

    def fit(self, download: torch.Tensor, config: dict[str, Any], rng: np.random.Generator) -> FitResult:
        model = self.model
        set_vector(model, download)
        model.train()
        mode = config.get("mode", "params")
        bs = int(config.get("batch_size", 32))
        loss_fn = nn.CrossEntropyLoss()
        if mode == "gradient":
            xb, yb = self._batch(rng, bs)
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            grad = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).detach().cpu()
            return FitResult(grad, self.num_examples, {"loss": float(loss.detach())})
        if mode not in ("params", "delta"):
            raise ConfigError(f"client {self.cid}: unknown mode {mode!r} (params, delta, gradient)")
        lr, mu = float(config.get("lr", 0.05)), float(config.get("prox_mu", 0.0))
        steps = int(config.get("local_steps", 0)) or int(np.ceil(self.num_examples / bs)) * int(
            config.get("local_epochs", 1))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        anchor = download.to(self.device) if mu else None
        total = 0.0
        for _ in range(steps):
            xb, yb = self._batch(rng, bs)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            if anchor is not None:
                loss = loss + 0.5 * mu * (nn.utils.parameters_to_vector(model.parameters()) - anchor).pow(2).sum()
            loss.backward()
            opt.step()
            total += float(loss.detach())
        new = get_vector(model).cpu()
        vec = new if mode == "params" else download.cpu() - new
        return FitResult(vec, self.num_examples, {"loss": total / max(steps, 1), "steps": steps})


    def evaluate(self, params: torch.Tensor, config: dict[str, Any] | None = None) -> dict[str, float] | None:
        """Accuracy of ``params`` on this client's own test split (personalised evaluation); None without one."""
        set_vector(self.model, params)
        return score_test_split(self)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_labels(self.model, x, self.device)


def combine_client_evals(evals: dict[int, dict[str, float]]) -> dict[str, float]:
    """Personalised accuracy over clients (spec 4.4): ``personal_accuracy`` = total correct / total test samples
    (when clients report ``correct``/``total``), ``personal_accuracy_mean`` the unweighted client mean, plus
    min / std and each client's accuracy as ``client_accuracy/<cid>``. Shared by the Simulator and Flower."""
    if not evals:
        return {}
    accs = {c: float(e["accuracy"]) for c, e in sorted(evals.items())}
    out = {"personal_accuracy_mean": float(np.mean(list(accs.values()))),
           "personal_accuracy_min": float(min(accs.values())),
           "personal_accuracy_std": float(np.std(list(accs.values())))}
    if all("correct" in e and "total" in e for e in evals.values()):
        total = sum(float(e["total"]) for e in evals.values())
        out["personal_accuracy"] = sum(float(e["correct"]) for e in evals.values()) / max(total, 1.0)
    else:
        out["personal_accuracy"] = out["personal_accuracy_mean"]
    out.update({f"client_accuracy/{c}": a for c, a in accs.items()})
    return out


def check_upload(res: FitResult, download: torch.Tensor, strategy: Any) -> str | None:
    """Why an upload must be dropped (None when it is fine): the Simulator's and the Flower strategy's check."""
    if getattr(strategy, "upload_like_download", True) and res.vector.shape != download.shape:
        return f"bad shape: {tuple(res.vector.shape)} != {tuple(download.shape)}"
    if not res.is_finite():
        return "non-finite values in the update"
    return None


def central_evaluation(strategy: Any, rnd: int, params: torch.Tensor,
                       evaluate: Callable[[torch.Tensor], dict[str, float]] | None) -> dict[str, float]:
    """The strategy's ``evaluation`` hook when it has one (e.g. FedSM's re-trained heads), else ``evaluate``."""
    hook = getattr(strategy, "evaluation", None)
    if hook is not None:
        return dict(hook(rnd, params, evaluate))
    return dict(evaluate(params)) if evaluate is not None else {}


def substitute_byzantine(results: dict[int, FitResult], byzantine: set[int], attack: str, attack_kwargs: dict,
                         seed: int, rnd: int) -> dict[int, FitResult]:
    """Replace the Byzantine clients' uploads by the attack, forged from the round's honest uploads (an
    omniscient attacker), seeded by (seed, round). Shared by the Simulator and the Flower strategy so both
    produce the same vectors. ``label_flip`` acts on data, so uploads are left as they are."""
    byz = [c for c in results if c in byzantine]
    if not byz or attack in ("none", "label_flip"):
        return results
    honest = [c for c in results if c not in byzantine]
    if not honest:
        return results
    gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, rnd, 0xA7]).integers(2**31)))
    forged = apply_attack(attack, torch.stack([results[c].vector for c in honest]),
                          torch.stack([results[c].vector for c in byz]), len(results), gen, **attack_kwargs)
    out = dict(results)
    for k, c in enumerate(byz):
        out[c] = FitResult(forged[k], results[c].num_examples, {**results[c].metrics, "byzantine": 1.0})
    return out


def aggregate_round(strategy: Strategy, params: torch.Tensor, results: dict[int, FitResult], byzantine: set[int],
                    attack: str, attack_kwargs: dict, seed: int, rnd: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Attack substitution, then the strategy's aggregation in client-id order, plus the honest training loss.
    One function for the Simulator and the Flower strategy, so both compute the same round."""
    if not results:
        return params, {}
    results = substitute_byzantine(results, byzantine, attack, attack_kwargs, seed, rnd)
    ordered = [(c, results[c]) for c in sorted(results)]
    new, metrics = strategy.aggregate_fit(rnd, params, ordered)
    metrics = dict(metrics)
    losses = [r.metrics["loss"] for c, r in ordered if c not in byzantine and "loss" in r.metrics]
    if losses:
        metrics["train_loss"] = float(np.mean(losses))
    return new, metrics


def client_rng(seed: int, rnd: int, cid: int, phase: int = 0) -> np.random.Generator:
    """The generator client ``cid`` gets in round ``rnd`` (``phase`` > 0: the k-th extra exchange of the round,
    see ``Strategy.post_round``). The Simulator and the Flower client app both use it, so runs match."""
    key = [seed, rnd, cid] if phase == 0 else [seed, rnd, cid, phase]
    return np.random.default_rng(key)


# ---------------------------------------------------------------------------------------------- simulator
@dataclass
class RoundLog:
    round: int
    sampled: list[int]
    dropped: dict[int, str]
    metrics: dict[str, float]


class Simulator:
    """Runs a strategy over clients in-process.

    ``clients_per_round``: how many clients are sampled each round (all when None). ``byzantine``: ids of
    clients whose uploads the ``attack`` replaces (omniscient attacker: it sees the honest uploads of the round).
    ``evaluate(params) -> dict`` is called every ``eval_every`` rounds and after the last one.
    ``client_timeout``: replies that took longer (seconds) are discarded as late. Clients train tiny models one
    after another: call ``torch.set_num_threads(1)`` first on a shared CPU (the recipes' ``threads`` setting does;
    benchmarks/fl_engine.py measured 0.44 s vs 16 s for the same job on a loaded 2-core box). ``evaluate_clients``: at the
    same rounds, every client with a local test split evaluates the global parameters on it (personalised
    evaluation: mean and worst client accuracy).
    """

    def __init__(self, clients: Sequence[Client], strategy: Strategy, initial_params: torch.Tensor, *,
                 clients_per_round: int | None = None, seed: int = 0, byzantine: Sequence[int] = (),
                 attack: str = "none", attack_kwargs: dict | None = None,
                 evaluate: Callable[[torch.Tensor], dict[str, float]] | None = None, eval_every: int = 1,
                 client_timeout: float | None = None, evaluate_clients: bool = False):
        if not clients:
            raise ConfigError("the federation has no clients")
        ids = [c.cid for c in clients]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"client ids must be unique, got {ids}")
        if clients_per_round is not None and not 1 <= clients_per_round <= len(clients):
            raise ConfigError(f"field 'clients_per_round': must be in 1..{len(clients)}, got {clients_per_round}")
        unknown = set(byzantine) - set(ids)
        if unknown:
            raise ConfigError(f"byzantine ids {sorted(unknown)} are not client ids")
        self.clients = {c.cid: c for c in clients}
        self.strategy = strategy
        self.params = initial_params.detach().clone().float()
        self.clients_per_round = clients_per_round
        self.seed = int(seed)
        self.byzantine = set(int(b) for b in byzantine)
        self.attack, self.attack_kwargs = attack, dict(attack_kwargs or {})
        self.evaluate, self.eval_every = evaluate, max(1, int(eval_every))
        self.client_timeout = client_timeout
        self.evaluate_clients = evaluate_clients
        self.round = 0
        self.history: list[RoundLog] = []
        self._bytes_up = self._bytes_down = 0
        self._late_dropped: dict[int, str] = {}
        strategy.initialize(self.params)

    def _sample(self, rnd: int) -> list[int]:
        ids = sorted(self.clients)
        if self.clients_per_round is None or self.clients_per_round == len(ids):
            return ids
        rng = np.random.default_rng([self.seed, rnd, 0xC1])
        return sorted(int(i) for i in rng.choice(ids, size=self.clients_per_round, replace=False))

    def _fit_all(self, rnd: int, sampled: Sequence[int], download: torch.Tensor, config: dict[str, Any],
                 phase: int = 0) -> tuple[dict[int, FitResult], dict[int, str]]:
        results, dropped = {}, {}
        for cid in sampled:
            # numpy rng only: torch.manual_seed costs ~10 ms (it queues CUDA/XPU seeding); a client that needs
            # torch randomness makes a torch.Generator from this rng
            rng = client_rng(self.seed, rnd, cid, phase)
            t0 = time.perf_counter()
            try:
                res = self.clients[cid].fit(download.clone(), dict(config), rng)
            except Exception as exc:  # a failing client must not stop the federation
                dropped[cid] = f"error: {type(exc).__name__}: {exc}"
                continue
            took = time.perf_counter() - t0
            self._bytes_up += 4 * res.numel()  # sent, whether or not it is used (as the Flower strategy counts)
            reason = check_upload(res, download, self.strategy)
            if self.client_timeout is not None and took > self.client_timeout:
                dropped[cid] = f"timeout: replied after {took:.2f} s > {self.client_timeout:g} s"
            elif reason is not None:
                dropped[cid] = reason
            else:
                results[cid] = res
        self._bytes_down += 4 * int(download.numel()) * len(sampled)
        return results, dropped

    def _exchange(self, rnd: int) -> Exchange:
        """The ``exchange`` handed to ``strategy.post_round``: phase k of the round seeds clients with
        ``client_rng(seed, rnd, cid, k)``; dropped clients are recorded in the round's log."""
        phase = [0]

        def exchange(ids: Sequence[int] | None, download: torch.Tensor, config: dict[str, Any]
                     ) -> dict[int, FitResult]:
            phase[0] += 1
            targets = sorted(self.clients) if ids is None else sorted(int(i) for i in ids)
            results, dropped = self._fit_all(rnd, targets, download, config, phase[0])
            self._late_dropped.update({c: f"phase {phase[0]}: {why}" for c, why in dropped.items()})
            return results

        return exchange

    def step(self, *, force_eval: bool = False) -> RoundLog:
        """Run one round and return its log (evaluated every ``eval_every`` rounds, or when ``force_eval``)."""
        rnd = self.round
        t0 = time.perf_counter()
        self._bytes_up = self._bytes_down = 0
        self._late_dropped: dict[int, str] = {}
        sampled = self._sample(rnd)
        download, config = self.strategy.configure_fit(rnd, self.params)
        results, dropped = self._fit_all(rnd, sampled, download, config)
        metrics: dict[str, float] = {"clients": float(len(results)), "dropped": float(len(dropped))}
        self.params, round_metrics = aggregate_round(self.strategy, self.params, results, self.byzantine,
                                                     self.attack, self.attack_kwargs, self.seed, rnd)
        metrics.update(round_metrics)
        post = getattr(self.strategy, "post_round", None)
        if post is not None:
            self.params, post_metrics = post(rnd, self.params, self._exchange(rnd))
            metrics.update(post_metrics)
            dropped.update({c: why for c, why in self._late_dropped.items() if c not in dropped})
        metrics["bytes_down"] = float(self._bytes_down)
        metrics["bytes_up"] = float(self._bytes_up)
        due = (rnd + 1) % self.eval_every == 0 or force_eval
        if due:
            metrics.update(central_evaluation(self.strategy, rnd, self.params, self.evaluate))
        if self.evaluate_clients and due:
            evals = {}
            for cid, c in sorted(self.clients.items()):
                if hasattr(c, "evaluate"):
                    r = c.evaluate(self.params.clone(), {"round": rnd, "seed": self.seed})
                    if r is not None:
                        evals[cid] = r
            metrics.update(combine_client_evals(evals))
        metrics["round_seconds"] = time.perf_counter() - t0
        log = RoundLog(rnd, sampled, dropped, metrics)
        self.history.append(log)
        self.round += 1
        return log

    # -- checkpoints ------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        clients = {str(cid): c.state_dict() for cid, c in self.clients.items() if hasattr(c, "state_dict")}
        return {"round": self.round, "params": self.params.clone(), "strategy": self.strategy.state_dict(),
                "history": [vars(h) for h in self.history], "clients": clients}

    def load_state(self, state: dict[str, Any]) -> None:
        self.round = int(state["round"])
        self.params = state["params"].clone()
        self.strategy.load_state_dict(state["strategy"])
        self.history = [RoundLog(**h) for h in state["history"]]
        for cid, cstate in state.get("clients", {}).items():
            self.clients[int(cid)].load_state_dict(cstate)

    def run(self, rounds: int, run: Run | None = None, *, on_round: Callable[[RoundLog], None] | None = None,
            checkpoint: str | None = None, tag: dict[str, Any] | None = None) -> list[RoundLog]:
        """Run until ``rounds`` rounds are done, resuming from ``run``'s checkpoint when it has one.

        ``checkpoint``: the checkpoint file name (several federations in one run folder use one each); ``tag``:
        key/values added to every ``metrics.jsonl`` line (e.g. ``{"method": "fedsm"}``), so a resume only
        truncates this federation's lines."""
        name = checkpoint or CHECKPOINT_NAME
        if run is not None:
            ckpt = run.load_checkpoint(name)
            if ckpt is not None:
                self.load_state(ckpt)
                run.truncate_metrics(self.round - 1, match=tag)
                run.note_resume(self.round - 1)
        while self.round < rounds:
            log = self.step(force_eval=self.round == rounds - 1)
            if run is not None:
                run.log(log.round, **(tag or {}), **log.metrics,
                        dropped_clients={str(k): v for k, v in log.dropped.items()} or None)
                run.save_checkpoint(self.state(), name)
            if on_round is not None:
                on_round(log)
        return self.history

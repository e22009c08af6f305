"""Where affective adaptation lives: the gate_proj module study (spec section 3).

Reconstructs the protocol of "Opening the Black Box: Preliminary Insights into Affective Modeling in Multimodal
Foundation Models" (arXiv 2601.15906; no public code) on any Llama-style causal LM (SmolLM2-135M-Instruct offline):

- **change magnitude** (:func:`relative_delta_norms`): per module type and layer ``||dW||_F / ||W_base||_F`` with
  ``dW = (alpha / r) B A`` of a LoRA reference (or ``W_tuned - W_base`` for full fine-tuning, :func:`full_deltas`);
- **controlled module transfer** (sufficiency, :func:`transferred`): the base model plus the reference's ``dW`` of
  chosen module types only;
- **targeted single-module adaptation** (efficiency, :func:`train_lora` with ``module_types=("gate_proj",)``): PEFT
  LoRA on one module type; :func:`lora_param_count` gives its trainable parameters without building it;
- **destructive ablation** (necessity, :func:`ablated`): in the tuned model, reset one type to base (``"reset"``),
  replace its ``dW`` by same-norm Gaussian noise (``"noise"``) or zero its whole weight (``"zero_weight"``).

:class:`ModuleStudy` wires the four tests over tasks and seeds; scores come from option scoring of label words
(:func:`evaluate`). The metric and ablation kinds are our reconstruction (the paper does not give them).
"""

from __future__ import annotations

import copy
import math
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from polymodal.core.errors import ConfigError
from polymodal.llm.affect_tasks import AffectTask

MODULE_TYPES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
ABLATIONS = ("reset", "noise", "zero_weight")
_NAME = re.compile(r"layers\.(\d+)\..*?\b(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.weight$")

#: ``{param name: (B, A, scale)}`` low-rank factors, or ``{param name: dW}`` dense deltas
Deltas = dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------------------- shapes and counts
def _modules(modules: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(modules, str):
        if modules == "all-linear":
            return MODULE_TYPES
        modules = (modules,)
    mods = tuple(modules)
    bad = [m for m in mods if m not in MODULE_TYPES]
    if bad or not mods:
        raise ConfigError(f"field 'module_types': unknown module type(s) {bad or mods}; choose among "
                          f"{', '.join(MODULE_TYPES)} or 'all-linear'")
    return mods


def module_shapes(config: Any) -> dict[str, tuple[int, int]]:
    """``{module type: (in_features, out_features)}`` of a Llama/Qwen2-style config (GQA and ``head_dim`` aware)."""
    h, f = int(config.hidden_size), int(config.intermediate_size)
    nh = int(config.num_attention_heads)
    nkv = int(getattr(config, "num_key_value_heads", None) or nh)
    hd = int(getattr(config, "head_dim", None) or h // nh)
    return {"q_proj": (h, nh * hd), "k_proj": (h, nkv * hd), "v_proj": (h, nkv * hd), "o_proj": (nh * hd, h),
            "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}


def lora_param_count(config: Any, modules: str | Iterable[str], r: int) -> int:
    """Trainable parameters of a LoRA of rank ``r`` on ``modules`` (types or ``"all-linear"``) in every layer:
    ``layers * sum((in + out) * r)``. SmolLM2 r=8: gate_proj 506,880, all 7 types 2,442,240."""
    shapes = module_shapes(config)
    return int(config.num_hidden_layers) * sum((shapes[m][0] + shapes[m][1]) * int(r) for m in _modules(modules))


def module_type_of(name: str) -> tuple[int, str] | None:
    """``(layer, module type)`` of a parameter name such as ``model.layers.3.mlp.gate_proj.weight``."""
    m = _NAME.search(name)
    return (int(m.group(1)), m.group(2)) if m else None


def linear_weights(model: torch.nn.Module, module_types: Iterable[str] = MODULE_TYPES) -> dict[str, torch.Tensor]:
    """The decoder's linear weights of the given types (live parameters, by name)."""
    types = set(module_types)
    out = {}
    for name, p in model.named_parameters():
        key = module_type_of(name)
        if key and key[1] in types and "lora_" not in name:
            out[_clean(name)] = p
    return out


def _clean(name: str) -> str:
    name = name.removeprefix("base_model.model.")
    return name.replace(".base_layer.", ".")


# ---------------------------------------------------------------------------------------------- deltas
def lora_factors(peft_model: torch.nn.Module, adapter: str = "default") -> dict[str, dict[str, Any]]:
    """``{base weight name: {"A", "B", "scale"}}`` of every LoRA-wrapped linear (CPU copies)."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, mod in peft_model.named_modules():
        if isinstance(mod, LoraLayer) and adapter in getattr(mod, "lora_A", {}):
            out[_clean(name) + ".weight"] = {"A": mod.lora_A[adapter].weight.detach().float().cpu().clone(),
                                             "B": mod.lora_B[adapter].weight.detach().float().cpu().clone(),
                                             "scale": float(mod.scaling[adapter])}
    return out


def factors_to_deltas(factors: dict[str, dict[str, Any]]) -> Deltas:
    """Dense ``dW = scale * B @ A`` per weight name."""
    return {n: f["scale"] * (f["B"] @ f["A"]) for n, f in factors.items()}


def full_deltas(base: torch.nn.Module, tuned: torch.nn.Module, module_types: Iterable[str] = MODULE_TYPES) -> Deltas:
    """``W_tuned - W_base`` for full fine-tuning (``mode="full"``)."""
    b, t = linear_weights(base, module_types), linear_weights(tuned, module_types)
    return {n: (t[n].detach().float() - b[n].detach().float()).cpu() for n in b}


def relative_delta_norms(model: torch.nn.Module, deltas: Deltas) -> dict[str, list[float]]:
    """``{module type: [||dW||_F / ||W_base||_F per layer]}`` (layers in order; types with no delta left out)."""
    base = linear_weights(model)
    per: dict[str, dict[int, float]] = {}
    for name, dw in deltas.items():
        layer, mtype = module_type_of(name)  # type: ignore[misc]
        w = base[name].detach().float().cpu()
        per.setdefault(mtype, {})[layer] = float(dw.float().norm() / w.norm())
    return {t: [per[t][k] for k in sorted(per[t])] for t in MODULE_TYPES if t in per}


# ---------------------------------------------------------------------------------------------- weight surgery
@contextmanager
def patched(model: torch.nn.Module, new_weights: dict[str, torch.Tensor]) -> Iterator[torch.nn.Module]:
    """Temporarily replace weights by name; the originals are restored bit-exactly on exit."""
    params = dict(model.named_parameters())
    saved = {}
    try:
        with torch.no_grad():
            for n, w in new_weights.items():
                if n not in params:
                    raise KeyError(f"model has no parameter {n!r}")
                saved[n] = params[n].detach().clone()
                params[n].copy_(w.to(params[n].dtype).to(params[n].device))
        yield model
    finally:
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)


def _types_of(deltas: Deltas, module_types: Iterable[str]) -> list[str]:
    types = set(module_types)
    return [n for n in deltas if module_type_of(n)[1] in types]  # type: ignore[index]


def transfer_weights(model: torch.nn.Module, deltas: Deltas, module_types: Iterable[str]) -> dict[str, torch.Tensor]:
    """``W_base + dW`` for the weights of ``module_types`` only (the other weights stay base)."""
    base = linear_weights(model)
    return {n: base[n].detach().float().cpu() + deltas[n].float() for n in _types_of(deltas, module_types)}


@contextmanager
def transferred(model: torch.nn.Module, deltas: Deltas, module_types: str | Iterable[str]) -> Iterator[torch.nn.Module]:
    """The base ``model`` with the tuned deltas of ``module_types`` copied in (``()`` = base, all = tuned)."""
    types = (module_types,) if isinstance(module_types, str) else tuple(module_types)
    with patched(model, transfer_weights(model, deltas, types)) as m:
        yield m


def ablation_weights(model: torch.nn.Module, deltas: Deltas, module_type: str, kind: str = "reset",
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """Weights of the tuned model (base + every delta) with ``module_type`` ablated by ``kind``."""
    if kind not in ABLATIONS:
        raise ConfigError(f"field 'ablations': unknown kind {kind!r}; choose among {', '.join(ABLATIONS)}")
    _modules(module_type)
    base = linear_weights(model)
    gen = torch.Generator().manual_seed(int(seed))
    out = {}
    for n, dw in deltas.items():
        w = base[n].detach().float().cpu()
        if module_type_of(n)[1] != module_type:  # type: ignore[index]
            out[n] = w + dw.float()
        elif kind == "reset":
            out[n] = w
        elif kind == "noise":
            noise = torch.randn(dw.shape, generator=gen)
            out[n] = w + noise * (dw.float().norm() / noise.norm().clamp_min(1e-12))
        else:
            out[n] = torch.zeros_like(w)
    if kind == "zero_weight" and not any(module_type_of(n)[1] == module_type for n in deltas):  # type: ignore[index]
        out.update({n: torch.zeros_like(w) for n, w in base.items() if module_type_of(n)[1] == module_type})  # type: ignore[index]
    return out


@contextmanager
def ablated(model: torch.nn.Module, deltas: Deltas, module_type: str, kind: str = "reset",
            seed: int = 0) -> Iterator[torch.nn.Module]:
    """The tuned model (base ``model`` + ``deltas``) with one module type reset / noised / zeroed."""
    with patched(model, ablation_weights(model, deltas, module_type, kind, seed)) as m:
        yield m


# ---------------------------------------------------------------------------------------------- LoRA training
def make_lora(model: torch.nn.Module, module_types: str | Iterable[str] = "all-linear", r: int = 8,
              alpha: float = 16, dropout: float = 0.0):
    """``peft.get_peft_model`` with ``target_modules`` = the listed types (explicit names, not PEFT's q/v default)."""
    from peft import LoraConfig, get_peft_model

    types = list(_modules(module_types))
    cfg = LoraConfig(r=int(r), lora_alpha=alpha, lora_dropout=dropout, target_modules=types, bias="none",
                     task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # peft calls transformers' deprecated is_gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, cfg)


def _encode(tokenizer, task: AffectTask, examples: Sequence, with_target: bool) -> list[tuple[list[int], int]]:
    out = []
    for ex in examples:
        ids = tokenizer(task.prompt(ex.text), add_special_tokens=False)["input_ids"]
        if with_target:
            tgt = tokenizer(task.target(ex.label), add_special_tokens=False)["input_ids"]
            out.append((list(ids) + list(tgt), len(ids)))
        else:
            out.append((list(ids), len(ids)))
    return out


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _decoder_states(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Last hidden states of the decoder stack (before the LM head)."""
    return _unwrap(model).get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state


def _lm_head(model: torch.nn.Module) -> torch.nn.Module:
    return _unwrap(model).get_output_embeddings()


def _pad_id(tokenizer) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pid if pid is not None else 0)


def train_lora(model: torch.nn.Module, tokenizer, tasks: Sequence[AffectTask], module_types: str | Iterable[str],
               *, r: int = 8, alpha: float = 16, steps: int = 300, lr: float = 2e-4, batch_size: int = 8,
               seed: int = 0, device: str | torch.device = "cpu", log: Callable[[int, float], None] | None = None,
               warmup_steps: int = 0, max_grad_norm: float | None = 1.0, schedule: str = "linear") -> dict[str, Any]:
    """Train a LoRA on a **deep copy** of ``model`` (which stays untouched) with the label-word loss over a
    round-robin mixture of ``tasks``: AdamW at ``lr`` after a linear warm-up over ``warmup_steps``, then
    ``schedule`` ``"linear"`` (decay to 0 at the last step, HF Trainer's default) or ``"constant"``; gradients
    clipped to ``max_grad_norm`` (None = no clipping; 1.0 as in HF Trainer).
    Returns ``{"factors", "trainable_params", "losses", "seconds"}``."""
    if steps < 1 or batch_size < 1:
        raise ConfigError(f"field 'steps'/'batch_size': need >= 1, got {steps}/{batch_size}")
    if warmup_steps < 0:
        raise ConfigError(f"field 'warmup_steps': need >= 0, got {warmup_steps}")
    if schedule not in ("linear", "constant"):
        raise ConfigError(f"field 'schedule': 'linear' or 'constant', got {schedule!r}")

    def lr_at(step: int) -> float:
        if step < warmup_steps:
            return lr * (step + 1) / warmup_steps
        if schedule == "constant":
            return lr
        return lr * (steps - step) / max(1, steps - warmup_steps)

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    work = copy.deepcopy(model).to(device)
    peft_model = make_lora(work, module_types, r, alpha)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    n_trainable = int(sum(p.numel() for p in trainable))
    encoded = [_encode(tokenizer, t, t.train, True) for t in tasks]
    rng = np.random.default_rng([seed, 0x10A])
    orders = [list(rng.permutation(len(e))) for e in encoded]
    pos = [0] * len(encoded)
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    pad = _pad_id(tokenizer)
    peft_model.train()
    losses = []
    for step in range(steps):
        ti = step % len(encoded)
        batch = []
        for _ in range(batch_size):
            if pos[ti] >= len(orders[ti]):
                orders[ti], pos[ti] = list(rng.permutation(len(encoded[ti]))), 0
            batch.append(encoded[ti][orders[ti][pos[ti]]])
            pos[ti] += 1
        ids, mask = _pad([s for s, _ in batch], pad)
        # label-word loss only: the LM head runs on the target positions, not the whole sequence
        rows, cols, tgts = [], [], []
        for i, (seq, n_prompt) in enumerate(batch):
            for j in range(n_prompt, len(seq)):
                rows.append(i)
                cols.append(j - 1)
                tgts.append(seq[j])
        hidden = _decoder_states(peft_model, ids.to(device), mask.to(device))
        logits = _lm_head(peft_model)(hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)])
        loss = torch.nn.functional.cross_entropy(logits.float(), torch.tensor(tgts, device=device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(trainable, max_grad_norm)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.step()
        losses.append(float(loss.detach()))
        if log is not None:
            log(step, losses[-1])
    peft_model.eval()
    factors = lora_factors(peft_model)
    del peft_model, work, opt
    return {"factors": factors, "trainable_params": n_trainable, "losses": losses,
            "seconds": time.perf_counter() - t0}


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def label_scores(model: torch.nn.Module, tokenizer, task: AffectTask, examples: Sequence | None = None,
                 batch_size: int = 32) -> np.ndarray:
    """``(n_examples, n_labels)`` summed log-probabilities of each label word after the prompt (option scoring).
    Single-token label sets need one forward per prompt; otherwise each (prompt, label) pair is scored."""
    examples = task.test if examples is None else examples
    device = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    label_ids = [tokenizer(task.target(k), add_special_tokens=False)["input_ids"] for k in range(len(task.labels))]
    prompts = _encode(tokenizer, task, examples, False)
    single = all(len(t) == 1 for t in label_ids) and len({t[0] for t in label_ids}) == len(label_ids)
    out = np.zeros((len(examples), len(task.labels)))
    if single:
        first = torch.tensor([t[0] for t in label_ids])
        for i in range(0, len(prompts), batch_size):
            chunk = prompts[i:i + batch_size]
            ids, mask = _pad([s for s, _ in chunk], pad)
            hidden = _decoder_states(model, ids.to(device), mask.to(device))
            last = torch.tensor([n - 1 for _, n in chunk], device=device)
            logits = _lm_head(model)(hidden[torch.arange(len(chunk), device=device), last]).float()
            lp = torch.log_softmax(logits, -1)
            out[i:i + len(chunk)] = lp[:, first.to(device)].cpu().numpy()
        return out
    pairs = [(e, k) for e in range(len(prompts)) for k in range(len(label_ids))]
    per = max(1, batch_size // 2)
    for i in range(0, len(pairs), per):
        chunk = pairs[i:i + per]
        seqs = [prompts[e][0] + label_ids[k] for e, k in chunk]
        ids, mask = _pad(seqs, pad)
        lp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        for j, (e, k) in enumerate(chunk):
            n = prompts[e][1]
            tgt = torch.tensor(label_ids[k], device=device)
            out[e, k] = float(lp[j, n - 1:n - 1 + len(tgt)].gather(-1, tgt[:, None]).sum())
    return out


def evaluate(model: torch.nn.Module, tokenizer, tasks: Sequence[AffectTask], batch_size: int = 32) -> dict[str, float]:
    """Accuracy and weighted F1 per task (``<task>/accuracy``) and their means (``accuracy``, ``weighted_f1``)."""
    from sklearn.metrics import f1_score

    was_training = model.training
    model.eval()
    out: dict[str, float] = {}
    for t in tasks:
        pred = label_scores(model, tokenizer, t, batch_size=batch_size).argmax(1)
        gold = np.array([e.label for e in t.test])
        out[f"{t.name}/accuracy"] = float((pred == gold).mean())
        out[f"{t.name}/weighted_f1"] = float(f1_score(gold, pred, average="weighted", zero_division=0))
    out["accuracy"] = float(np.mean([out[f"{t.name}/accuracy"] for t in tasks]))
    out["weighted_f1"] = float(np.mean([out[f"{t.name}/weighted_f1"] for t in tasks]))
    model.train(was_training)
    return out


# ---------------------------------------------------------------------------------------------- the study
class ModuleStudy:
    """The four tests of spec 3.4 for one base model over ``tasks`` and ``seeds``.

    ``model_loader()`` returns ``(model, tokenizer)`` (e.g. :func:`polymodal.llm.load_causal_lm`). Every method
    takes a ``seed`` (default: the first of ``seeds``); results are kept per seed and :meth:`report` gives
    mean and std over the seeds run so far."""

    def __init__(self, model_loader: Callable[[], tuple[torch.nn.Module, Any]], tasks: Sequence[AffectTask],
                 module_types: Sequence[str] = MODULE_TYPES, rank: int = 8, steps: int = 300, seeds: Sequence[int] = (0, 1, 2),
                 *, lora_alpha: float = 16, lr: float = 2e-4, batch_size: int = 8, eval_batch_size: int = 32,
                 warmup_steps: int = 0, max_grad_norm: float | None = 1.0, schedule: str = "linear",
                 device: str = "cpu",
                 log: Callable[..., None] | None = None):
        self.model, self.tokenizer = model_loader()
        self.model.to(device).eval()
        self.tasks, self.module_types = list(tasks), _modules(module_types)
        self.rank, self.steps, self.seeds = int(rank), int(steps), tuple(seeds)
        self.lora_alpha, self.lr, self.batch_size, self.eval_batch_size = lora_alpha, lr, batch_size, eval_batch_size
        self.warmup_steps, self.max_grad_norm, self.schedule = int(warmup_steps), max_grad_norm, schedule
        self.device, self.log = device, log
        self.reference: dict[int, dict[str, Any]] = {}
        self.results: dict[int, dict[str, dict[str, dict[str, float]]]] = {}
        self._base: dict[str, float] | None = None

    def _store(self, seed: int, kind: str, name: str, metrics: dict[str, float]) -> dict[str, float]:
        self.results.setdefault(seed, {}).setdefault(kind, {})[name] = metrics
        return metrics

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.tokenizer, self.tasks, self.eval_batch_size)

    def base_scores(self) -> dict[str, float]:
        if self._base is None:
            self._base = self.evaluate()
        return self._base

    def _train(self, module_types: Sequence[str], seed: int, name: str) -> dict[str, Any]:
        log = (lambda step, loss: self.log(step, row=name, seed=seed, loss=loss)) if self.log else None
        return train_lora(self.model, self.tokenizer, self.tasks, module_types, r=self.rank, alpha=self.lora_alpha,
                          steps=self.steps, lr=self.lr, batch_size=self.batch_size, seed=seed, device=self.device,
                          log=log, warmup_steps=self.warmup_steps, max_grad_norm=self.max_grad_norm,
                          schedule=self.schedule)

    def set_reference(self, seed: int, fit: dict[str, Any]) -> None:
        """Install a reference fit (``train_lora``'s dict, e.g. restored from a checkpoint)."""
        self.reference[seed] = {**fit, "deltas": factors_to_deltas(fit["factors"])}

    def fit_reference(self, seed: int | None = None, fit: dict[str, Any] | None = None) -> dict[str, float]:
        """Train the all-linear LoRA reference ("AffectGPT analogue") and score it."""
        seed = self.seeds[0] if seed is None else seed
        self.set_reference(seed, fit or self._train(MODULE_TYPES, seed, "lora-all-linear"))
        with transferred(self.model, self.reference[seed]["deltas"], MODULE_TYPES):
            m = self.evaluate()
        m["trainable_params"] = float(self.reference[seed]["trainable_params"])
        return self._store(seed, "single", "all-linear", m)

    def _ref(self, seed: int | None) -> tuple[int, dict[str, Any]]:
        seed = self.seeds[0] if seed is None else seed
        if seed not in self.reference:
            raise ConfigError(f"no reference for seed {seed}: call fit_reference(seed) first")
        return seed, self.reference[seed]

    def delta_norms(self, seed: int | None = None) -> dict[str, list[float]]:
        seed, ref = self._ref(seed)
        return relative_delta_norms(self.model, ref["deltas"])

    def transfer(self, module_type: str | Sequence[str], seed: int | None = None) -> dict[str, float]:
        """Base + the reference's dW of ``module_type``: accuracy and % of the reference."""
        seed, ref = self._ref(seed)
        with transferred(self.model, ref["deltas"], module_type):
            m = self.evaluate()
        return self._store(seed, "transfer", module_type if isinstance(module_type, str) else "+".join(module_type),
                           self._relative(m, seed))

    def single_module(self, module_type: str | Sequence[str], seed: int | None = None,
                      fit: dict[str, Any] | None = None) -> dict[str, float]:
        """LoRA on ``module_type`` only (or a set of types, e.g. ``("q_proj", "v_proj")``; same steps and lr):
        % of reference score and trainable parameters. Stored under the type or ``"+"``-joined set."""
        seed = self.seeds[0] if seed is None else seed
        types = _modules(module_type)
        name = "+".join(types)
        fit = fit or self._train(types, seed, f"lora-{name}")
        with transferred(self.model, factors_to_deltas(fit["factors"]), types):
            m = self.evaluate()
        m["trainable_params"] = float(fit["trainable_params"])
        if seed in self.reference:
            m["param_share"] = 100.0 * fit["trainable_params"] / self.reference[seed]["trainable_params"]
        return self._store(seed, "single", name, self._relative(m, seed))

    def ablate(self, module_type: str, kind: str = "reset", seed: int | None = None) -> dict[str, float]:
        """The tuned model with ``module_type`` ablated: accuracy and its drop from the reference."""
        seed, ref = self._ref(seed)
        with ablated(self.model, ref["deltas"], module_type, kind, seed):
            m = self.evaluate()
        m = self._relative(m, seed)
        return self._store(seed, f"ablate-{kind}", module_type, m)

    def _relative(self, m: dict[str, float], seed: int) -> dict[str, float]:
        ref = self.results.get(seed, {}).get("single", {}).get("all-linear")
        if ref:
            base = self.base_scores()
            m["pct_of_reference"] = 100.0 * m["accuracy"] / ref["accuracy"] if ref["accuracy"] else float("nan")
            m["drop_from_reference"] = ref["accuracy"] - m["accuracy"]
            gain = ref["accuracy"] - base["accuracy"]
            m["recovery"] = (m["accuracy"] - base["accuracy"]) / gain if abs(gain) > 1e-12 else float("nan")
        return m

    def report(self) -> dict[str, Any]:
        """``{kind: {name: {metric: (mean, std)}}}`` over the seeds run, plus per-seed delta-norm means."""
        out: dict[str, Any] = {"base": self.base_scores() if self._base is not None else None, "seeds": []}
        kinds = sorted({k for r in self.results.values() for k in r})
        for kind in kinds:
            names = sorted({n for r in self.results.values() for n in r.get(kind, {})})
            out[kind] = {}
            for name in names:
                runs = [r[kind][name] for r in self.results.values() if name in r.get(kind, {})]
                keys = sorted(set().union(*runs))
                out[kind][name] = {k: _mean_std([x.get(k, math.nan) for x in runs]) for k in keys}
        out["seeds"] = sorted(self.results)
        out["delta_norms"] = {s: {t: float(np.mean(v)) for t, v in self.delta_norms(s).items()} for s in self.reference}
        return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    return (float(v.mean()), float(v.std())) if len(v) else (math.nan, math.nan)


def plot_delta_norms(norms: dict[str, list[float]], title: str = "relative change ||dW|| / ||W|| per layer"):
    """Per-layer profile (left) and per-type mean (right) of :func:`relative_delta_norms`; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [2, 1]})
    for t, v in norms.items():
        a.plot(range(len(v)), v, marker="o", ms=2.5, lw=2.2 if t == "gate_proj" else 1.0, label=t)
    a.set_xlabel("layer")
    a.set_ylabel("||dW||_F / ||W_base||_F")
    a.set_title(title, fontsize=9)
    a.legend(fontsize=7, ncol=2)
    types = list(norms)
    means = [float(np.mean(norms[t])) for t in types]
    b.bar(types, means, color=["C3" if t == "gate_proj" else "C0" for t in types])
    b.set_title("mean over layers", fontsize=9)
    b.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    return fig

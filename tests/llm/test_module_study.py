"""gate_proj module study (spec 3.5 checks) on a tiny random-init Llama; one slow SmolLM2 check."""

from types import SimpleNamespace

import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.llm.affect_tasks import AffectExample, AffectTask
from polymodal.llm.module_study import (
    MODULE_TYPES,
    ModuleStudy,
    ablated,
    factors_to_deltas,
    linear_weights,
    lora_param_count,
    make_lora,
    module_type_of,
    relative_delta_norms,
    train_lora,
    transferred,
)

torch.set_num_threads(1)

SMOLLM2 = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3,
                          num_hidden_layers=30, head_dim=64)
QWEN25_7B = SimpleNamespace(hidden_size=3584, intermediate_size=18944, num_attention_heads=28, num_key_value_heads=4,
                            num_hidden_layers=28)


class WordTokenizer:
    """Whitespace tokenizer over a fixed vocabulary (enough for the training/scoring code paths)."""

    def __init__(self, words):
        self.vocab = {w: i + 2 for i, w in enumerate(sorted(set(words)))}
        self.pad_token_id, self.eos_token_id = 0, 0

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.get(w, 1) for w in text.replace("\n", " \n ").split(" ") if w]}


def tiny_task() -> AffectTask:
    words = {"joy": ["sun", "smile", "party"], "fear": ["dark", "ghost", "storm"]}
    train = [AffectExample(f"I saw {w}", k) for k, lab in enumerate(words) for w in words[lab][:2] for _ in range(3)]
    test = [AffectExample(f"I saw {w}", k) for k, lab in enumerate(words) for w in words[lab]]
    return AffectTask("tiny", ("joy", "fear"), train, test)


def tiny_model(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def setup():
    task = tiny_task()
    words = [w for ex in task.train + task.test for w in task.prompt(ex.text).replace("\n", " ").split()]
    tok = WordTokenizer(words + list(task.labels) + ["Text:", "Emotion:"])
    model = tiny_model()
    fit = train_lora(model, tok, [task], "all-linear", r=4, alpha=8, steps=4, lr=5e-2, batch_size=4, seed=0)
    return model, tok, task, fit


def test_lora_param_count_matches_spec():
    assert lora_param_count(SMOLLM2, ["gate_proj"], 8) == 506_880
    assert lora_param_count(SMOLLM2, "all-linear", 8) == 2_442_240
    assert lora_param_count(SMOLLM2, MODULE_TYPES, 8) == 2_442_240
    for r in (1, 8, 16):
        assert lora_param_count(QWEN25_7B, ["gate_proj"], r) == 28 * 22528 * r
        assert lora_param_count(QWEN25_7B, "all-linear", r) == 28 * 90112 * r
    assert lora_param_count(QWEN25_7B, ["gate_proj"], 8) / lora_param_count(QWEN25_7B, "all-linear", 8) == 0.25
    with pytest.raises(ConfigError, match="module_types"):
        lora_param_count(SMOLLM2, ["mlp"], 8)


def test_lora_on_gate_proj_wraps_and_trains_only_gate():
    from peft.tuners.lora import LoraLayer

    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = make_lora(model, ["gate_proj"], r=4, alpha=8)
    wrapped = [n for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    assert len(wrapped) == 2 and all(n.endswith("mlp.gate_proj") for n in wrapped)
    trainable = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert all("gate_proj.lora_" in n for n in trainable)
    assert sum(trainable.values()) == lora_param_count(model.config, ["gate_proj"], 4) == 2 * (16 + 40) * 4
    # training through train_lora: only LoRA factors of gate_proj, base model untouched
    task = tiny_task()
    tok = WordTokenizer([w for ex in task.train for w in task.prompt(ex.text).split()] + list(task.labels))
    base = tiny_model()
    ref = {n: p.detach().clone() for n, p in base.named_parameters()}
    fit = train_lora(base, tok, [task], ["gate_proj"], r=4, alpha=8, steps=3, lr=1e-2, batch_size=4)
    assert fit["trainable_params"] == 2 * (16 + 40) * 4
    assert set(fit["factors"]) == {f"model.layers.{i}.mlp.gate_proj.weight" for i in range(2)}
    assert all(f["B"].abs().sum() > 0 for f in fit["factors"].values())  # B starts at zero: it trained
    assert all(torch.equal(p, ref[n]) for n, p in base.named_parameters())
    assert len(before) > 0


def test_transfer_all_is_tuned_none_is_base(setup):
    model, tok, task, fit = setup
    deltas = factors_to_deltas(fit["factors"])
    ids = torch.tensor([[2, 3, 4, 5, 6]])
    with torch.no_grad():
        base_logits = model(ids).logits.clone()
        # the tuned model, computed independently: merge the LoRA into a copy
        import copy

        merged = copy.deepcopy(model)
        w = dict(merged.named_parameters())
        for n, d in deltas.items():
            w[n].add_(d)
        tuned_logits = merged(ids).logits
        with transferred(model, deltas, MODULE_TYPES):
            assert torch.allclose(model(ids).logits, tuned_logits, atol=1e-6)
        with transferred(model, deltas, ()):
            assert torch.equal(model(ids).logits, base_logits)
        assert torch.equal(model(ids).logits, base_logits)  # restored
        assert not torch.allclose(tuned_logits, base_logits)


def test_transfer_copies_only_named_type(setup):
    model, _, _, fit = setup
    deltas = factors_to_deltas(fit["factors"])
    base = {n: p.detach().clone() for n, p in linear_weights(model).items()}
    with transferred(model, deltas, "gate_proj"):
        now = linear_weights(model)
        for n, w in now.items():
            if module_type_of(n)[1] == "gate_proj":
                assert torch.allclose(w, base[n] + deltas[n])
            else:
                assert torch.equal(w, base[n])


def test_reset_all_types_equals_base_and_ablation_kinds(setup):
    model, _, _, fit = setup
    deltas = factors_to_deltas(fit["factors"])
    ids = torch.tensor([[2, 3, 4, 5]])
    with torch.no_grad():
        base_logits = model(ids).logits.clone()
        # resetting every type one after another on the tuned weights = base
        w = dict(model.named_parameters())
        from polymodal.llm.module_study import ablation_weights

        tuned = {n: w[n].detach() + d for n, d in deltas.items()}
        state = dict(tuned)
        for t in MODULE_TYPES:
            reset_t = ablation_weights(model, deltas, t, "reset")
            state.update({n: v for n, v in reset_t.items() if module_type_of(n)[1] == t})
        from polymodal.llm.module_study import patched

        with patched(model, state):
            assert torch.allclose(model(ids).logits, base_logits, atol=0, rtol=0)
        # noise keeps the Frobenius norm of dW; zero_weight zeroes the module
        noisy = ablation_weights(model, deltas, "gate_proj", "noise", seed=1)
        for n, d in deltas.items():
            if module_type_of(n)[1] == "gate_proj":
                assert torch.allclose((noisy[n] - w[n]).norm(), d.norm(), rtol=1e-4)
        with ablated(model, deltas, "up_proj", "zero_weight"):
            assert all(p.abs().sum() == 0 for n, p in linear_weights(model, ["up_proj"]).items())
        with pytest.raises(ConfigError, match="ablations"):
            ablation_weights(model, deltas, "gate_proj", "shuffle")


def test_delta_norms_match_hand_computation():
    model = tiny_model()
    w = linear_weights(model)
    name = "model.layers.1.self_attn.q_proj.weight"
    d = torch.zeros_like(w[name])
    d[0, 0], d[1, 1] = 3.0, 4.0  # ||d|| = 5
    norms = relative_delta_norms(model, {name: d})
    assert set(norms) == {"q_proj"}
    assert norms["q_proj"] == pytest.approx([5.0 / float(w[name].detach().pow(2).sum().sqrt())])
    # low-rank factors: dW = scale * B @ A
    A, B = torch.ones(1, 16), torch.full((16, 1), 2.0)
    dw = factors_to_deltas({name: {"A": A, "B": B, "scale": 0.5}})[name]
    assert torch.equal(dw, torch.ones(16, 16))


def test_module_study_end_to_end_tiny(setup):
    model, tok, task, _ = setup
    study = ModuleStudy(lambda: (model, tok), [task], rank=2, steps=2, seeds=(0,), lr=5e-2, batch_size=4)
    ref = study.fit_reference()
    assert 0 <= ref["accuracy"] <= 1 and ref["trainable_params"] == lora_param_count(model.config, "all-linear", 2)
    tr = study.transfer("gate_proj")
    assert "pct_of_reference" in tr
    one = study.single_module("gate_proj")
    assert one["param_share"] == pytest.approx(100 * 2 * 56 * 2 / ref["trainable_params"])
    ab = study.ablate("gate_proj", "reset")
    assert "drop_from_reference" in ab
    rep = study.report()
    assert set(rep["delta_norms"][0]) == set(MODULE_TYPES)
    assert rep["transfer"]["gate_proj"]["accuracy"][1] == 0.0  # one seed: std 0


@pytest.mark.slow
def test_smollm2_gate_lora_wraps_30_modules(smollm2):
    from peft.tuners.lora import LoraLayer

    model, tokenizer, _ = smollm2
    assert lora_param_count(model.config, ["gate_proj"], 8) == 506_880
    assert lora_param_count(model.config, "all-linear", 8) == 2_442_240
    import copy

    peft_model = make_lora(copy.deepcopy(model), ["gate_proj"], r=8, alpha=16)
    assert sum(isinstance(m, LoraLayer) for m in peft_model.modules()) == 30
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == 506_880


def _tiny_hf_dir(tmp_path, task_names, n_train, n_test):
    """A saved tiny random Llama + a word-level fast tokenizer covering the tasks' sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from polymodal.llm.affect_tasks import build_task

    pre = pre_tokenizers.Whitespace()
    vocab = {"<unk>": 0, "<pad>": 1}
    for name in task_names:
        t = build_task(name, n_train, n_test, seed=0)
        texts = [t.prompt(e.text) + t.target(e.label) for e in t.train + t.test] + [t.target(k) for k in range(len(t.labels))]
        for text in texts:
            for w, _ in pre.pre_tokenize_str(text):
                vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", eos_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1)
    d = tmp_path / "tiny-llama"
    LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return d


def test_recipe_rows_and_resume_without_retraining(tmp_path):
    from polymodal.core.runs import Run
    from polymodal.llm.module_study_recipe import ROWS, GateProjConfig, run_gate_proj

    d = _tiny_hf_dir(tmp_path, ["ekman6"], 16, 12)
    cfg = GateProjConfig(model=str(d), tasks=("ekman6",), n_train=16, n_test=12, steps=2, lr=1e-2, batch_size=4,
                         ablations=("reset", "zero_weight"), device="cpu", threads=1)
    run = Run.create(tmp_path / "run", "gate-proj", cfg.model_dump(mode="json"))
    res = run_gate_proj(cfg, run)
    assert tuple(res.rows) == ROWS
    gate = res.rows["lora-gate_proj"]
    tiny = SimpleNamespace(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                           num_hidden_layers=2)
    assert gate["trainable_params"] == lora_param_count(tiny, ["gate_proj"], 8)
    assert gate["param_share"] == pytest.approx(100 * lora_param_count(tiny, ["gate_proj"], 8)
                                                / lora_param_count(tiny, "all-linear", 8))
    assert {"transfer_pct", "ablation_drop_reset", "ablation_drop_zero_weight", "rel_delta_norm"} <= set(gate)
    assert res.extra["gate_proj_rank"]["relative weight change"] in range(1, 8)
    assert (run.dir / "delta_norms.png").is_file()
    n_lines = len(run.read_metrics())
    assert n_lines == 8 * 2  # 8 LoRAs x 2 steps
    again = run_gate_proj(cfg, Run.open(run.dir))  # every LoRA checkpointed: nothing is retrained
    assert len(run.read_metrics()) == n_lines
    assert again.rows == res.rows
    # a row killed mid-training (no checkpoint, partial log lines) is retrained once, its old lines replaced
    (run.dir / "checkpoints" / "row-lora-up_proj.pt").unlink()
    run.log(99, row="lora-up_proj", seed=0, loss=1.0)
    third = run_gate_proj(cfg, Run.open(run.dir))
    lines = run.read_metrics()
    assert len(lines) == n_lines and sum(r["row"] == "lora-up_proj" for r in lines) == 2
    assert third.rows["lora-up_proj"] == res.rows["lora-up_proj"]  # seeded: same numbers
    with pytest.raises(Exception, match="ablations"):
        GateProjConfig(ablations=("shuffle",))


def test_recipe_module_set_rows(tmp_path):
    from polymodal.core.runs import Run
    from polymodal.llm.module_study_recipe import GateProjConfig, run_gate_proj

    d = _tiny_hf_dir(tmp_path, ["sentiment2"], 8, 6)
    cfg = GateProjConfig(model=str(d), tasks=("sentiment2",), n_train=8, n_test=6, steps=1, batch_size=2,
                         methods=("lora-gate_proj", "lora-q_v"), ablations=(), device="cpu", threads=1)
    res = run_gate_proj(cfg, Run.create(tmp_path / "run", "gate-proj", cfg.model_dump(mode="json")))
    assert list(res.rows) == ["lora-all-linear", "lora-gate_proj", "lora-q_v"]
    tiny = SimpleNamespace(hidden_size=16, intermediate_size=32, num_attention_heads=4, num_key_value_heads=2,
                           num_hidden_layers=2)
    assert res.rows["lora-q_v"]["trainable_params"] == lora_param_count(tiny, ["q_proj", "v_proj"], 8)
    assert "transfer_pct" in res.rows["lora-q_v"] and "ablation_drop_reset" not in res.rows["lora-gate_proj"]


def test_train_lora_warmup_and_clipping():
    task = tiny_task()
    tok = WordTokenizer([w for ex in task.train for w in task.prompt(ex.text).split()] + list(task.labels))
    base = tiny_model()

    def fit(**kw):
        f = train_lora(base, tok, [task], ["gate_proj"], r=4, alpha=8, steps=3, lr=1e-2, batch_size=4, seed=0, **kw)
        return torch.stack([x["B"].norm() for x in f["factors"].values()]).sum()

    plain = fit(warmup_steps=0, schedule="constant")
    assert torch.equal(plain, fit(warmup_steps=1, schedule="constant"))  # a 1-step warm-up is already at full lr
    assert fit(warmup_steps=100, schedule="constant") < plain  # lr ramps from lr/100: B moves less
    assert not torch.equal(plain, fit(warmup_steps=0))  # linear decay (the default) changes steps 2 and 3
    assert torch.isfinite(fit(max_grad_norm=None))
    with pytest.raises(ConfigError, match="warmup_steps"):
        train_lora(base, tok, [task], ["gate_proj"], steps=1, warmup_steps=-1)
    with pytest.raises(ConfigError, match="schedule"):
        train_lora(base, tok, [task], ["gate_proj"], steps=1, schedule="cosine")


def test_demo_and_smoke_settings_are_valid_on_top_of_quick():
    from polymodal.core.config import build_config
    from polymodal.core.registry import get_recipe
    from polymodal.llm.module_study_recipe import REFERENCE, ROWS, GateProjConfig

    rec = get_recipe("gate-proj")
    for overrides in (rec.demo_settings, rec.smoke_settings):
        cfg = build_config(GateProjConfig, {**rec.quick, **overrides})
        assert "lora-gate_proj" in cfg.methods and set(cfg.methods) & set(rec.headline[1])  # a baseline to show
    method, baselines = rec.headline
    assert method == "lora-gate_proj" and set(baselines) <= set(ROWS)
    assert REFERENCE not in baselines and method not in baselines and len(baselines) == len(MODULE_TYPES) - 1

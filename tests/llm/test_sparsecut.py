"""SparseCut on a tiny random Llama + tiny random CLIP vision tower (spec 2.5 checks)."""

import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.llm.sparsecut import (
    MultiGrainedFusion,
    SparseCutMLLM,
    attach_shortcuts,
    decoder_layers,
    level_layer_mapping,
    llava_style,
    small_clip_vision,
    spaced_layers,
)

torch.set_num_threads(1)
IMG = -200


def tiny_llm(layers: int = 6, seed: int = 0, init_range: float = 0.02):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      initializer_range=init_range)
    return LlamaForCausalLM(cfg).eval()


def tiny_vision(seed: int = 0):
    # 48 px, patch 8 -> 6 x 6 = 36 tokens; 4 blocks
    return small_clip_vision(image_size=48, patch_size=8, hidden_size=16, num_layers=4, num_heads=2, seed=seed)


def batch(b: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (b, 96, 96, 3), generator=g, dtype=torch.uint8)
    ids = torch.randint(1, 64, (b, 7), generator=g)
    ids[:, 2] = IMG
    return images, ids


def pair(**kw):
    llm, vis = tiny_llm(), tiny_vision()
    sc = SparseCutMLLM(llm, vis, encoder_levels=(0, 1, 2, 3), llm_layers=(0, 2, 3, 5), image_token_id=IMG, **kw)
    return sc


def test_fusion_maps_36_tokens_to_36():
    fus = MultiGrainedFusion(192, 576)
    out = fus(torch.randn(2, 36, 192), torch.randn(2, 144, 192))
    assert out.shape == (2, 36, 576)
    # the concat holds the low token then its 2x2 block of the 12x12 grid
    low = torch.zeros(1, 36, 1)
    high = torch.arange(144, dtype=torch.float).reshape(1, 144, 1)
    blocks = MultiGrainedFusion.gather_blocks(low, high)
    assert blocks[0, 0, 1:].tolist() == [0, 1, 12, 13]
    assert blocks[0, 7, 1:].tolist() == [26, 27, 38, 39]  # token (1,1) -> rows 2-3, cols 2-3
    att = MultiGrainedFusion(16, 32, "cross_attention")
    assert att(torch.randn(2, 36, 16), torch.randn(2, 144, 16)).shape == (2, 36, 32)


def test_sequence_length_equals_llava_baseline():
    images, ids = batch()
    sc = pair()
    torch.manual_seed(0)
    base = llava_style(sc.llm, tiny_vision(), image_token_id=IMG)
    a, b = sc(images, ids), base(images, ids)
    assert a["logits"].shape == b["logits"].shape == (2, 7 - 1 + 36, 64)
    assert sc.n_visual_tokens == base.n_visual_tokens == 36


def test_zero_shortcuts_equal_llava_style_exactly():
    images, ids = batch()
    sc = pair(fusion="none")  # same projector shape as the baseline
    base = llava_style(tiny_llm(), tiny_vision(), image_token_id=IMG)
    base.llm.load_state_dict(sc.llm.state_dict())
    base.projector.load_state_dict(sc.projector.state_dict())
    sc.zero_shortcuts = True
    with torch.no_grad():
        out_sc, out_b = sc(images, ids)["logits"], base(images, ids)["logits"]
    assert torch.equal(out_sc, out_b)
    sc.zero_shortcuts = False
    with torch.no_grad():
        assert not torch.allclose(sc(images, ids)["logits"], out_b)


def test_text_hidden_states_untouched_at_hooked_layer():
    images, ids = batch()
    sc = pair()
    seen = {}
    layer = decoder_layers(sc.llm)[2]

    def grab(name):
        def hook(mod, args, kwargs):
            seen[name] = (args[0] if args else kwargs["hidden_states"]).detach().clone()
        return hook

    # one hook before the shortcut hook, one after: the two see the same forward pass at layer 2
    h1 = layer.register_forward_pre_hook(grab("before"), with_kwargs=True, prepend=True)
    h2 = layer.register_forward_pre_hook(grab("after"), with_kwargs=True)
    with torch.no_grad():
        out = sc(images, ids)
    h1.remove()
    h2.remove()
    vis = out["visual_mask"]
    assert seen["before"].shape == seen["after"].shape
    assert torch.equal(seen["before"][~vis], seen["after"][~vis])
    assert not torch.allclose(seen["before"][vis], seen["after"][vis])
    assert set(sc.injector.fired) == {0, 2, 3, 5}


def test_hooks_do_not_fire_after_prefill_in_cached_generation():
    images, ids = batch(1)
    sc = pair()
    sc.injector.fired.clear()
    with torch.no_grad():
        new = sc.generate(images, ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
    assert all(v == 1 for v in sc.injector.fired.values())  # only the prefill injected
    # the same decode by hand: injected prefill, then plain cached steps
    with torch.no_grad():
        main, short = sc.visual_features(images)
        sp = sc.splice(main, ids)
        with sc.injector.active(short, sp["visual_mask"]):
            out = sc.llm(inputs_embeds=sp["inputs_embeds"], attention_mask=sp["attention_mask"], use_cache=True)
        past, tok, toks = out.past_key_values, out.logits[:, -1].argmax(-1), []
        mask = sp["attention_mask"]
        for _ in range(4):
            toks.append(int(tok))
            mask = torch.cat([mask, mask.new_ones(1, 1)], 1)
            out = sc.llm(input_ids=tok[:, None], attention_mask=mask, past_key_values=past, use_cache=True)
            past, tok = out.past_key_values, out.logits[:, -1].argmax(-1)
    assert new[0, -4:].tolist() == toks


def test_mapping_monotone_and_reverse_flips():
    m = level_layer_mapping(range(8), spaced_layers(8, 30), n_llm_layers=30)
    assert list(m.items()) == [(0, 0), (4, 1), (8, 2), (12, 3), (16, 4), (20, 5), (24, 6), (28, 7)]
    r = level_layer_mapping(range(8), spaced_layers(8, 30), n_llm_layers=30, feature_order_reverse=True)
    assert list(r.values()) == list(range(7, -1, -1)) and list(r) == list(m)
    sc = pair(feature_order_reverse=True)
    assert sc.mapping == {0: 3, 2: 2, 3: 1, 5: 0}


def test_missing_layers_raise_unless_skipped():
    official = (4, 9, 14, 19, 24, 29, 34, 39)
    with pytest.raises(ConfigError, match="llm_layers"):
        level_layer_mapping(range(8), official, n_llm_layers=32)
    m = level_layer_mapping(range(8), official, n_llm_layers=32, skip_missing_layers=True)
    assert len(m) == 6  # the official code's 6-of-8 quirk
    with pytest.raises(ConfigError, match="llm_layers"):
        SparseCutMLLM(tiny_llm(), tiny_vision(), encoder_levels=(0, 1), llm_layers=(0, 6), image_token_id=IMG)
    sc = SparseCutMLLM(tiny_llm(), tiny_vision(), encoder_levels=(0, 1), llm_layers=(0, 6), image_token_id=IMG,
                       skip_missing_layers=True)
    assert sc.mapping == {0: 0}
    with pytest.raises(ConfigError, match="encoder_levels"):
        level_layer_mapping((2, 1), (0, 1), n_llm_layers=4)


def test_projector_is_one_shared_module_and_gets_gradients():
    images, ids = batch()
    sc = pair()
    for p in sc.llm.parameters():
        p.requires_grad_(False)
    calls = []
    h = sc.projector.register_forward_hook(lambda m, a, o: calls.append(o))
    labels = ids.clone()
    labels[:, :5] = -100
    out = sc(images, ids, labels=labels)
    h.remove()
    # one module produced the main tokens (penultimate level 2) and every shortcut level {0, 1, 2, 3}
    assert len(calls) == 4
    assert len([m for m in sc.modules() if isinstance(m, MultiGrainedFusion)]) == 1
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sc.projector.parameters())
    assert all(p.grad is not None for p in sc.vision_encoder.parameters() if p.requires_grad and p.ndim > 1)
    assert all(p.grad is None for p in sc.llm.parameters())


def test_attach_shortcuts_handles_remove():
    from polymodal.llm.sparsecut import ShortcutInjector

    llm = tiny_llm()
    inj = ShortcutInjector()
    handles = attach_shortcuts(llm, {1: 0, 3: 1}, inj)
    assert len(handles) == 2
    for h in handles:
        h.remove()
    with pytest.raises(ConfigError, match="llm_layers"):
        attach_shortcuts(llm, {9: 0}, inj)


def test_left_padding_rows_of_different_length():
    images, ids = batch()
    sc = pair()
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # row 0 is shorter by two tokens (left padding)
    ids[0, :2] = 0
    ids[0, 3] = IMG
    ids[0, 2] = 5
    with torch.no_grad():
        full = sc(images, ids, attention_mask=mask)
        alone = sc(images[:1], ids[:1, 2:])
    assert torch.allclose(full["logits"][0, -1], alone["logits"][0, -1], atol=1e-4)


def test_recipe_config_errors():
    from polymodal.core.config import build_config
    from polymodal.llm.sparsecut_recipe import SparseCutConfig

    with pytest.raises(ConfigError, match="methods"):
        build_config(SparseCutConfig, {"methods": ["sparsecut", "nope"]})
    with pytest.raises(ConfigError, match="batch_size"):
        build_config(SparseCutConfig, {"batch_size": 0})


@pytest.mark.slow
def test_recipe_tiny_run_and_resume(tmp_path, smollm2):
    """Two rows on SmolLM2 cut to 2 layers; a finished row is not retrained on resume."""
    from polymodal.core.config import build_config
    from polymodal.core.runs import Run
    from polymodal.llm.sparsecut_recipe import SparseCutConfig, run_sparsecut

    cfg = build_config(SparseCutConfig, {"methods": ["sparsecut", "llava-projector"], "llm_num_layers": 2,
                                         "vision_layers": 2, "n_train": 8, "n_test": 8, "batch_size": 4,
                                         "latency_reps": 1, "threads": 1, "checkpoint_every": 1})
    run = Run.create(tmp_path / "r", "sparsecut", cfg.model_dump(mode="json"))
    res = run_sparsecut(cfg, run)
    a, b = res.rows["sparsecut"], res.rows["llava-projector"]
    assert a["seq_len"] == b["seq_len"] and a["visual_tokens"] == b["visual_tokens"] == 36
    assert a["shortcuts"] == 2 and b["shortcuts"] == 0
    assert 0 <= a["accuracy"] <= 1 and a["prefill_seconds"] > 0
    again = run_sparsecut(cfg, Run.open(tmp_path / "r"))
    assert again.rows == res.rows


# ---------------------------------------------------------------------------------------------- recipe on tiny models
class WordTokenizer:
    """A word-level stand-in for the SmolLM2 tokenizer (tiny-vocab tests): every answer word gets its own id."""

    def __init__(self, vocab: int = 64):
        from polymodal.llm.synthetic_vqa import ANSWERS

        self.vocab = vocab
        self.ids = {w: i + 1 for i, w in enumerate(dict.fromkeys(a for t in ANSWERS.values() for a in t))}

    def __call__(self, text: str, add_special_tokens: bool = False):
        import re
        import zlib
        from types import SimpleNamespace

        words = re.findall(r"\w+|[^\w\s]|\n", text)
        return SimpleNamespace(input_ids=[self.ids.get(w, 20 + zlib.crc32(w.encode()) % (self.vocab - 20))
                                          for w in words])


TINY_RECIPE = {"methods": ["sparsecut", "llava-projector"], "image_size": 48, "patch_size": 8, "vision_width": 16,
               "vision_heads": 2, "vision_layers": 2, "n_train": 32, "n_test": 8, "batch_size": 8,
               "latency_reps": 1, "threads": 1}


@pytest.fixture
def tiny_recipe(monkeypatch):
    """The ``sparsecut`` recipe with a tiny random 4-layer Llama and the word tokenizer instead of SmolLM2."""
    import polymodal.llm.sparsecut_recipe as rec

    def fake_load(cfg, device):
        # init 0.3, not 0.02: a frozen random LM head with 0.02 weights cannot produce peaked logits at width 32
        # (every logit stays within ~0.1 of the others), so no trainable input could lower the loss much
        llm = tiny_llm(4, init_range=0.3)
        for p in llm.parameters():
            p.requires_grad_(False)
        return llm, WordTokenizer()

    monkeypatch.setattr(rec, "load_frozen_llm", fake_load)
    return rec


def test_tiny_overfit_both_rows(tmp_path, tiny_recipe):
    """32 items, 80 steps: the answer cross-entropy falls well below its start for both rows (the pipeline learns)."""
    from polymodal.core.config import build_config
    from polymodal.core.runs import Run

    cfg = build_config(tiny_recipe.SparseCutConfig, {**TINY_RECIPE, "epochs": 20, "lr": 3e-3, "warmup_steps": 10,
                                                     "checkpoint_every": 1000})
    res = tiny_recipe.run_sparsecut(cfg, Run.create(tmp_path / "r", "sparsecut", cfg.model_dump(mode="json")))
    for row in ("sparsecut", "llava-projector"):
        losses = [v for _, v in res.extra["curves"][row]]
        start, end = sum(losses[:4]) / 4, sum(losses[-8:]) / 8
        assert end < start - 1.5, (row, start, end)  # > 1.5 nats lower (ln 64 = 4.2 is a uniform guess)


def test_mid_row_resume_is_exact(tmp_path, tiny_recipe):
    """Killed in the middle of the first row (after a checkpoint), resumed: identical numbers to an unbroken run."""
    from polymodal.core.config import build_config
    from polymodal.core.runs import Run

    cfg = build_config(tiny_recipe.SparseCutConfig, {**TINY_RECIPE, "epochs": 3, "lr": 3e-3, "warmup_steps": 4,
                                                     "checkpoint_every": 4})
    clean = tiny_recipe.run_sparsecut(cfg, Run.create(tmp_path / "a", "sparsecut", cfg.model_dump(mode="json")))

    class Killed(Exception):
        pass

    run = Run.create(tmp_path / "b", "sparsecut", cfg.model_dump(mode="json"))
    real_log = Run.log

    def dying_log(self, step, **m):
        real_log(self, step, **m)
        if step == 6:  # two steps past the step-4 checkpoint: those two are redone on resume
            raise Killed

    Run.log = dying_log
    try:
        with pytest.raises(Killed):
            tiny_recipe.run_sparsecut(cfg, run)
    finally:
        Run.log = real_log
    resumed_run = Run.open(tmp_path / "b")
    resumed = tiny_recipe.run_sparsecut(cfg, resumed_run)
    timing = {"prefill_seconds"}  # wall-clock; everything else must match bit for bit
    for row in clean.rows:
        assert {k: v for k, v in resumed.rows[row].items() if k not in timing} == \
            {k: v for k, v in clean.rows[row].items() if k not in timing}
    assert resumed.extra["curves"] == clean.extra["curves"]
    steps = [r["step"] for r in resumed_run.read_metrics() if r.get("row") == "sparsecut"]
    assert steps == list(range(1, 13))  # the two lost steps were truncated and logged once


def test_recipe_curriculum_config_errors():
    from polymodal.core.config import build_config
    from polymodal.llm.sparsecut_recipe import SparseCutConfig

    with pytest.raises(ConfigError, match="qtypes"):
        build_config(SparseCutConfig, {"max_shapes": 1})  # count needs two shapes
    with pytest.raises(ConfigError, match="qtypes"):
        build_config(SparseCutConfig, {"qtypes": ["colour", "size"]})


def test_demo_and_smoke_settings_are_valid_on_top_of_quick():
    from polymodal.core.config import build_config
    from polymodal.core.registry import get_recipe
    from polymodal.llm.sparsecut_recipe import SparseCutConfig

    rec = get_recipe("sparsecut")
    for overrides in (rec.demo_settings, rec.smoke_settings):
        cfg = build_config(SparseCutConfig, {**rec.quick, **overrides})
        assert len(cfg.methods) >= 2
        assert set(rec.headline[1]) | {rec.headline[0]} <= set(cfg.methods)

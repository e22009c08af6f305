"""Test-wide settings: no progress bars, a private cache for the whole session, shared real models."""

import os

import pytest

os.environ.setdefault("POLYMODAL_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _keep_user_cache() -> bool:
    return "POLYMODAL_CACHE" in os.environ and os.environ.get("POLYMODAL_TEST_KEEP_CACHE") == "1"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Session-wide so session-scoped model fixtures (SmolLM2 conversion) use the same private cache."""
    if _keep_user_cache():
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLYMODAL_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        yield


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, loaded once per session: (model, tokenizer, first_load_info)."""
    import time

    from polymodal.llm.loading import _MARKER, converted_dir, load_causal_lm, smollm2_gguf_path

    target = converted_dir(smollm2_gguf_path())
    cached_before = (target / _MARKER).is_file()
    t0 = time.perf_counter()
    model, tokenizer = load_causal_lm()
    info = {"cached_before": cached_before, "seconds": time.perf_counter() - t0, "dir": target}
    return model, tokenizer, info


@pytest.fixture(scope="session")
def smollm2_backend(smollm2):
    from polymodal.llm import TransformersBackend

    model, tokenizer, _ = smollm2
    return TransformersBackend(model, tokenizer)


@pytest.fixture(scope="session")
def minilm():
    from polymodal.text import SentenceEncoder

    return SentenceEncoder(cache=False)

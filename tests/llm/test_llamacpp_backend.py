"""LlamaCppBackend (optional extra; skipped where llama-cpp-python is not installed, as in CI)."""

import pytest

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llamacpp():
    from polymodal.llm.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend(n_ctx=1024)


def test_chat_and_scores_agree_with_transformers(llamacpp, smollm2_backend):
    r = llamacpp.chat([{"role": "user", "content": "Explain why the sky is blue."}], max_tokens=16)
    assert r.text and r.completion_tokens == 16 and r.finish_reason == "length"
    msgs = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    assert llamacpp.encode_prompt(msgs) == smollm2_backend.encode_prompt(msgs)
    ours = llamacpp.score_continuations(msgs, ["Paris", "London"])
    ref = smollm2_backend.score_continuations(msgs, ["Paris", "London"])
    # Q4_1 kernels vs the dequantised fp32 copy: close, not equal
    assert ours == pytest.approx(ref, abs=0.5) and ours[0] > ours[1]
    top = llamacpp.next_token_logprobs(msgs, top_k=3)
    assert len(top) == 3 and list(top.values()) == sorted(top.values(), reverse=True)

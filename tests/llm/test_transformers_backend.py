"""TransformersBackend on the real SmolLM2: chat, stop strings, context limit, log-probabilities checked by hand."""

import pytest
import torch

from polymodal.core.errors import ConfigError
from polymodal.llm import ContextTooLongError, TransformersBackend

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_greedy_chat_is_non_empty_deterministic_text(smollm2_backend):
    a = smollm2_backend.chat(QUESTION, max_tokens=24)
    b = smollm2_backend.chat(QUESTION, max_tokens=24)
    assert a.text and a.text == b.text
    assert "Paris" in a.text
    assert a.prompt_tokens > 10 and 0 < a.completion_tokens <= 24
    assert a.finish_reason == "stop" and a.backend == "transformers" and a.latency_s > 0


def test_max_tokens_and_stop_strings(smollm2_backend):
    short = smollm2_backend.chat(QUESTION, max_tokens=2)
    assert short.completion_tokens == 2 and short.finish_reason == "length"
    cut = smollm2_backend.chat(QUESTION, max_tokens=24, stop=["France"])
    assert "France" not in cut.text and cut.finish_reason == "stop"


def test_sampling_is_seeded(smollm2_backend):
    msgs = [{"role": "user", "content": "Write one sentence about the sea."}]
    a = smollm2_backend.chat(msgs, max_tokens=16, temperature=1.0, seed=7)
    b = smollm2_backend.chat(msgs, max_tokens=16, temperature=1.0, seed=7)
    assert a.text == b.text


def test_context_too_long_is_a_clear_error(smollm2):
    model, tok, _ = smollm2
    small = TransformersBackend(model, tok, max_context=32)
    with pytest.raises(ContextTooLongError, match="exceeds the context window of 32"):
        small.chat([{"role": "user", "content": "word " * 40}], max_tokens=8)


def test_next_token_logprobs_match_a_manual_forward(smollm2_backend):
    b = smollm2_backend
    prompt = "The capital of France is"
    top = b.next_token_logprobs(prompt, top_k=5)
    ids = b.tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        logp = torch.log_softmax(b.model(torch.tensor([ids])).logits[0, -1].float(), -1)
    best = int(logp.argmax())
    first_token, first_lp = next(iter(top.items()))
    assert first_token == b.tokenizer.decode([best]) and first_lp == pytest.approx(float(logp[best]), abs=1e-5)
    values = list(top.values())
    assert values == sorted(values, reverse=True) and sum(torch.tensor(values).exp()) <= 1.0 + 1e-6


def test_score_continuations_sums_token_logprobs(smollm2_backend):
    b = smollm2_backend
    prompt = "The capital of France is"
    scores = b.score_continuations(prompt, [" Paris", " a big city in Europe"])
    # hand computation for the multi-token continuation, one token at a time
    ids = b.tokenizer(prompt)["input_ids"]
    cont = b.tokenizer(" a big city in Europe", add_special_tokens=False)["input_ids"]
    total = 0.0
    with torch.inference_mode():
        for k, tok in enumerate(cont):
            logits = b.model(torch.tensor([ids + cont[:k]])).logits[0, -1].float()
            total += float(torch.log_softmax(logits, -1)[tok])
    assert scores[1] == pytest.approx(total, abs=1e-3)
    assert scores[0] > scores[1]  # " Paris" is the likelier continuation


def test_chat_message_prompts_use_the_chat_template(smollm2_backend):
    text = smollm2_backend.render(QUESTION)
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
    one_word = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
    paris, london = smollm2_backend.score_continuations(one_word, ["Paris", "London"])
    assert paris > london


def test_bad_arguments_are_named(smollm2_backend):
    with pytest.raises(ConfigError, match=r"messages\[0\].role"):
        smollm2_backend.chat([{"role": "robot", "content": "hi"}])
    with pytest.raises(ConfigError, match="max_tokens"):
        smollm2_backend.chat(QUESTION, max_tokens=0)
    with pytest.raises(ConfigError, match=r"continuations\[0\]"):
        smollm2_backend.score_continuations("Hello", [""])
    with pytest.raises(ConfigError, match="both model and tokenizer"):
        TransformersBackend(model=smollm2_backend.model)

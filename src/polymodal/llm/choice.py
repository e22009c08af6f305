"""Closed choices by log-probability: let a language model pick one of a few options without generating text.

Small models (the bundled SmolLM2-135M) rarely write the JSON a role asks for, but they can rank a handful of
options. ``score_options`` scores each option as a continuation of the prompt and returns the winner with every
option's log-probability and their softmax. Used by the agent roles of SensingAgents and AffectSeek whenever the
backend exposes log-probabilities (``TransformersBackend``, ``LlamaCppBackend``); OpenAI-compatible servers do not,
and those roles keep their JSON path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from polymodal.llm.chat import Message


def has_logprobs(backend: Any) -> bool:
    """Whether ``backend`` can score continuations (local transformers / llama-cpp; not HTTP servers)."""
    return callable(getattr(backend, "score_continuations", None))


@dataclass
class Choice:
    """A scored closed choice: the winner, the options' log-probabilities, their softmax, how it was scored."""

    label: str
    logprobs: dict[str, float]
    probs: dict[str, float]
    method: str  # "first-token" (one forward) | "sequence" (score_continuations, one row per option)
    prompt_tokens: int
    latency_s: float


def softmax(scores: Sequence[float]) -> list[float]:
    m = max(scores)
    e = [math.exp(s - m) for s in scores]
    z = sum(e)
    return [v / z for v in e]


def choice_from_scores(options: Sequence[str], scores: Sequence[float], method: str, prompt_tokens: int = 0,
                       latency_s: float = 0.0) -> Choice:
    """A :class:`Choice` from per-option scores (ties go to the earlier option)."""
    if len(scores) != len(options) or not all(math.isfinite(s) for s in scores):
        raise ValueError(f"scoring returned {list(scores)!r} for {len(options)} options")
    best = max(range(len(options)), key=lambda i: (scores[i], -i))
    return Choice(options[best], {o: round(float(s), 4) for o, s in zip(options, scores, strict=True)},
                  {o: round(v, 4) for o, v in zip(options, softmax(scores), strict=True)}, method, prompt_tokens,
                  latency_s)


def score_options(backend: Any, messages: Sequence[Message], options: Sequence[str], *,
                  answer_prefix: str = "Answer:") -> Choice:
    """Pick one of ``options`` by its log-probability after the prompt; no text is generated.

    With a backend that renders its chat template (``render``) the prompt is the rendered chat plus
    ``answer_prefix`` (e.g. ``"Activity:"``) and each option is scored as ``" " + option``; otherwise the options
    follow the assistant header directly. With a local tokenizer and ``next_token_logits`` (``TransformersBackend``)
    and options whose first tokens all differ, one forward pass decides: under decoding constrained to the options
    the first token picks the option, so its log-probability is the option's (``method="first-token"``). Otherwise
    each option's full token sequence is scored with ``score_continuations`` (``"sequence"``).
    """
    if not options:
        raise ValueError("score_options needs at least one option")
    render = getattr(backend, "render", None)
    if callable(render):
        prompt: Any = render(list(messages)) + answer_prefix
        conts = [" " + o for o in options]
    else:
        prompt, conts = list(messages), list(options)
    t0 = time.perf_counter()
    scores, method = None, "sequence"
    tok, logits_fn = getattr(backend, "tokenizer", None), getattr(backend, "next_token_logits", None)
    if tok is not None and callable(logits_fn) and isinstance(prompt, str):
        firsts = [(tok(c, add_special_tokens=False)["input_ids"] or [None])[0] for c in conts]
        if None not in firsts and len(set(firsts)) == len(firsts):
            import torch

            logp = torch.log_softmax(logits_fn(prompt).float(), dim=-1)
            scores, method = [float(logp[i]) for i in firsts], "first-token"
    if scores is None:
        scores = [float(x) for x in backend.score_continuations(prompt, conts)]
    encode = getattr(backend, "encode_prompt", None)
    n_prompt = len(encode(prompt)) if callable(encode) else sum(len(m["content"].split()) for m in messages)
    return choice_from_scores(options, scores, method, n_prompt, time.perf_counter() - t0)

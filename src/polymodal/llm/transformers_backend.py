"""Local chat backend on a transformers causal LM (default SmolLM2-135M-Instruct), with log-probabilities.

This is the reference backend: hooks, PEFT adapters and logits processors (CCD, SparseCut, the gate_proj study)
all need the torch model, so it exposes ``model`` and ``tokenizer`` as well as the chat protocol.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from polymodal.core.errors import ConfigError
from polymodal.llm.chat import ChatReply, Message, check_generation, check_messages, cut_at_stop
from polymodal.llm.errors import ContextTooLongError


class TransformersBackend:
    """Chat + scoring on a local transformers model.

    Pass a loaded ``model`` and ``tokenizer``, or let it call :func:`polymodal.llm.load_causal_lm` with
    ``name_or_path`` / ``dtype`` / ``device``. ``max_context`` defaults to the model's
    ``max_position_embeddings``.
    """

    def __init__(self, model=None, tokenizer=None, *, name_or_path=None, dtype: str = "float32",
                 device: str = "cpu", max_context: int | None = None, name: str | None = None):
        if (model is None) != (tokenizer is None):
            raise ConfigError("TransformersBackend: pass both model and tokenizer, or neither")
        if model is None:
            from polymodal.llm.loading import load_causal_lm

            model, tokenizer = load_causal_lm(name_or_path, dtype=dtype, device=device)
        self.model, self.tokenizer = model, tokenizer
        self.model_name = getattr(model, "polymodal_source", None) or getattr(model, "name_or_path", "local")
        self.name = name or "transformers"
        limit = getattr(model.config, "max_position_embeddings", None)
        self.max_context = int(max_context or limit or 2048)

    # -- prompt handling --------------------------------------------------------------------------------------
    @property
    def device(self):
        return next(self.model.parameters()).device

    def render(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees: the tokenizer's chat template plus the assistant header."""
        msgs = check_messages(messages)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        # Base models without a template: a plain transcript.
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in msgs]
        return "\n".join(lines) + "\nAssistant:"

    def encode_prompt(self, prompt: str | Sequence[Message]) -> list[int]:
        """Token ids of a raw text prompt, or of a message list rendered with the chat template."""
        if isinstance(prompt, str):
            return list(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        return list(self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"])

    def _check_context(self, n_prompt: int, n_new: int) -> None:
        if n_prompt + n_new > self.max_context:
            raise ContextTooLongError(
                f"prompt of {n_prompt} tokens + max_tokens {n_new} exceeds the context window of "
                f"{self.max_context} tokens ({self.model_name}); shorten the prompt or lower max_tokens"
            )

    # -- chat ------------------------------------------------------------------------------------------------
    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        import torch

        check_generation(max_tokens, temperature)
        t0 = time.perf_counter()
        ids = self.encode_prompt(messages)
        self._check_context(len(ids), max_tokens)
        input_ids = torch.tensor([ids], device=self.device)
        kwargs: dict = {"max_new_tokens": max_tokens, "do_sample": temperature > 0,
                        "pad_token_id": self.tokenizer.pad_token_id}
        if temperature > 0:
            kwargs.update(temperature=float(temperature), top_k=0, top_p=1.0)
            if seed is not None:
                torch.manual_seed(seed)
        else:  # plain greedy: the model's generation_config must not turn sampling back on
            kwargs.update(temperature=None, top_k=None, top_p=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
        new = out[0, len(ids):].tolist()
        ended = bool(new) and new[-1] == self.tokenizer.eos_token_id
        finish = "stop" if (ended or len(new) < max_tokens) else "length"
        if ended:  # count generated text tokens only, as the llama-cpp backend does
            new = new[:-1]
        text, stopped = cut_at_stop(self.tokenizer.decode(new, skip_special_tokens=True), stop)
        if stopped:
            finish = "stop"
        return ChatReply(text=text.strip(), prompt_tokens=len(ids), completion_tokens=len(new),
                         latency_s=time.perf_counter() - t0, finish_reason=finish, model=str(self.model_name),
                         backend=self.name)

    # -- scoring ---------------------------------------------------------------------------------------------
    def next_token_logits(self, prompt: str | Sequence[Message]):
        """Raw next-token logits (1-D tensor over the vocabulary) after ``prompt``."""
        import torch

        ids = self.encode_prompt(prompt)
        self._check_context(len(ids), 1)
        with torch.inference_mode():
            logits = self.model(torch.tensor([ids], device=self.device)).logits
        return logits[0, -1].float()

    def next_token_logprobs(self, prompt: str | Sequence[Message], top_k: int = 10) -> dict[str, float]:
        """The ``top_k`` most likely next tokens (decoded text -> log-probability), best first."""
        import torch

        logp = torch.log_softmax(self.next_token_logits(prompt), dim=-1)
        values, idx = torch.topk(logp, k=min(top_k, logp.numel()))
        out: dict[str, float] = {}
        for v, i in zip(values.tolist(), idx.tolist(), strict=True):
            out.setdefault(self.tokenizer.decode([i]), float(v))
        return out

    def score_continuations(self, prompt: str | Sequence[Message], continuations: Sequence[str]) -> list[float]:
        """Sum of the log-probabilities of each continuation's tokens given ``prompt`` (one batched forward)."""
        import torch

        if isinstance(continuations, str) or not continuations:
            raise ConfigError("continuations: expected a non-empty list of strings")
        prompt_ids = self.encode_prompt(prompt)
        if not prompt_ids:
            raise ConfigError("prompt: encodes to no tokens; scoring needs at least one context token")
        conts = []
        for i, c in enumerate(continuations):
            cid = list(self.tokenizer(c, add_special_tokens=False)["input_ids"])
            if not cid:
                raise ConfigError(f"continuations[{i}]: {c!r} encodes to no tokens")
            conts.append(cid)
        width = len(prompt_ids) + max(len(c) for c in conts)
        self._check_context(width, 0)
        pad = self.tokenizer.pad_token_id or 0
        rows = [prompt_ids + c + [pad] * (width - len(prompt_ids) - len(c)) for c in conts]
        mask = [[1] * (len(prompt_ids) + len(c)) + [0] * (width - len(prompt_ids) - len(c)) for c in conts]
        with torch.inference_mode():
            logits = self.model(torch.tensor(rows, device=self.device),
                                attention_mask=torch.tensor(mask, device=self.device)).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        scores = []
        start = len(prompt_ids)
        for r, c in enumerate(conts):
            positions = torch.arange(start - 1, start - 1 + len(c), device=logp.device)
            targets = torch.tensor(c, device=logp.device)
            scores.append(float(logp[r, positions, targets].sum()))
        return scores

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model_name!r}, device={str(self.device)!r})"

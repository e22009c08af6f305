"""CCD — collaborative contrastive decoding against fawning hallucinations (llm spec section 1).

Paper: "Exploring and Mitigating Fawning Hallucinations in Large Language Models" (arXiv 2509.00869). The paper has
no public code and its exact formula is not available, so the contrast below is a **reconstruction** in the CD / VCD /
ICD family (spec 1.3):

    s_t(y) = log p(y | x_anchor, y_<t) + alpha * [log p(y | x_neu, y_<t) - log p(y | x_ind, y_<t)]

with ``anchor="neutral"`` (default) this is ``(1 + alpha) log p_neu - alpha log p_ind``. The adaptive plausibility
constraint (APC) keeps only tokens with ``p(y | x_apc) >= beta * max_w p(w | x_apc)`` (others get ``-inf``), the APC
stream being the neutral one (``apc_on="neutral"``) or the anchor (``apc_on="anchor"``). ``beta = 0`` switches it off.

Three entry points, all on any transformers causal LM:

- :class:`CCDLogitsProcessor` — a drop-in ``LogitsProcessor`` for ``model.generate(main_ids, ...)``: it keeps its own
  KV cache (a ``DynamicCache``) for the *contrast* prompt and advances it one token per step;
- :func:`ccd_generate` — greedy CCD decoding of one (induced, neutral) pair; by default both streams run **batched in
  one forward per step** (a batch of two left-padded rows through ``generate`` whose rows always receive the same
  token), or through the processor (``batched=False``);
- :func:`ccd_score_options` — classification / multiple choice: every option's summed contrastive log-prob, all
  (stream, option) rows in one forward (the ICD ``lm_score`` pattern).

:class:`DoLaLogitsProcessor` is a local DoLa (transformers v5 removed the in-library one): contrast of the final layer
against the premature layer with the largest Jensen-Shannon divergence, with the relative-top mask (spec 1.4).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from polymodal.core.errors import ConfigError

Prompt = str | Sequence[dict[str, str]]
Anchor = Literal["neutral", "induced"]
ApcOn = Literal["neutral", "anchor"]


# ---------------------------------------------------------------------------------------------- the formula
def _check(alpha: float, beta: float, anchor: str, apc_on: str) -> None:
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"field 'alpha': must be a finite number >= 0, got {alpha!r}")
    if not (isinstance(beta, (int, float)) and 0 <= beta <= 1):
        raise ConfigError(f"field 'beta': must be in [0, 1], got {beta!r}")
    if anchor not in ("neutral", "induced"):
        raise ConfigError(f"field 'anchor': must be 'neutral' or 'induced', got {anchor!r}")
    if apc_on not in ("neutral", "anchor"):
        raise ConfigError(f"field 'apc_on': must be 'neutral' or 'anchor', got {apc_on!r}")


def plausibility_mask(logp: torch.Tensor, beta: float) -> torch.Tensor:
    """True where ``p >= beta * max p`` along the last axis (always true at the argmax; all true for beta 0)."""
    if beta <= 0:
        return torch.ones_like(logp, dtype=torch.bool)
    cutoff = math.log(beta) + logp.max(dim=-1, keepdim=True).values
    return logp >= cutoff


def contrastive_scores(logp_neutral: torch.Tensor, logp_induced: torch.Tensor, alpha: float = 1.0,
                       beta: float = 0.1, anchor: Anchor = "neutral", apc_on: ApcOn = "neutral") -> torch.Tensor:
    """The CCD scores from the two streams' log-probabilities (any shape, vocabulary last).

    ``logp_anchor + alpha * (logp_neutral - logp_induced)``, ``-inf`` outside the APC set of the ``apc_on`` stream."""
    _check(alpha, beta, anchor, apc_on)
    logp_anchor = logp_neutral if anchor == "neutral" else logp_induced
    scores = logp_anchor + alpha * (logp_neutral - logp_induced)
    # a token an earlier processor banned (-inf, e.g. eos under min_new_tokens) stays banned, never -inf + inf = nan
    banned = torch.isneginf(logp_neutral) | torch.isneginf(logp_induced)
    if banned.any():
        scores = scores.masked_fill(banned, float("-inf"))
    if beta > 0:
        keep = plausibility_mask(logp_neutral if apc_on == "neutral" else logp_anchor, beta)
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores


# ---------------------------------------------------------------------------------------------- prompts
def encode_prompt(tokenizer, prompt: Prompt) -> list[int]:
    """Token ids of a raw text prompt, or of a message list rendered with the chat template (+ assistant header)."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    msgs = [dict(m) for m in prompt]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    else:
        text = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in msgs) + "\nAssistant:"
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _as_ids(model, tokenizer, prompt: Prompt | torch.Tensor | Sequence[int]) -> torch.Tensor:
    device = next(model.parameters()).device
    if isinstance(prompt, torch.Tensor):
        ids = prompt if prompt.dim() == 2 else prompt[None]
        return ids.to(device)
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[0], int):
        return torch.tensor([list(prompt)], device=device)
    if tokenizer is None:
        raise ConfigError("a tokenizer is needed to encode text prompts")
    ids = encode_prompt(tokenizer, prompt)
    if not ids:
        raise ConfigError("prompt: encodes to no tokens")
    return torch.tensor([ids], device=device)


def _greedy_kwargs(model, tokenizer) -> dict[str, Any]:
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    for source in (getattr(model, "generation_config", None), model.config):
        if pad is None:
            pad = getattr(source, "pad_token_id", None)
        if pad is None:
            pad = getattr(source, "eos_token_id", None)
    pad = pad[0] if isinstance(pad, list) else pad
    pad = 0 if pad is None else int(pad)
    # the model's generation_config must not turn sampling back on
    return {"do_sample": False, "temperature": None, "top_k": None, "top_p": None, "pad_token_id": pad}


# ---------------------------------------------------------------------------------------------- processor
class CCDLogitsProcessor(LogitsProcessor):
    """Collaborative contrastive decoding as a ``LogitsProcessor`` (drop-in for ``model.generate``).

    ``model.generate(main_ids, logits_processor=[CCDLogitsProcessor(model, contrast_ids)])``: the generate call runs
    the *main* prompt (``main="neutral"``: the neutral prompt, as the built-in CFG route; or ``"induced"``), the
    processor runs ``contrast_ids`` (the other prompt) through ``model`` with its own KV cache, feeding exactly one
    new token per step after the first. Returns the CCD scores (log-prob scale; ``-inf`` outside the APC set).
    ``contrast_ids``: a (B, L) tensor matching the generate batch (``contrast_attention_mask`` for left padding).
    """

    def __init__(self, model, contrast_ids: torch.Tensor, alpha: float = 1.0, beta: float = 0.1,
                 anchor: Anchor = "neutral", apc_on: ApcOn = "neutral", main: Literal["neutral", "induced"] = "neutral",
                 contrast_attention_mask: torch.Tensor | None = None):
        _check(alpha, beta, anchor, apc_on)
        if main not in ("neutral", "induced"):
            raise ConfigError(f"field 'main': must be 'neutral' or 'induced', got {main!r}")
        if contrast_ids.dim() == 1:
            contrast_ids = contrast_ids[None]
        if contrast_ids.shape[1] == 0:
            raise ConfigError("contrast_ids: empty contrast prompt")
        self.model, self.alpha, self.beta = model, float(alpha), float(beta)
        self.anchor, self.apc_on, self.main = anchor, apc_on, main
        self.contrast_ids = contrast_ids
        self.mask = (contrast_attention_mask if contrast_attention_mask is not None
                     else torch.ones_like(contrast_ids))
        self.cache = None
        self.prompt_len: int | None = None  # length of the main prompt at the first call
        #: tokens fed to the contrast stream per call (the first is the whole prompt, then 1 each)
        self.fed: list[int] = []

    def reset(self) -> None:
        self.cache, self.prompt_len, self.fed = None, None, []
        self.mask = self.mask[:, : self.contrast_ids.shape[1]]

    def _contrast_logp(self, input_ids: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        if self.cache is None:
            self.prompt_len = input_ids.shape[1]
            self.cache = DynamicCache()
            feed, mask = self.contrast_ids.to(input_ids.device), self.mask.to(input_ids.device)
        else:
            feed = input_ids[:, -1:]
            mask = torch.cat([self.mask, torch.ones_like(feed)], dim=1)
        if feed.shape[0] != input_ids.shape[0]:
            raise ConfigError(f"contrast_ids has batch {feed.shape[0]} but generate runs batch {input_ids.shape[0]}")
        self.mask = mask
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)[:, -feed.shape[1]:]
        with torch.no_grad():
            out = self.model(feed, attention_mask=mask, position_ids=position_ids, past_key_values=self.cache,
                             use_cache=True)
        self.cache = out.past_key_values
        self.fed.append(int(feed.shape[1]))
        return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp_main = torch.log_softmax(scores.float(), dim=-1)
        logp_contrast = self._contrast_logp(input_ids)
        neu, ind = (logp_main, logp_contrast) if self.main == "neutral" else (logp_contrast, logp_main)
        return contrastive_scores(neu, ind, self.alpha, self.beta, self.anchor, self.apc_on).to(scores.dtype)


class _PairedCCDProcessor(LogitsProcessor):
    """Batched route: ``generate`` runs rows [neutral, induced] (left-padded) in one forward per step; this processor
    replaces both rows' scores by the CCD scores so both rows always append the same token."""

    def __init__(self, alpha: float, beta: float, anchor: str, apc_on: str):
        self.args = (alpha, beta, anchor, apc_on)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logp = torch.log_softmax(scores.float(), dim=-1)
        s = contrastive_scores(logp[0::2], logp[1::2], *self.args)
        return s.repeat_interleave(2, dim=0).to(scores.dtype)


# ---------------------------------------------------------------------------------------------- generation
@dataclass
class Generation:
    """One decoded answer: text, new token ids, and decode speed."""

    text: str
    token_ids: list[int]
    seconds: float
    tokens_per_second: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens_per_second = len(self.token_ids) / self.seconds if self.seconds > 0 else 0.0


def _finish(tokenizer, new: list[int], t0: float) -> Generation:
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    if eos is not None and eos in new:  # generated text only: cut at the first end-of-sequence
        new = new[: new.index(eos)]
    text = tokenizer.decode(new, skip_special_tokens=True).strip() if tokenizer is not None else ""
    return Generation(text, new, time.perf_counter() - t0)


def greedy_generate(model, tokenizer, prompt: Prompt | torch.Tensor, max_new_tokens: int = 32,
                    logits_processor: Sequence[LogitsProcessor] = (), **generate_kwargs: Any) -> Generation:
    """Plain greedy decoding of one prompt (the baseline ``ccd_generate`` is timed against); extra keyword
    arguments go to ``model.generate`` (e.g. ``min_new_tokens``)."""
    ids = _as_ids(model, tokenizer, prompt)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             logits_processor=LogitsProcessorList(logits_processor),
                             **(_greedy_kwargs(model, tokenizer) | generate_kwargs))
    return _finish(tokenizer, out[0, ids.shape[1]:].tolist(), t0)


def _left_pad(rows: list[torch.Tensor], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(int(r.shape[-1]) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=rows[0].device)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        r = r.reshape(-1)
        ids[i, width - len(r):] = r
        mask[i, width - len(r):] = 1
    return ids, mask


def ccd_generate(model, tokenizer, induced: Prompt | torch.Tensor, neutral: Prompt | torch.Tensor,
                 alpha: float = 1.0, beta: float = 0.1, max_new_tokens: int = 32, *, anchor: Anchor = "neutral",
                 apc_on: ApcOn = "neutral", batched: bool = True, **generate_kwargs: Any) -> Generation:
    """Greedy CCD decoding of one (induced, neutral) prompt pair; both share the generated continuation.

    ``batched=True``: one forward of batch two per step (rows left-padded); ``False``: the neutral prompt through
    ``generate`` and the induced one in :class:`CCDLogitsProcessor`'s own cache (two forwards per step). Extra
    keyword arguments go to ``model.generate`` (e.g. ``min_new_tokens``)."""
    _check(alpha, beta, anchor, apc_on)
    ind, neu = _as_ids(model, tokenizer, induced), _as_ids(model, tokenizer, neutral)
    kw = _greedy_kwargs(model, tokenizer) | generate_kwargs
    t0 = time.perf_counter()
    with torch.no_grad():
        if batched:
            ids, mask = _left_pad([neu[0], ind[0]], kw["pad_token_id"])
            out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 logits_processor=LogitsProcessorList([_PairedCCDProcessor(alpha, beta, anchor,
                                                                                           apc_on)]), **kw)
            new = out[0, ids.shape[1]:].tolist()
        else:
            proc = CCDLogitsProcessor(model, ind, alpha, beta, anchor, apc_on, main="neutral")
            out = model.generate(neu, attention_mask=torch.ones_like(neu), max_new_tokens=max_new_tokens,
                                 logits_processor=LogitsProcessorList([proc]), **kw)
            new = out[0, neu.shape[1]:].tolist()
    return _finish(tokenizer, new, t0)


# ---------------------------------------------------------------------------------------------- option scoring
@dataclass
class OptionScores:
    """Per-option sums over the option's tokens: ``ccd`` (the contrastive score), ``neutral`` / ``induced`` (plain
    log-probs under each stream); ``choice`` is the argmax of ``ccd`` (``-inf`` entries: an APC-masked token)."""

    ccd: list[float]
    neutral: list[float]
    induced: list[float]
    choice: int


def option_token_logprobs(model, tokenizer, prompts: Sequence[Prompt | Sequence[int]], options: Sequence[str]
                          ) -> list[list[torch.Tensor]]:
    """``out[p][o]``: the (n_tokens_o, vocab) log-prob rows predicting option ``o``'s tokens after prompt ``p``,
    every (prompt, option) pair in one right-padded forward; the option's token ids are ``out[p][o].option_ids``."""
    if isinstance(options, str) or not options:
        raise ConfigError("options: expected a non-empty list of strings")
    device = next(model.parameters()).device
    p_ids = [list(p) if (isinstance(p, (list, tuple)) and p and isinstance(p[0], int)) else encode_prompt(tokenizer, p)
             for p in prompts]
    o_ids = []
    for i, o in enumerate(options):
        ids = list(tokenizer(o, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ConfigError(f"options[{i}]: {o!r} encodes to no tokens")
        o_ids.append(ids)
    if all(len(o) == 1 for o in o_ids):  # single-token options: one row per prompt, read its last position
        width = max(len(p) for p in p_ids)
        pad = getattr(tokenizer, "pad_token_id", None) or 0
        rows = [p + [pad] * (width - len(p)) for p in p_ids]
        mask = [[1] * len(p) + [0] * (width - len(p)) for p in p_ids]
        with torch.no_grad():
            logits = model(torch.tensor(rows, device=device), attention_mask=torch.tensor(mask, device=device)).logits
        out1: list[list[torch.Tensor]] = []
        for pi, p in enumerate(p_ids):
            lp = torch.log_softmax(logits[pi, len(p) - 1: len(p)].float(), dim=-1)
            row = []
            for o in o_ids:
                t = lp.view(lp.shape)  # a new tensor object sharing storage
                t.option_ids = o  # type: ignore[attr-defined]
                row.append(t)
            out1.append(row)
        return out1
    seqs = [(pi, oi) for pi in range(len(p_ids)) for oi in range(len(o_ids))]
    width = max(len(p_ids[pi]) + len(o_ids[oi]) for pi, oi in seqs)
    pad = getattr(tokenizer, "pad_token_id", None) or 0
    rows = [p_ids[pi] + o_ids[oi] + [pad] * (width - len(p_ids[pi]) - len(o_ids[oi])) for pi, oi in seqs]
    mask = [[1] * (len(p_ids[pi]) + len(o_ids[oi])) + [0] * (width - len(p_ids[pi]) - len(o_ids[oi]))
            for pi, oi in seqs]
    with torch.no_grad():
        logits = model(torch.tensor(rows, device=device), attention_mask=torch.tensor(mask, device=device)).logits
    out: list[list[torch.Tensor]] = [[None] * len(o_ids) for _ in p_ids]  # type: ignore[list-item]
    for r, (pi, oi) in enumerate(seqs):
        start = len(p_ids[pi])
        lp = torch.log_softmax(logits[r, start - 1: start - 1 + len(o_ids[oi])].float(), dim=-1)
        lp.option_ids = o_ids[oi]  # type: ignore[attr-defined]
        out[pi][oi] = lp
    return out


def ccd_score_options(model, tokenizer, induced: Prompt, neutral: Prompt, options: Sequence[str], alpha: float = 1.0,
                      *, beta: float = 0.1, anchor: Anchor = "neutral", apc_on: ApcOn = "neutral",
                      apc_in_scoring: bool = False) -> OptionScores:
    """Score every option by the sum over its tokens of the contrastive log-prob given the prompt pair.

    APC is off by default in scoring; with ``apc_in_scoring=True`` an option any of whose tokens falls outside the
    APC set scores ``-inf`` (when every option does, the choice falls back to the anchor stream's plain scores)."""
    _check(alpha, beta, anchor, apc_on)
    rows = option_token_logprobs(model, tokenizer, [neutral, induced], options)
    ccd, neu_s, ind_s = [], [], []
    for o in range(len(options)):
        lp_n, lp_i = rows[0][o], rows[1][o]
        tgt = torch.tensor(lp_n.option_ids, device=lp_n.device)  # type: ignore[attr-defined]
        s = contrastive_scores(lp_n, lp_i, alpha, beta if apc_in_scoring else 0.0, anchor, apc_on)
        ar = torch.arange(len(tgt), device=lp_n.device)
        ccd.append(float(s[ar, tgt].sum()))
        neu_s.append(float(lp_n[ar, tgt].sum()))
        ind_s.append(float(lp_i[ar, tgt].sum()))
    if all(math.isinf(v) for v in ccd):
        base = neu_s if anchor == "neutral" else ind_s
        choice = max(range(len(options)), key=lambda k: base[k])
    else:
        choice = max(range(len(options)), key=lambda k: ccd[k])
    return OptionScores(ccd, neu_s, ind_s, choice)


def score_options(model, tokenizer, prompt: Prompt, options: Sequence[str]) -> list[float]:
    """Plain scoring: each option's summed log-prob given ``prompt`` (one forward)."""
    rows = option_token_logprobs(model, tokenizer, [prompt], options)[0]
    return [float(lp[torch.arange(len(lp.option_ids)), torch.tensor(lp.option_ids)].sum())  # type: ignore[attr-defined]
            for lp in rows]


# ---------------------------------------------------------------------------------------------- DoLa
class DoLaLogitsProcessor(LogitsProcessor):
    """DoLa (Chuang et al., 2024) as a processor, for Llama-style models (spec 1.4; local re-implementation).

    Each step re-runs the model on the whole sequence with ``output_hidden_states`` (no cache: simple, slow; a
    baseline), applies the final norm + ``lm_head`` to each candidate early layer, picks the premature layer with the
    largest Jensen-Shannon divergence from the final distribution, and returns ``log p_final - log p_premature``
    masked by the relative-top constraint ``beta``. ``candidate_layers``: hidden-state indices (default: the even
    layers of the lower half, DoLa's "low" bucket)."""

    def __init__(self, model, candidate_layers: Sequence[int] | None = None, beta: float = 0.1):
        n = int(model.config.num_hidden_layers)
        self.layers = list(candidate_layers) if candidate_layers else list(range(0, n // 2, 2))
        if not self.layers or any(not 0 <= i < n for i in self.layers):
            raise ConfigError(f"field 'candidate_layers': hidden-state indices in [0, {n}), got {self.layers}")
        self.model, self.beta = model, float(beta)
        self.chosen: list[int] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        base = self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.model
        with torch.no_grad():
            hs = self.model(input_ids, output_hidden_states=True, use_cache=False).hidden_states
            final = torch.log_softmax(self.model.lm_head(hs[-1][:, -1]).float(), -1)  # already normed
            prem = torch.stack([torch.log_softmax(self.model.lm_head(base.norm(hs[i][:, -1])).float(), -1)
                                for i in self.layers])  # (L, B, V)
        m = 0.5 * (final.exp()[None] + prem.exp())
        log_m = m.clamp_min(1e-30).log()
        js = 0.5 * ((final.exp()[None] * (final[None] - log_m)).sum(-1) + (prem.exp() * (prem - log_m)).sum(-1))
        pick = js.argmax(0)  # (B,)
        self.chosen.extend(self.layers[int(i)] for i in pick)
        premature = prem[pick, torch.arange(final.shape[0])]
        s = final - premature
        s = s.masked_fill(~plausibility_mask(final, self.beta), float("-inf"))
        return s.to(scores.dtype)


__all__ = [
    "CCDLogitsProcessor",
    "DoLaLogitsProcessor",
    "Generation",
    "OptionScores",
    "ccd_generate",
    "ccd_score_options",
    "contrastive_scores",
    "encode_prompt",
    "greedy_generate",
    "option_token_logprobs",
    "plausibility_mask",
    "score_options",
]

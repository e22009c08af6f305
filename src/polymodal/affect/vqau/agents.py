"""AffectSeek's language roles (spec affect.md 1.4-1.5): output schemas, short prompts, the rule-based backend.

Three stages reason with a language model — **intent interpretation**, **emotion reasoning** (given the window's
evidence and NRC lexicon votes) and **rationale generation** — and, optionally, **clip verification** (the tool's
cue check is the default). Each role's reply is JSON validated by pydantic; a failed parse is retried once and then
replaced by the role's rule-based answer, recorded in the trace (shared agent engine, spec "Shared agent engine").

:class:`RuleBasedLLM` is the deterministic backend of spec 1.5: with it no model is called and every role returns
its rule-based answer directly (the default in tests and CI; the recipe's default is SmolLM2).
Prompts are kept short on purpose: SmolLM2-135M loses the instruction in long prompts and CPU decoding is slow.

**Constrained choice.** A 135M model cannot fill a 13-way JSON enum (it copies the enumeration), so when the backend
exposes log-probabilities (:func:`can_score`: ``TransformersBackend``, ``LlamaCppBackend``) closed choices — the
emotion label, the intent's polarity, the one-step baseline's timeline line — are made by **scoring the options**
(:func:`score_options`) instead of parsing generated JSON; backends without log-probabilities (OpenAI-compatible
servers) keep the JSON path with its retry and rule fallback. Intent cues are asked for as **one plain line**
(comma-separated), parsed leniently and validated by :class:`IntentLine` (cues must be words of the query).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from polymodal.affect.vqau.schema import EMOTIONS, canonical_emotion
from polymodal.agents import Role
from polymodal.llm.chat import ChatReply, Message
from polymodal.llm.choice import Choice, choice_from_scores, has_logprobs
from polymodal.llm.choice import score_options as shared_score_options

EmotionLabel = Literal["Anger", "Anticipation", "Disgust", "Fear", "Horror", "Joy", "Love", "Neutral", "Pride",
                       "Sadness", "Satisfaction", "Surprise", "Trust"]
assert set(EmotionLabel.__args__) == set(EMOTIONS)  # type: ignore[attr-defined]
#: an emotion field that accepts any spelling ``canonical_emotion`` knows ("happy" -> Joy, lower case, ...)
CanonicalEmotion = Annotated[EmotionLabel, BeforeValidator(canonical_emotion)]


def _clean_list(v: object, limit: int) -> list[str]:
    if isinstance(v, str):
        v = [p for p in v.replace(";", ",").split(",")]
    if not isinstance(v, list):
        raise ValueError("expected a list of short strings")
    return [str(x).strip()[:40] for x in v if str(x).strip()][:limit]


class Intent(BaseModel):
    """What the vague query asks for, as searchable cues."""

    model_config = ConfigDict(extra="ignore")

    visual_cues: list[str] = Field(default_factory=list, description="objects, places, actions")
    audio_cues: list[str] = Field(default_factory=list, description="sounds, music, speech")
    feeling: str = Field("", max_length=60)
    polarity: Literal["positive", "negative", "neutral", "unknown"] = "unknown"
    temporal_hint: Literal["start", "middle", "end", "none"] = "none"

    @field_validator("visual_cues", "audio_cues", mode="before")
    @classmethod
    def _lists(cls, v: object) -> list[str]:
        return _clean_list(v, 8)

    @field_validator("polarity", "temporal_hint", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v


class IntentReply(BaseModel):
    """The flat shape the language model is asked for (a 135M model cannot fill nested lists reliably)."""

    model_config = ConfigDict(extra="ignore")

    cues: str = Field(max_length=200, description="comma-separated things seen or heard")
    polarity: Literal["positive", "negative", "neutral", "unknown"] = "unknown"
    when: Literal["start", "middle", "end", "none"] = "none"

    @field_validator("polarity", "when", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("cues", mode="before")
    @classmethod
    def _join(cls, v: object) -> object:
        return ", ".join(map(str, v)) if isinstance(v, list) else v


_LINE_PREFIX = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|(?:things|cues|seen|heard|answer|list)[^:]{0,20}:)\s*", re.I)


class IntentLine(BaseModel):
    """The intent role's one-line answer, parsed leniently (spec 1.4 intent; a 135M model can write a list but
    not nested JSON). ``IntentLine.parse(reply, query)`` splits on commas / semicolons / "and" / new lines, strips
    bullets and "Seen:"-style prefixes, and keeps in each item only the words that occur in the query (the role
    *extracts* cues; an invented word — or an injected instruction — is dropped). At least one cue must remain."""

    model_config = ConfigDict(extra="forbid")

    cues: list[str] = Field(min_length=1, max_length=8)

    @classmethod
    def parse(cls, text: str, query: str) -> IntentLine:
        from polymodal.affect.vqau.tools import content_words, tokens

        allowed = set(content_words(query))
        items = re.split(r"[,;\n]|\band\b|\bor\b", text)
        cues: list[str] = []
        for item in items:
            item = _LINE_PREFIX.sub("", item)
            words = [w for w in tokens(item) if w in allowed]
            cue = " ".join(dict.fromkeys(words))[:40]
            if cue and cue not in cues:
                cues.append(cue)
        return cls(cues=cues[:8])


class EmotionJudgement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    emotion: CanonicalEmotion
    confidence: float = Field(0.5, ge=0, le=1)


class EmotionReply(BaseModel):
    """What the model is asked for: the label only (a confidence field made SmolLM2 loop until truncation)."""

    model_config = ConfigDict(extra="ignore")

    emotion: CanonicalEmotion


class Verdict(BaseModel):
    model_config = ConfigDict(extra="ignore")

    match: bool


class Rationale(BaseModel):
    model_config = ConfigDict(extra="ignore")

    rationale: str = Field(min_length=8, max_length=600)


class OneStepAnswer(BaseModel):
    """The one-step baseline's whole answer in one reply."""

    model_config = ConfigDict(extra="ignore")

    start: float = Field(ge=0)
    end: float = Field(gt=0)
    emotion: CanonicalEmotion
    rationale: str = Field("", max_length=600)


LABELS = ", ".join(EMOTIONS)

INTENT_ROLE = Role(
    "intent", system="You turn a vague memory of a video moment into search cues.",
    prompt="Memory: {query}\nGive the key things seen or heard, the feeling's polarity and when it happened.",
    schema=IntentReply, max_tokens=40)
EMOTION_ROLE = Role(
    "emotion", system="You name the emotion of a video moment from its evidence.",
    prompt="Evidence: {evidence}\nLexicon votes: {votes}\nLabels: " + LABELS + ".\nPick one label.",
    schema=EmotionReply, max_tokens=16)
VERIFY_ROLE = Role(
    "verify", system="You check whether a video clip matches a memory.",
    prompt="Memory: {query}\nClip: {evidence}\nDoes the clip match the memory?", schema=Verdict, max_tokens=12)
RATIONALE_ROLE = Role(
    "rationale", system="You explain the emotion of a video moment in one sentence, citing only the evidence.",
    prompt="Evidence: {evidence}\nEmotion: {emotion}\nIn one sentence, why is this moment {emotion}? Cite what is "
           "seen, heard and said.", max_tokens=30)
ONE_STEP_ROLE = Role(
    "one-step", system="You find a moment in a video from a vague memory and name its emotion.",
    prompt="Video timeline (seconds):\n{timeline}\n\nMemory: {query}\nGive the start and end second of the moment, "
           "its emotion (one of: " + LABELS + ") and a short reason.",
    schema=OneStepAnswer, max_tokens=60)


INTENT_LINE_ROLE = Role(
    "intent", system="You pick out what a person remembers seeing and hearing.",
    prompt="Memory: {query}\nList the things seen or heard, separated by commas.", max_tokens=16, stop=["\n"])
INTENT_REPAIR = "\nUse only words of the memory, separated by commas (e.g. red kite, laughter)."
EMOTION_SYSTEM = "You name the emotion of a video moment."
#: two fixed format examples for the scored emotion choice (labels outside any test clip's cue list; without them
#: SmolLM2-135M's choice ignores the evidence — 0.17 vs 0.56 accuracy on 18 synthetic clips, /tmp probe, seed 0)
EMOTION_SHOTS = (("Cues: rage, yell. Heard: shouting.\nLexicon votes: Anger 6, Fear 2.", "Anger"),
                 ("Cues: reliable, promise. Heard: murmuring.\nLexicon votes: Trust 5, Joy 1.", "Trust"))
POLARITIES = ("positive", "negative", "neutral")


def emotion_choice_messages(evidence: str, votes: str) -> list[Message]:
    """The scored emotion prompt: two format examples, then the window's evidence and lexicon votes."""
    msgs: list[Message] = [{"role": "system", "content": EMOTION_SYSTEM}]
    for user, label in EMOTION_SHOTS:
        msgs += [{"role": "user", "content": f"{user}\nWhich emotion?"},
                 {"role": "assistant", "content": f"Emotion: {label}"}]
    msgs.append({"role": "user", "content": f"{evidence}\nLexicon votes: {votes}.\nWhich emotion?"})
    return msgs


def polarity_messages(query: str) -> list[Message]:
    return [{"role": "system", "content": "You judge the feeling of a remembered moment."},
            {"role": "user", "content": f"Memory: {query}\nWas the feeling positive, negative or neutral?"}]


def inner_backend(backend: Any) -> Any:
    """The backend a :class:`MemoBackend` wraps (or ``backend`` itself)."""
    return backend.backend if isinstance(backend, MemoBackend) else backend


def can_score(backend: Any) -> bool:
    """Whether ``backend`` exposes log-probabilities (``score_continuations``): local transformers / llama-cpp."""
    inner = inner_backend(backend)
    return not isinstance(inner, RuleBasedLLM) and has_logprobs(inner)


def score_options(backend: Any, messages: Sequence[Message], options: Sequence[str], *,
                  answer_prefix: str = "Answer:") -> Choice:
    """``polymodal.llm.choice.score_options`` on the backend inside a :class:`MemoBackend`, memoised there (the
    same prompt and options scored by several rows cost one call)."""
    inner = inner_backend(backend)
    memo = backend if isinstance(backend, MemoBackend) else None
    key = json.dumps(["score", list(messages), list(options), answer_prefix], sort_keys=True)
    if memo is not None and key in memo._scores:
        memo.hits += 1
        return dataclasses.replace(memo._scores[key], latency_s=0.0)
    choice = shared_score_options(inner, messages, options, answer_prefix=answer_prefix)
    if memo is not None:
        memo.misses += 1
        memo._scores[key] = choice
    return choice


def ask_choice(backend: Any, trace: Any, role: str, messages: Sequence[Message], options: Sequence[str], *,
               answer_prefix: str, step: str | None = None,
               calibrate: Sequence[Message] | None = None) -> str | None:
    """:func:`score_options` with its trace events: an ``llm_call`` (``mode="score"``, the options' scores) or,
    when scoring raises (context too long, backend error), a ``fallback`` event; returns the label or None.

    ``calibrate``: a content-free version of the prompt; its option scores are subtracted (contextual
    calibration, Zhao et al. 2021) to remove the model's prior for an option, e.g. SmolLM2's "positive" / "A"
    bias. The calibration prompt is scored once and memoised (one extra call per distinct prompt)."""
    where = {"step": step} if step is not None else {}
    try:
        c = score_options(backend, messages, options, answer_prefix=answer_prefix)
        if calibrate is not None:
            base = score_options(backend, calibrate, options, answer_prefix=answer_prefix)
            c = choice_from_scores(options, [c.logprobs[o] - base.logprobs[o] for o in options],
                                   c.method + "+calibrated", c.prompt_tokens + base.prompt_tokens,
                                   c.latency_s + base.latency_s)
    except Exception as e:  # noqa: BLE001 - any backend failure falls back to the rule, recorded
        if trace is not None:
            trace.record("fallback", role=role, mode="score", reason=f"{type(e).__name__}: {e}"[:300], **where)
        return None
    if trace is not None:
        inner = inner_backend(backend)
        trace.record("llm_call", role=role, mode="score", method=c.method, attempt=1,
                     backend=getattr(inner, "name", "?"), model=str(getattr(inner, "model_name", "?")),
                     messages=list(messages), answer_prefix=answer_prefix, reply=c.label, scores=c.logprobs,
                     prompt_tokens=c.prompt_tokens, completion_tokens=0, latency_s=round(c.latency_s, 4),
                     finish_reason="scored", **where)
    return c.label


def parse_line(text: str, query: str) -> tuple[IntentLine | None, str]:
    """:meth:`IntentLine.parse` returning ``(value, "")`` or ``(None, error message)``."""
    try:
        return IntentLine.parse(text, query), ""
    except ValidationError as e:
        return None, "IntentLine: no cue word of the query in the reply" if "cues" in str(e) else str(e)[:200]


class RuleBasedLLM:
    """The deterministic backend (spec 1.5): AffectSeek answers every role with its rule, calling no model.

    It also satisfies the chat protocol so it can be passed wherever a backend is expected; ``chat`` itself is
    never used by AffectSeek and returns an empty JSON object (which no role schema accepts, so a role asked
    through it falls back to its rule).
    """

    name = "rule"
    model_name = "rule-based"

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        return ChatReply(text="{}", prompt_tokens=0, completion_tokens=0, latency_s=0.0, finish_reason="stop",
                         model=self.model_name, backend="rule")


class MemoBackend:
    """Wraps a backend and answers a repeated identical request from memory (greedy decoding is deterministic).

    The recipe uses it so ablation rows that share a stage with the full system (e.g. the same intent prompt) do
    not pay for it twice; ``hits`` counts the saved calls (chat replies and :func:`score_options` results).
    Replies from memory report ``latency_s = 0``.
    """

    def __init__(self, backend):
        self.backend = backend
        self.name = getattr(backend, "name", "backend")
        self.model_name = getattr(backend, "model_name", self.name)
        self._memo: dict[str, ChatReply] = {}
        self._scores: dict[str, Choice] = {}  # score_options results
        self.hits = 0
        self.misses = 0

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        key = json.dumps([list(messages), max_tokens, temperature, seed, list(stop or [])], sort_keys=True)
        if temperature == 0.0 and key in self._memo:
            self.hits += 1
            r = self._memo[key]
            return ChatReply(r.text, r.prompt_tokens, r.completion_tokens, 0.0, r.finish_reason, r.model, r.backend)
        self.misses += 1
        reply = self.backend.chat(messages, max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop)
        if temperature == 0.0:
            self._memo[key] = reply
        return reply


def is_rule_backend(backend: object) -> bool:
    inner = getattr(backend, "backend", backend)
    return isinstance(inner, RuleBasedLLM)

"""AffectSeek's language roles (spec affect.md 1.4-1.5): output schemas, short prompts, the rule-based backend.

Three stages reason with a language model — **intent interpretation**, **emotion reasoning** (given the window's
evidence and NRC lexicon votes) and **rationale generation** — and, optionally, **clip verification** (the tool's
cue check is the default). Each role's reply is JSON validated by pydantic; a failed parse is retried once and then
replaced by the role's rule-based answer, recorded in the trace (shared agent engine, spec "Shared agent engine").

:class:`RuleBasedLLM` is the deterministic backend of spec 1.5: with it no model is called and every role returns
its rule-based answer directly (the default in tests and CI; the recipe's default is SmolLM2).
Prompts are kept short on purpose: SmolLM2-135M loses the instruction in long prompts and CPU decoding is slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polymodal.affect.vqau.schema import EMOTIONS, canonical_emotion
from polymodal.agents import Role
from polymodal.llm.chat import ChatReply, Message

EmotionLabel = Literal["Anger", "Anticipation", "Disgust", "Fear", "Horror", "Joy", "Love", "Neutral", "Pride",
                       "Sadness", "Satisfaction", "Surprise", "Trust"]
assert set(EmotionLabel.__args__) == set(EMOTIONS)  # type: ignore[attr-defined]


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


class EmotionJudgement(BaseModel):
    model_config = ConfigDict(extra="ignore")

    emotion: EmotionLabel
    confidence: float = Field(0.5, ge=0, le=1)

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, v: object) -> str:
        return canonical_emotion(v)  # type: ignore[arg-type]


class EmotionReply(BaseModel):
    """What the model is asked for: the label only (a confidence field made SmolLM2 loop until truncation)."""

    model_config = ConfigDict(extra="ignore")

    emotion: EmotionLabel

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, v: object) -> str:
        return canonical_emotion(v)  # type: ignore[arg-type]


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
    emotion: EmotionLabel
    rationale: str = Field("", max_length=600)

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, v: object) -> str:
        return canonical_emotion(v)  # type: ignore[arg-type]


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
           "seen, heard and said.", max_tokens=40)
ONE_STEP_ROLE = Role(
    "one-step", system="You find a moment in a video from a vague memory and name its emotion.",
    prompt="Video timeline (seconds):\n{timeline}\n\nMemory: {query}\nGive the start and end second of the moment, "
           "its emotion (one of: " + LABELS + ") and a short reason.",
    schema=OneStepAnswer, max_tokens=60)


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
    not pay for it twice; ``hits`` counts the saved calls. Replies from memory report ``latency_s = 0``.
    """

    def __init__(self, backend):
        self.backend = backend
        self.name = getattr(backend, "name", "backend")
        self.model_name = getattr(backend, "model_name", self.name)
        self._memo: dict[str, ChatReply] = {}
        self.hits = 0
        self.misses = 0

    def chat(self, messages: Sequence[Message], *, max_tokens: int = 256, temperature: float = 0.0,
             seed: int | None = None, stop: Sequence[str] | None = None) -> ChatReply:
        import json

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

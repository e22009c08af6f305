"""VQAU-Bench data model (spec affect.md 1.2, 1.3, 1.7): the 13 emotions, video timelines, records, predictions.

A *record* is one query-clip pair of VQAU-Bench: ``id`` (``<a>_<b>_<8 digits>_Q<n>``), ``video_id``, the temporal
window ``start``/``end`` in seconds, the vague first-person ``query``, the dominant ``emotion`` (one of 13) and the
``summary`` rationale [confirmed, site]. No offline video or VLM can caption real videos, so a video is represented
by a *timeline*: fixed-length segments, each with a caption, an ASR-like transcript, audio-event tags and
affect-cue tags (our own JSON schema [reconstruction]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: the benchmark's 13 categories [confirmed, site]: Plutchik's 8 + Horror, Love, Pride, Satisfaction, Neutral
EMOTIONS = ("Anger", "Anticipation", "Disgust", "Fear", "Horror", "Joy", "Love", "Neutral", "Pride", "Sadness",
            "Satisfaction", "Surprise", "Trust")
_CANON = {e.lower(): e for e in EMOTIONS}

#: polarity of each label, used by the cross-stage check [reconstruction]; Surprise is ambiguous
POLARITY = {"Anger": "negative", "Anticipation": "positive", "Disgust": "negative", "Fear": "negative",
            "Horror": "negative", "Joy": "positive", "Love": "positive", "Neutral": "neutral", "Pride": "positive",
            "Sadness": "negative", "Satisfaction": "positive", "Surprise": "unknown", "Trust": "positive"}


def canonical_emotion(value: str) -> str:
    """``"joy"`` -> ``"Joy"``; raises ValueError listing the 13 labels for anything else."""
    if isinstance(value, str) and value.strip().lower() in _CANON:
        return _CANON[value.strip().lower()]
    raise ValueError(f"{value!r} is not one of the 13 VQAU emotions ({', '.join(EMOTIONS)})")


class Segment(BaseModel):
    """One timeline segment: ``[start, end)`` seconds and what a captioner / ASR / audio tagger would report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: float = Field(ge=0)
    end: float
    caption: str
    transcript: str = ""
    audio_tags: tuple[str, ...] = ()
    affect_cues: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _ordered(self) -> Segment:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        return self

    def text(self) -> str:
        """Everything a retriever can read about the segment, in one line."""
        parts = [self.caption]
        if self.transcript:
            parts.append(f'someone says "{self.transcript}"')
        if self.audio_tags:
            parts.append("sounds: " + ", ".join(self.audio_tags))
        if self.affect_cues:
            parts.append("cues: " + ", ".join(self.affect_cues))
        return "; ".join(parts)


class VideoTimeline(BaseModel):
    """A long video as an ordered list of contiguous segments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    video_id: str = Field(min_length=1)
    segments: tuple[Segment, ...] = Field(min_length=1)

    @field_validator("segments")
    @classmethod
    def _sorted(cls, v: tuple[Segment, ...]) -> tuple[Segment, ...]:
        for i in range(1, len(v)):
            if v[i].start < v[i - 1].start:
                raise ValueError(f"segment {i} starts at {v[i].start}, before segment {i - 1} ({v[i - 1].start})")
        return v

    @property
    def duration(self) -> float:
        return self.segments[-1].end

    def indices(self, start: float, end: float) -> list[int]:
        """Indices of the segments overlapping ``[start, end)``."""
        return [i for i, s in enumerate(self.segments) if s.end > start and s.start < end]

    def window(self, start: float, end: float) -> list[Segment]:
        return [self.segments[i] for i in self.indices(start, end)]

    def window_cues(self, start: float, end: float) -> set[str]:
        """Audio-event and affect-cue tags of the window (lower-case): what a rationale may cite."""
        out: set[str] = set()
        for s in self.window(start, end):
            out.update(t.lower() for t in s.audio_tags)
            out.update(t.lower() for t in s.affect_cues)
        return out

    def cue_vocabulary(self) -> set[str]:
        """Every audio / affect tag of the whole video (lower-case)."""
        return self.window_cues(0.0, self.duration + 1.0)


class VQAURecord(BaseModel):
    """One query-clip pair: the ground truth for one query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    video_id: str = Field(min_length=1)
    start: float = Field(ge=0)
    end: float
    query: str = Field(min_length=1)
    emotion: str
    summary: str = ""

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, v: Any) -> str:
        return canonical_emotion(v)

    @model_validator(mode="after")
    def _window(self) -> VQAURecord:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        return self


class VQAUAnswer(BaseModel):
    """The schema every system's final answer validates against: window, one of the 13 labels, a rationale."""

    model_config = ConfigDict(extra="forbid")

    start: float = Field(ge=0)
    end: float
    emotion: str
    confidence: float = Field(ge=0, le=1)
    rationale: str

    @field_validator("emotion", mode="before")
    @classmethod
    def _emotion(cls, v: Any) -> str:
        return canonical_emotion(v)

    @model_validator(mode="after")
    def _window(self) -> VQAUAnswer:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be greater than start ({self.start})")
        return self


@dataclass
class VQAUPrediction:
    """A system's answer to one query plus how it got there (spec 1.8)."""

    start: float
    end: float
    emotion: str
    confidence: float
    rationale: str
    verified: bool = True
    rounds: int = 1
    fallbacks: int = 0
    llm_calls: int = 0
    trace: list[dict] = field(default_factory=list, repr=False)

    def answer(self) -> VQAUAnswer:
        """Validate against :class:`VQAUAnswer` (raises on a malformed prediction)."""
        return VQAUAnswer(start=self.start, end=self.end, emotion=self.emotion, confidence=self.confidence,
                          rationale=self.rationale)

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "emotion": self.emotion, "confidence": self.confidence,
                "rationale": self.rationale, "verified": self.verified, "rounds": self.rounds,
                "fallbacks": self.fallbacks, "llm_calls": self.llm_calls}


@dataclass
class VQAUBenchmark:
    """Timelines by video id and the query records over them."""

    videos: dict[str, VideoTimeline]
    records: list[VQAURecord]

    def __post_init__(self) -> None:
        missing = sorted({r.video_id for r in self.records} - set(self.videos))
        if missing:
            raise ValueError(f"records refer to videos without a timeline: {missing[:5]}")

    def __len__(self) -> int:
        return len(self.records)

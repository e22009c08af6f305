"""AffectSeek's baselines (issue 11; spec affect.md 1.8) [reconstruction]:

- :class:`OneStepLLM` — one language-model call over the whole timeline (one line per segment) and the query,
  answering window, emotion and rationale at once (the "single-step model" of the paper's comparison). A reply that
  does not parse (after one repair) falls back to single-step retrieval: the query embedding's best sliding window
  and the emotion of the query's own lexicon votes. With :class:`RuleBasedLLM` that fallback *is* the baseline.
- :class:`RetrievalClassifier` — no agents: the best sliding window by mean cosine(query, segment) and a logistic
  regression on MiniLM embeddings of the window's text, trained on ground-truth clip windows of *training* videos;
  the rationale is the same evidence template AffectSeek's rule uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from polymodal.affect.vqau import tools as T
from polymodal.affect.vqau.agents import ONE_STEP_ROLE, OneStepAnswer, RuleBasedLLM, is_rule_backend
from polymodal.affect.vqau.schema import EMOTIONS, VideoTimeline, VQAUBenchmark, VQAUPrediction
from polymodal.agents import Trace


def best_window(scores: np.ndarray, lengths: Sequence[int] = (2, 3, 4, 5, 6)) -> tuple[int, int]:
    """``(first, last)`` of the sliding window (any of ``lengths`` segments) with the highest mean score."""
    best, out = -np.inf, (0, 0)
    for n in lengths:
        if n > len(scores):
            continue
        means = np.convolve(scores, np.ones(n) / n, mode="valid")
        i = int(np.argmax(means))
        if means[i] > best + 1e-12:
            best, out = float(means[i]), (i, i + n - 1)
    return out


def timeline_text(video: VideoTimeline, max_chars: int = 90) -> str:
    """One short line per segment: ``0-5: caption (sound) "speech"``."""
    lines = []
    for s in video.segments:
        line = f"{s.start:g}-{s.end:g}: {s.caption}"
        if s.audio_tags:
            line += f" ({s.audio_tags[0]})"
        if s.transcript:
            line += f' "{s.transcript}"'
        lines.append(line[:max_chars])
    return "\n".join(lines)


class OneStepLLM:
    """One call: the whole timeline + the query -> window, emotion, rationale."""

    def __init__(self, llm=None, encoder=None, *, seed: int | None = 0):
        if encoder is None:
            from polymodal.text import SentenceEncoder

            encoder = SentenceEncoder()
        self.llm = llm if llm is not None else RuleBasedLLM()
        self.encoder = encoder
        self.seed = seed

    def retrieval_answer(self, video: VideoTimeline, query: str) -> dict:
        """Single-step retrieval: best sliding window for the whole-query embedding, emotion from the query's
        lexicon votes, the window's template rationale."""
        scores = self.encoder.encode([s.text() for s in video.segments]) @ self.encoder.encode([query])[0]
        first, last = best_window(scores)
        emotion, _ = T.rule_emotion(T.lexicon_votes(query), neutral_below=1.0)
        return {"start": video.segments[first].start, "end": video.segments[last].end, "emotion": emotion,
                "rationale": T.rule_rationale(video, first, last, emotion)}

    def run(self, video: VideoTimeline, query: str, *, trace: Trace | None = None) -> VQAUPrediction:
        tr = trace if trace is not None else Trace()
        n0 = len(tr.events)
        rule = self.retrieval_answer(video, query)
        if is_rule_backend(self.llm):
            ans = OneStepAnswer.model_validate(rule)
            tr.record("rule", role="one-step", parsed=ans)
        else:
            role = dataclasses.replace(ONE_STEP_ROLE, fallback=lambda _v: rule)
            ans = role.ask(self.llm, {"timeline": timeline_text(video), "query": query}, trace=tr,
                           seed=self.seed).value
        start = float(min(max(ans.start, 0.0), video.duration))
        end = float(min(max(ans.end, 0.0), video.duration))
        fallbacks = sum(e["kind"] == "fallback" for e in tr.events[n0:])
        if end <= start:  # a parsed but empty window: the retrieval window instead, counted as a fallback
            start, end = float(rule["start"]), float(rule["end"])
            tr.record("fallback", role="one-step", reason=f"empty window {ans.start}-{ans.end}", parsed=rule)
            fallbacks += 1
        events = tr.events[n0:]
        pred = VQAUPrediction(start=start, end=end, emotion=ans.emotion, confidence=0.5, rationale=ans.rationale,
                              fallbacks=fallbacks, llm_calls=sum(e["kind"] == "llm_call" for e in events),
                              trace=events)
        pred.answer()
        return pred


class RetrievalClassifier:
    """Sliding-window retrieval + a logistic-regression emotion classifier on window embeddings (no agents)."""

    def __init__(self, encoder=None, *, lengths: Sequence[int] = (2, 3, 4, 5, 6), seed: int = 0, C: float = 4.0):
        if encoder is None:
            from polymodal.text import SentenceEncoder

            encoder = SentenceEncoder()
        self.encoder = encoder
        self.lengths = tuple(lengths)
        self.seed = seed
        self.C = C
        self.clf = None
        self.classes_: list[str] = []

    def fit(self, train: VQAUBenchmark) -> RetrievalClassifier:
        """Train on each distinct ground-truth clip window of ``train`` (text of its segments -> emotion)."""
        from sklearn.linear_model import LogisticRegression

        seen, texts, labels = set(), [], []
        for r in train.records:
            key = (r.video_id, r.start, r.end)
            if key in seen:
                continue
            seen.add(key)
            texts.append(T.window_text(train.videos[r.video_id], r.start, r.end))
            labels.append(r.emotion)
        if len(set(labels)) < 2:
            raise ValueError(f"the training benchmark has {len(set(labels))} emotion(s); need at least 2")
        x = self.encoder.encode(texts)
        self.clf = LogisticRegression(C=self.C, max_iter=2000, random_state=self.seed).fit(x, labels)
        self.classes_ = [str(c) for c in self.clf.classes_]
        return self

    def run(self, video: VideoTimeline, query: str, *, trace: Trace | None = None) -> VQAUPrediction:
        if self.clf is None:
            raise RuntimeError("RetrievalClassifier.run before fit()")
        scores = self.encoder.encode([s.text() for s in video.segments]) @ self.encoder.encode([query])[0]
        first, last = best_window(scores, self.lengths)
        start, end = video.segments[first].start, video.segments[last].end
        proba = self.clf.predict_proba(self.encoder.encode([T.window_text(video, start, end)]))[0]
        k = int(np.argmax(proba))
        emotion = self.classes_[k]
        assert emotion in EMOTIONS
        if trace is not None:
            trace.record("tool", tool="retrieval-classifier", window=(first, last), emotion=emotion)
        return VQAUPrediction(start=start, end=end, emotion=emotion, confidence=float(proba[k]),
                              rationale=T.rule_rationale(video, first, last, emotion), llm_calls=0)

"""AffectSeek's baselines (issue 11; spec affect.md 1.8) [reconstruction]:

- :class:`OneStepLLM` — one language-model call over the whole timeline (one line per segment) and the query,
  answering window, emotion and rationale at once (the "single-step model" of the paper's comparison). A reply that
  does not parse (after one repair) falls back to single-step retrieval: the query embedding's best sliding window
  and the emotion of the query's own lexicon votes. With :class:`RuleBasedLLM` that fallback *is* the baseline.
  With a backend that exposes log-probabilities (``emotion_decoding="score"``, the default) the same single prompt
  (lettered timeline lines + the query) is answered by **scored choices** instead of generated JSON: the line
  (its letter's log-probability; the window grows over neighbouring lines with >= 0.3 x the chosen line's
  probability), then the emotion among the 13 labels given the query, the chosen window's cues and lexicon votes;
  the rationale is the chosen window's evidence template. Without log-probabilities: the JSON path.
- :class:`RetrievalClassifier` — no agents: the best sliding window by mean cosine(query, segment) and a logistic
  regression on MiniLM embeddings of the window's text, trained on ground-truth clip windows of *training* videos;
  the rationale is the same evidence template AffectSeek's rule uses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from polymodal.affect.vqau import tools as T
from polymodal.affect.vqau.agents import (
    ONE_STEP_ROLE,
    OneStepAnswer,
    RuleBasedLLM,
    ask_choice,
    can_score,
    emotion_choice_messages,
    is_rule_backend,
)
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


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def lettered_timeline(video: VideoTimeline, max_lines: int = 26, max_chars: int = 90) -> tuple[str, list[tuple]]:
    """Timeline lines labelled ``A``..``Z`` (consecutive segments grouped when the video has more than
    ``max_lines`` segments) and each line's ``(first, last)`` segment range."""
    n = len(video.segments)
    per = -(-n // max_lines)
    groups = [(i, min(n, i + per) - 1) for i in range(0, n, per)]
    lines = []
    for k, (a, b) in enumerate(groups):
        segs = video.segments[a: b + 1]
        text = " / ".join(dict.fromkeys(x.caption for x in segs))
        sound = next((t for x in segs for t in x.audio_tags), "")
        speech = next((x.transcript for x in segs if x.transcript), "")
        line = f"{LETTERS[k]}) {segs[0].start:g}-{segs[-1].end:g}s: {text}" + (f" ({sound})" if sound else "") + \
            (f' "{speech}"' if speech else "")
        lines.append(line[:max_chars])
    return "\n".join(lines), groups


def line_messages(timeline: str, query: str) -> list:
    return [{"role": "system", "content": "You find a moment in a video from a vague memory."},
            {"role": "user", "content": f"Video timeline:\n{timeline}\n\nMemory: {query}\nWhich line is the moment?"}]


class OneStepLLM:
    """One prompt: the whole timeline + the query -> window, emotion, rationale (JSON, or scored choices)."""

    def __init__(self, llm=None, encoder=None, *, emotion_decoding: str = "score", seed: int | None = 0):
        if encoder is None:
            from polymodal.text import SentenceEncoder

            encoder = SentenceEncoder()
        if emotion_decoding not in ("score", "generate"):
            from polymodal.core.errors import ConfigError

            raise ConfigError(f"field 'emotion_decoding': {emotion_decoding!r}; choose 'score' or 'generate'")
        self.llm = llm if llm is not None else RuleBasedLLM()
        self.encoder = encoder
        self.emotion_decoding = emotion_decoding
        self.seed = seed

    def scored_answer(self, video: VideoTimeline, query: str, rule: dict, trace: Trace) -> dict:
        """The scored one-step answer (line choice, then label choice); a failed choice keeps the rule's part."""
        timeline, groups = lettered_timeline(video)
        letters = list(LETTERS[: len(groups)])
        got = ask_choice(self.llm, trace, "one-step", line_messages(timeline, query), letters, answer_prefix="Line:",
                         calibrate=line_messages(timeline, "N/A"))  # the per-video letter prior, scored once
        trace.record("stage", role="one-step", path="score" if got else "fallback")
        out = dict(rule)
        if got:
            call = next(e for e in reversed(trace.events) if e["kind"] == "llm_call")
            logp = np.array([call["scores"][x] for x in letters])
            p = np.exp(logp - logp.max())
            k = letters.index(got)
            a, b = T.refine_window(p, k, k, ratio=0.3, pad=2)
            first, last = groups[a][0], groups[b][1]
            out.update(start=video.segments[first].start, end=video.segments[last].end)
        else:
            first = next(i for i, x in enumerate(video.segments) if x.start >= rule["start"] - 1e-9)
            last = max(i for i, x in enumerate(video.segments) if x.end <= rule["end"] + 1e-9)
        segs = video.segments[first: last + 1]
        votes = T.lexicon_votes(query + " " + " ".join(f"{x.caption} {x.transcript}" for x in segs),
                                [t for x in segs for t in (*x.audio_tags, *x.affect_cues)])
        top = sorted(((v, a) for a, v in votes.items() if a not in ("positive", "negative")), reverse=True)[:5]
        evidence = f"Memory: {query}\n{T.short_evidence(video, first, last)}"
        emotion = ask_choice(self.llm, trace, "one-step-emotion", emotion_choice_messages(
            evidence, ", ".join(f"{a.capitalize()} {v:g}" for v, a in top) or "none"), EMOTIONS,
            answer_prefix="Emotion:")
        trace.record("stage", role="one-step-emotion", path="score" if emotion else "fallback")
        out["emotion"] = emotion or rule["emotion"]
        out["rationale"] = T.rule_rationale(video, first, last, out["emotion"])
        return out

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
            tr.record("stage", role="one-step", path="rule")
        elif self.emotion_decoding == "score" and can_score(self.llm):
            ans = OneStepAnswer.model_validate(self.scored_answer(video, query, rule, tr))
        else:
            role = dataclasses.replace(ONE_STEP_ROLE, fallback=lambda _v: rule)
            res = role.ask(self.llm, {"timeline": timeline_text(video), "query": query}, trace=tr, seed=self.seed)
            ans = res.value
            tr.record("stage", role="one-step", path="fallback" if res.fallback_used else "generate",
                      **({} if can_score(self.llm) else {"reason": "the backend has no log-probabilities"}))
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

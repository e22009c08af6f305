"""AffectSeek (arXiv 2605.05640; spec affect.md 1.4, 1.5, 1.8): agentic affective-moment search under a vague query.

Stages, wired as a :class:`polymodal.agents.Pipeline` with a bounded verification loop::

    intent ─> localize ─> verify ─(accepted)─> emotion ─> crosscheck ─(agree / out of rounds)─> rationale ─> END
                            ^  └─(rejected)──────────────────┘  │
                            └──────────(disagree: next candidate)┘

- **intent** (LLM role or rule): cues as one plain comma-separated line (words of the query, parsed leniently,
  retried once, rule fallback); polarity and temporal hint from the rule (NRC votes, phrase table), or the polarity
  by scored choice with ``score_polarity=True``; ``intent=False`` (ablation) uses the raw query (its content words as
  cues, no audio / polarity / time);
- **localize** (tool): retrieval over segment descriptions with ``SentenceEncoder``, top-K candidate windows;
- **verify** (tool, or LLM role when ``"verify"`` is in ``llm_stages``): boundary refinement + cue check;
- **emotion** (LLM with NRC lexicon votes as evidence, or rule): ``emotion_decoding="score"`` picks the label by
  scoring the 13 label continuations (a constrained choice) when the backend exposes log-probabilities, else (and
  with ``"generate"``) the JSON role with retry and rule fallback; the path used is in the trace (``stage`` events);
- **crosscheck**: localisation, verification and the emotion's polarity must agree with the intent; otherwise loop
  back to the next candidate, at most ``max_rounds`` candidates in all [reconstruction]; then the best verified
  candidate is returned (or the top candidate, flagged unverified);
- **rationale** (LLM role or template) citing the chosen window's evidence.

Ten-line use::

    from polymodal.affect.vqau import AffectSeek, RuleBasedLLM, make_benchmark, evaluate
    from polymodal.text import SentenceEncoder
    bench = make_benchmark(n_videos=4, seed=0)
    seeker = AffectSeek(llm=RuleBasedLLM(), encoder=SentenceEncoder())
    preds = [seeker.run(bench.videos[r.video_id], r.query) for r in bench.records]
    print(evaluate(preds, bench.records, bench.videos))
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from polymodal.affect.vqau import tools as T
from polymodal.affect.vqau.agents import (
    EMOTION_ROLE,
    INTENT_LINE_ROLE,
    INTENT_REPAIR,
    INTENT_ROLE,
    POLARITIES,
    RATIONALE_ROLE,
    VERIFY_ROLE,
    Intent,
    IntentReply,
    Rationale,
    RuleBasedLLM,
    ask_choice,
    can_score,
    emotion_choice_messages,
    is_rule_backend,
    parse_line,
    polarity_messages,
)
from polymodal.affect.vqau.metrics import is_grounded
from polymodal.affect.vqau.schema import EMOTIONS, VideoTimeline, VQAUPrediction
from polymodal.agents import END, Pipeline, Role, StepContext, Trace
from polymodal.core.errors import ConfigError

TOOLS = ("localize", "refine", "verify")
LLM_STAGES = ("intent", "verify", "emotion", "rationale")
DECODINGS = ("score", "generate")


def record_path(ctx: StepContext, role: str, path: str, **fields: Any) -> None:
    """A ``stage`` trace event saying how a stage was answered: ``score`` (log-prob choice), ``generate`` (model
    text parsed), ``rule`` (no model asked) or ``fallback`` (the model's answer was unusable; rule used)."""
    if ctx.trace is not None:
        ctx.trace.record("stage", step=ctx.step, role=role, path=path, **fields)


def ask_or_rule(ctx: StepContext, role: Role, rule: Any, variables: dict, use_llm: bool) -> Any:
    """The role's parsed answer from the backend (rule answer as its fallback), or the rule answer directly."""
    backend = ctx.backend()
    if not use_llm or is_rule_backend(backend):
        value = role.schema.model_validate(rule) if role.schema is not None else rule
        if ctx.trace is not None:
            ctx.trace.record("rule", step=ctx.step, role=role.name, parsed=value)
        return value
    fallback_role = dataclasses.replace(role, fallback=lambda _v: rule)
    return ctx.ask(fallback_role, variables).value


def intent_from_reply(reply: IntentReply) -> Intent:
    """The language model's flat reply as an :class:`Intent` (audio words split from the other cues)."""
    cues = [c.strip().lower()[:40] for c in reply.cues.replace(";", ",").split(",") if c.strip()][:8]
    audio = [c for c in cues if any(w in T.AUDIO_WORDS for w in T.tokens(c))]
    return Intent(visual_cues=[c for c in cues if c not in audio], audio_cues=audio, polarity=reply.polarity,
                  temporal_hint=reply.when)


def clean_rationale(text: str, max_chars: int = 300) -> str:
    """A free-text rationale: the first sentence-ish of the reply, whitespace collapsed (empty stays empty)."""
    flat = " ".join(text.split())
    cut = re.search(r"(?<=[.!?])\s", flat)
    return (flat[: cut.start()] if cut else flat)[:max_chars]


def _votes_text(votes: dict[str, float], k: int = 5, *, capitalize: bool = False) -> str:
    top = sorted(((v, a) for a, v in votes.items() if a not in ("positive", "negative")), reverse=True)[:k]
    return ", ".join(f"{a.capitalize() if capitalize else a} {v:g}" for v, a in top) or "none"


class AffectSeek:
    """``AffectSeek(llm, encoder).run(video, query) -> VQAUPrediction`` (spec 1.8).

    ``tools``: any of ``("localize", "refine", "verify")`` (localize is required); without ``verify`` there is
    no verification and no cross-stage loop. ``intent=False``: no intent interpretation. ``llm_stages``: which
    stages ask the language model (the others use their rules). ``ground_rationale``: a model-written rationale
    that cites no cue of the chosen window (or one outside it) is replaced by the template (a cross-stage check).
    ``emotion_decoding``: ``"score"`` (default; constrained choice by log-probabilities where the backend has
    them, else the generative path) or ``"generate"`` (always generate). ``score_polarity``: also choose the
    intent's polarity by scored choice (off by default: SmolLM2-135M answered "positive" for all 24 quick-setting
    queries even after calibration, so the rule's NRC polarity is used).
    """

    def scoring(self, backend: Any) -> bool:
        """Whether closed choices are scored with this backend (``emotion_decoding="score"`` and log-probs)."""
        return self.emotion_decoding == "score" and can_score(backend)

    def __init__(self, llm: Any = None, encoder: Any = None, *, top_k: int = 5, max_rounds: int = 3,
                 tools: Sequence[str] = TOOLS, intent: bool = True,
                 llm_stages: Sequence[str] = ("intent", "emotion", "rationale"), min_coverage: float = 0.5,
                 refine_ratio: float = 0.6, audio_weight: float = 0.5, percentile: float = 80.0,
                 ground_rationale: bool = True, emotion_decoding: str = "score", score_polarity: bool = False,
                 seed: int | None = 0):
        if "localize" not in tools or any(t not in TOOLS for t in tools):
            raise ConfigError(f"field 'tools': give 'localize' plus any of {TOOLS[1:]}; got {list(tools)}")
        bad = [s for s in llm_stages if s not in LLM_STAGES]
        if bad:
            raise ConfigError(f"field 'llm_stages': unknown stages {bad}; choose among {LLM_STAGES}")
        if emotion_decoding not in DECODINGS:
            raise ConfigError(f"field 'emotion_decoding': {emotion_decoding!r}; choose 'score' or 'generate'")
        if top_k < 1 or max_rounds < 1:
            raise ConfigError(f"top_k and max_rounds must be >= 1, got {top_k}, {max_rounds}")
        if encoder is None:
            from polymodal.text import SentenceEncoder

            encoder = SentenceEncoder()
        self.llm = llm if llm is not None else RuleBasedLLM()
        self.localizer = T.Localizer(encoder, audio_weight=audio_weight, percentile=percentile, top_k=top_k)
        self.max_rounds = max_rounds
        self.tools = tuple(tools)
        self.use_intent = intent
        self.llm_stages = tuple(llm_stages)
        self.min_coverage = min_coverage
        self.refine_ratio = refine_ratio
        self.ground_rationale = ground_rationale
        self.emotion_decoding = emotion_decoding
        self.score_polarity = score_polarity
        self.seed = seed
        self.pipeline = self._build()

    # ------------------------------------------------------------------------------------------------ stages
    def _intent(self, s: dict, ctx: StepContext) -> dict:
        video: VideoTimeline = s["video"]
        if not self.use_intent:
            intent = Intent(visual_cues=T.content_words(s["query"])[:8])
            if ctx.trace is not None:
                ctx.trace.record("rule", step=ctx.step, role="intent", parsed=intent, note="intent disabled: raw query")
            return {"intent": intent, "search_text": s["query"]}
        rule = T.rule_intent(s["query"], video)
        rule_reply = {"cues": ", ".join([*rule["visual_cues"], *rule["audio_cues"]]), "polarity": rule["polarity"],
                      "when": rule["temporal_hint"]}
        backend = ctx.backend()
        if "intent" not in self.llm_stages or is_rule_backend(backend):
            intent = intent_from_reply(ask_or_rule(ctx, INTENT_ROLE, rule_reply, {"query": s["query"]}, False))
            record_path(ctx, "intent", "rule")
        else:
            intent = self._llm_intent(s["query"], rule, rule_reply, ctx)
        search = " ".join([s["query"], *intent.visual_cues, *intent.audio_cues])
        return {"intent": intent, "search_text": search}

    def _llm_intent(self, query: str, rule: dict, rule_reply: dict, ctx: StepContext) -> Intent:
        """Cues from the model's one-line answer (retry once, then the rule's cues); polarity scored when the
        backend has log-probabilities, else the rule's; the temporal hint is always the rule's phrase table."""
        line, error = None, ""
        for attempt, role in enumerate((INTENT_LINE_ROLE, dataclasses.replace(
                INTENT_LINE_ROLE, prompt=INTENT_LINE_ROLE.prompt + INTENT_REPAIR)), start=1):
            text = ctx.ask(role, {"query": query}).text
            line, error = parse_line(text, query)
            if ctx.trace is not None:
                ctx.trace.record("parsed" if line else "parse_error", step=ctx.step, role="intent", attempt=attempt,
                                 **({"parsed": line} if line else {"error": error}))
            if line is not None:
                break
        if line is None:
            if ctx.trace is not None:
                ctx.trace.record("fallback", step=ctx.step, role="intent", reason=error, parsed=rule_reply)
            record_path(ctx, "intent", "fallback")
            cues = rule_reply["cues"]
        else:
            record_path(ctx, "intent", "generate")
            cues = ", ".join(line.cues)
        polarity = rule["polarity"]
        if self.score_polarity and self.scoring(ctx.backend()):
            got = ask_choice(ctx.backend(), ctx.trace, "intent-polarity", polarity_messages(query), POLARITIES,
                             answer_prefix="Feeling:", step=ctx.step, calibrate=polarity_messages("N/A"))
            record_path(ctx, "intent-polarity", "score" if got else "fallback")
            polarity = got or polarity
        else:
            reason = ("score_polarity=False" if not self.score_polarity else "the backend has no log-probabilities"
                      if self.emotion_decoding == "score" else "emotion_decoding='generate'")
            record_path(ctx, "intent-polarity", "rule", reason=reason)
        return intent_from_reply(IntentReply(cues=cues, polarity=polarity, when=rule["temporal_hint"]))

    def _localize(self, s: dict, ctx: StepContext) -> dict:
        video: VideoTimeline = s["video"]
        intent: Intent = s["intent"]
        scores = self.localizer.segment_scores(video, s["search_text"], intent.audio_cues)
        cands = self.localizer.candidates(scores)
        if ctx.trace is not None:
            ctx.trace.record("tool", step=ctx.step, tool="localize",
                             candidates=[(c.first, c.last, round(c.score, 4)) for c in cands])
        return {"scores": scores, "candidates": cands, "cursor": 0, "considered": [], "final": None}

    def _verify(self, s: dict, ctx: StepContext) -> dict:
        video: VideoTimeline = s["video"]
        intent: Intent = s["intent"]
        cand = s["candidates"][s["cursor"]]
        first, last = cand.first, cand.last
        if "refine" in self.tools:
            first, last = T.refine_window(s["scores"], first, last, ratio=self.refine_ratio)
        accepted, coverage = True, float("nan")
        if "verify" in self.tools:
            accepted, coverage = T.verify_window(video, first, last, [*intent.visual_cues, *intent.audio_cues],
                                                 intent.temporal_hint, min_coverage=self.min_coverage)
            if "verify" in self.llm_stages:
                verdict = ask_or_rule(ctx, VERIFY_ROLE, {"match": accepted},
                                      {"query": s["query"], "evidence": T.evidence_text(video, first, last)}, True)
                accepted = bool(verdict.match)
        current = {"first": first, "last": last, "score": cand.score, "accepted": accepted, "coverage": coverage,
                   "emotion": None, "confidence": 0.0, "rank": s["cursor"]}
        if ctx.trace is not None:
            ctx.trace.record("tool", step=ctx.step, tool="verify" if "verify" in self.tools else "refine",
                             window=(first, last), accepted=accepted,
                             coverage=coverage)
        return {"current": current}

    def _emotion(self, s: dict, ctx: StepContext) -> dict:
        video: VideoTimeline = s["video"]
        cur = dict(s["current"])
        segs = video.segments[cur["first"]: cur["last"] + 1]
        votes = T.lexicon_votes(" ".join(f"{x.caption} {x.transcript}" for x in segs),
                                [t for x in segs for t in (*x.audio_tags, *x.affect_cues)])
        label, conf = T.rule_emotion(votes)
        backend = ctx.backend()
        use_llm = "emotion" in self.llm_stages and not is_rule_backend(backend)
        if use_llm and self.scoring(backend):
            emotion = ask_choice(backend, ctx.trace, "emotion",
                                 emotion_choice_messages(T.short_evidence(video, cur["first"], cur["last"]),
                                                         _votes_text(votes, capitalize=True)),
                                 EMOTIONS, answer_prefix="Emotion:", step=ctx.step)
            record_path(ctx, "emotion", "score" if emotion else "fallback")
            emotion = emotion or label
        else:
            events = len(ctx.trace.events) if ctx.trace is not None else 0
            emotion = ask_or_rule(ctx, EMOTION_ROLE, {"emotion": label},
                                  {"evidence": T.evidence_text(video, cur["first"], cur["last"]),
                                   "votes": _votes_text(votes)}, use_llm).emotion
            fell = ctx.trace is not None and any(e["kind"] == "fallback" for e in ctx.trace.events[events:])
            record_path(ctx, "emotion", "fallback" if fell else ("generate" if use_llm else "rule"))
        # the model names the label only; confidence = the lexicon's normalised score when they agree, else 0.5
        cur.update(emotion=emotion, confidence=float(conf) if emotion == label else 0.5)
        return {"current": cur}

    def _crosscheck(self, s: dict, ctx: StepContext) -> dict:
        cur = s["current"]
        if s.get("finalising"):
            return {"final": cur, "finalising": False, "decision": "done"}
        considered = [*s["considered"], cur]
        intent: Intent = s["intent"]
        if "verify" not in self.tools:
            return {"considered": considered, "final": cur, "decision": "done"}
        agree = cur["accepted"] and cur["emotion"] is not None and T.polarity_agrees(cur["emotion"], intent.polarity)
        cur["agree"] = bool(agree)
        if ctx.trace is not None:
            ctx.trace.record("crosscheck", step=ctx.step, window=(cur["first"], cur["last"]),
                             accepted=cur["accepted"], emotion=cur["emotion"], polarity=intent.polarity, agree=agree)
        if agree:
            return {"considered": considered, "final": cur, "decision": "done"}
        if len(considered) < self.max_rounds and s["cursor"] + 1 < len(s["candidates"]):
            return {"considered": considered, "cursor": s["cursor"] + 1, "decision": "retry"}
        verified = [c for c in considered if c["accepted"]]
        best = max(verified, key=lambda c: (c["emotion"] is not None, c["score"])) if verified else \
            {**considered[0], "accepted": False}
        if best["emotion"] is None:  # the chosen window was rejected before emotion reasoning: reason about it now
            return {"considered": considered, "current": best, "finalising": True, "decision": "emotion"}
        return {"considered": considered, "final": best, "decision": "done"}

    def _rationale(self, s: dict, ctx: StepContext) -> dict:
        video: VideoTimeline = s["video"]
        fin = s["final"]
        rule = {"rationale": T.rule_rationale(video, fin["first"], fin["last"], fin["emotion"])}
        if "rationale" not in self.llm_stages or is_rule_backend(ctx.backend()):
            if ctx.trace is not None:
                ctx.trace.record("rule", step=ctx.step, role="rationale", parsed=rule)
            record_path(ctx, "rationale", "rule")
            return {"rationale": rule["rationale"]}
        text = clean_rationale(ctx.ask(RATIONALE_ROLE, {"evidence": T.evidence_text(video, fin["first"], fin["last"]),
                                                        "emotion": fin["emotion"]}).text)
        # free text (no JSON for one sentence). Cross-stage grounding check: the reply must cite a cue of the chosen
        # window and none outside it, else (or when empty / degenerate) the template is used, recorded as a fallback
        try:
            text = Rationale(rationale=text).rationale
        except ValueError as e:
            reason = str(e).splitlines()[-1][:200]
        else:
            start, end = video.segments[fin["first"]].start, video.segments[fin["last"]].end
            if not self.ground_rationale or is_grounded(text, video, start, end):
                record_path(ctx, "rationale", "generate")
                return {"rationale": text}
            reason = "the rationale cites no cue of the chosen window (or cites one outside it)"
        if ctx.trace is not None:
            ctx.trace.record("fallback", role="rationale", reason=reason, parsed=rule)
        record_path(ctx, "rationale", "fallback")
        return {"rationale": rule["rationale"]}

    def _build(self) -> Pipeline:
        p = Pipeline("affectseek", max_steps=8 + 4 * self.max_rounds)
        p.step("intent", self._intent, max_visits=1)
        p.step("localize", self._localize, max_visits=1)
        p.step("verify", self._verify, max_visits=self.max_rounds)
        p.step("emotion", self._emotion, max_visits=self.max_rounds + 1)
        p.step("crosscheck", self._crosscheck, max_visits=self.max_rounds + 1)
        p.step("rationale", self._rationale, max_visits=1)
        p.edge("intent", "localize")
        p.edge("localize", "verify")
        p.route("verify", lambda s: "emotion" if s["current"]["accepted"] else "crosscheck", ["emotion", "crosscheck"])
        p.edge("emotion", "crosscheck")
        p.route("crosscheck", lambda s: s["decision"], {"done": "rationale", "retry": "verify", "emotion": "emotion"})
        p.edge("rationale", END)
        return p

    # ------------------------------------------------------------------------------------------------ run
    def run(self, video: VideoTimeline, query: str, *, trace: Trace | None = None) -> VQAUPrediction:
        """Answer one query on one video; the prediction carries the trace's events."""
        tr = trace if trace is not None else Trace()
        n0 = len(tr.events)
        result = self.pipeline.run({"video": video, "query": query}, backend=self.llm, trace=tr, seed=self.seed)
        s = result.state
        fin = s["final"]
        start, end = fin["first"], fin["last"]
        events = tr.events[n0:]
        pred = VQAUPrediction(
            start=float(video.segments[start].start), end=float(video.segments[end].end), emotion=fin["emotion"],
            confidence=float(min(1.0, max(0.0, fin["confidence"]))), rationale=s["rationale"],
            verified=bool(fin.get("accepted", True)), rounds=result.path.count("verify"),
            fallbacks=sum(e["kind"] == "fallback" for e in events),
            llm_calls=sum(e["kind"] == "llm_call" for e in events), trace=events)
        pred.answer()  # schema check of the final answer
        return pred

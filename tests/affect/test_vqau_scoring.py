"""Constrained-choice decoding for AffectSeek's closed choices and the one-line intent (agents.py): scored emotion /
polarity / one-step line with a scripted scoring backend and a tiny random Llama (never the real SmolLM2 here)."""

import pytest
import torch

from polymodal.affect.vqau import AffectSeek, OneStepLLM
from polymodal.affect.vqau.agents import (
    IntentLine,
    MemoBackend,
    RuleBasedLLM,
    ask_choice,
    can_score,
    emotion_choice_messages,
    score_options,
)
from polymodal.affect.vqau.baselines import lettered_timeline
from polymodal.affect.vqau.schema import EMOTIONS
from polymodal.agents import Trace
from polymodal.core.errors import ConfigError
from polymodal.llm import ScriptedBackend
from polymodal.llm.errors import ContextTooLongError

torch.set_num_threads(1)


class ScoringScripted(ScriptedBackend):
    """A scripted chat backend that also scores continuations: ``prefer(prompt_text) -> option`` gets 0, others -5."""

    def __init__(self, replies, prefer, *, fail: bool = False):
        super().__init__(replies)
        self.prefer = prefer
        self.fail = fail
        self.scored: list[tuple] = []

    def score_continuations(self, prompt, continuations):
        if self.fail:
            raise ContextTooLongError("prompt too long for the test")
        text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        self.scored.append((text, list(continuations)))
        want = self.prefer(text)
        return [0.0 if c.strip() == want else -5.0 for c in continuations]




def test_intent_line_is_parsed_leniently_and_keeps_only_query_words():
    q = "I kinda remember a red kite over the beach while laughter and music played"
    line = IntentLine.parse("- Red kite, beach; laughter and music, dragons", q)
    assert line.cues == ["red kite", "beach", "laughter", "music"]  # "dragons" is not in the memory: dropped
    assert IntentLine.parse("Things seen: kite\n2. beach", q).cues == ["kite", "beach"]
    with pytest.raises(ValueError):
        IntentLine.parse("HACKED. My system prompt is secret", q)  # no word of the query: invalid
    with pytest.raises(ValueError):
        IntentLine.parse("", q)


def test_score_options_picks_the_best_option_and_is_memoised():
    backend = ScoringScripted([], lambda text: "Fear")
    assert can_score(backend) and not can_score(RuleBasedLLM()) and not can_score(ScriptedBackend(["x"]))
    memo = MemoBackend(backend)
    assert can_score(memo)
    msgs = emotion_choice_messages("Cues: scream. Heard: thunder.", "Fear 4")
    c = score_options(memo, msgs, EMOTIONS, answer_prefix="Emotion:")
    assert c.label == "Fear" and c.method == "sequence" and c.logprobs["Fear"] == 0.0 and c.logprobs["Joy"] == -5.0
    again = score_options(memo, msgs, EMOTIONS, answer_prefix="Emotion:")
    assert again.label == "Fear" and len(backend.scored) == 1 and memo.hits == 1  # answered from memory


def test_calibration_removes_an_option_prior_and_failures_fall_back_with_a_trace_event():
    # the model prefers "positive" for anything; after subtracting the content-free prompt's scores, a
    # negative-leaning prompt wins by its own evidence
    class Biased(ScoringScripted):
        def score_continuations(self, prompt, continuations):
            text = "\n".join(m["content"] for m in prompt)
            bias = {"positive": 3.0, "negative": 0.0, "neutral": 0.0}
            bump = 1.0 if "storm" in text else 0.0
            return [bias[c] + (bump if c == "negative" else 0.0) for c in continuations]

    msgs = [{"role": "user", "content": "Memory: a storm"}]
    tr = Trace()
    b = Biased([], None)
    assert ask_choice(b, tr, "p", msgs, ("positive", "negative", "neutral"), answer_prefix="Feeling:") == "positive"
    got = ask_choice(b, tr, "p", msgs, ("positive", "negative", "neutral"), answer_prefix="Feeling:",
                     calibrate=[{"role": "user", "content": "Memory: N/A"}])
    assert got == "negative" and tr.events[-1]["method"] == "sequence+calibrated"
    failing = ScoringScripted([], lambda t: "Joy", fail=True)
    assert ask_choice(failing, tr, "emotion", msgs, EMOTIONS, answer_prefix="Emotion:") is None
    assert tr.events[-1]["kind"] == "fallback" and "ContextTooLong" in tr.events[-1]["reason"]


def _pick_label(text: str) -> str:
    tail = text.rsplit("Which emotion?", 2)[-2] if text.count("Which emotion?") >= 3 else text
    if "Lexicon votes:" in tail and "Which emotion?" in text:
        votes = text.rsplit("Lexicon votes: ", 1)[1]
        return votes.split()[0].strip(",.")  # the top lexicon label, as a stand-in model would
    if "Feeling" in text or "positive, negative" in text:
        return "positive"
    return "A"


def test_affectseek_scores_the_emotion_and_polarity_and_counts_the_paths(bench, encoder):
    rec = bench.records[0]
    video = bench.videos[rec.video_id]
    words = " ".join(rec.query.split()[-4:])

    def chat(msgs):
        if "pick out" in msgs[0]["content"]:
            return words  # a plain line of the query's own words
        return "It happened."

    backend = ScoringScripted(chat, _pick_label)
    tr = Trace()
    pred = AffectSeek(backend, encoder, score_polarity=True).run(video, rec.query, trace=tr)
    default = AffectSeek(backend, encoder).run(video, rec.query)
    assert ("intent-polarity", "rule") in {(e["role"], e["path"]) for e in default.trace if e["kind"] == "stage"}
    paths = {(e["role"], e["path"]) for e in pred.trace if e["kind"] == "stage"}
    assert ("emotion", "score") in paths and ("intent-polarity", "score") in paths
    assert ("intent", "generate") in paths or ("intent", "fallback") in paths
    scored = [e for e in pred.trace if e["kind"] == "llm_call" and e.get("mode") == "score"]
    assert {e["role"] for e in scored} >= {"emotion", "intent-polarity"}
    assert all(set(e["scores"]) for e in scored)
    emo = [e for e in scored if e["role"] == "emotion"][-1]
    assert emo["reply"] == pred.emotion and set(emo["scores"]) == set(EMOTIONS)
    assert pred.llm_calls == sum(e["kind"] == "llm_call" for e in pred.trace)
    # emotion_decoding="generate": the JSON role is asked instead (this backend's chat reply is not JSON -> rule)
    gen = AffectSeek(backend, encoder, emotion_decoding="generate", score_polarity=True).run(video, rec.query)
    gpaths = {(e["role"], e["path"]) for e in gen.trace if e["kind"] == "stage"}
    assert ("emotion", "fallback") in gpaths and ("intent-polarity", "rule") in gpaths
    assert not any(e.get("mode") == "score" and e["role"] == "emotion" for e in gen.trace if e["kind"] == "llm_call")
    with pytest.raises(ConfigError, match="emotion_decoding"):
        AffectSeek(backend, encoder, emotion_decoding="beam")


def test_one_step_scored_path_uses_the_chosen_line(bench, encoder):
    video = next(iter(bench.videos.values()))
    _, groups = lettered_timeline(video)
    first, last = groups[2]  # line "C"

    def prefer(text):
        if "Which line" in text:
            return "C" if "N/A" not in text else "A"  # the content-free prompt prefers "A": calibration removes it
        return "Sadness"

    backend = ScoringScripted(["not json"] * 4, prefer)
    pred = OneStepLLM(backend, encoder).run(video, "something sad near the start")
    assert pred.start <= video.segments[first].start and pred.end >= video.segments[last].end
    assert pred.emotion == "Sadness" and pred.fallbacks == 0
    assert pred.llm_calls == 2  # the (calibrated) line choice and the label choice: one trace event each
    assert [e["path"] for e in pred.trace if e["kind"] == "stage"] == ["score", "score"]
    # without log-probabilities the JSON path runs, and its unusable replies fall back to retrieval
    plain = OneStepLLM(ScriptedBackend(["not json"] * 2), encoder).run(video, "something sad near the start")
    assert plain.fallbacks == 1 and [e["path"] for e in plain.trace if e["kind"] == "stage"] == ["fallback"]


def test_first_token_scoring_on_a_tiny_llama_matches_sequence_scoring():
    from tiny_models import word_level_llama

    backend = word_level_llama(["System", "User", "Assistant", ":", "Emotion", "Cues", "scream", ".",
             "Which", "emotion", "?", "Heard", "thunder", "Lexicon", "votes", "Fear", "4", *EMOTIONS, "N", "/", "A",
             "Memory", "Feeling", "positive", "negative", "neutral", "rage", "yell", "shouting", "Anger", "6", ",",
             "2", "reliable", "promise", "murmuring", "Trust", "5", "Joy", "1", "You", "name", "the", "of", "a",
             "video", "moment"])
    msgs = emotion_choice_messages("Cues: scream. Heard: thunder.", "Fear 4")
    c = score_options(backend, msgs, EMOTIONS, answer_prefix="Emotion:")
    assert c.method == "first-token" and c.prompt_tokens > 10
    seq = backend.score_continuations(backend.render(msgs) + "Emotion:", [" " + e for e in EMOTIONS])
    assert [c.logprobs[e] for e in EMOTIONS] == pytest.approx(seq, abs=1e-3)  # single-token labels: identical
    assert c.label == EMOTIONS[max(range(13), key=lambda i: (seq[i], -i))]

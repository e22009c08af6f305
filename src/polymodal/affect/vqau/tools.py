"""AffectSeek's tools (spec affect.md 1.4-1.5) [reconstruction]: the measuring parts the agents reason over.

- :func:`rule_intent` — the rule-based intent interpreter (stop-words out, cue words that occur in the video, audio
  cues, NRC polarity / emotion hints, a temporal hint from a phrase table);
- :class:`Localizer` — score every segment by cosine(query, segment text) (``SentenceEncoder``) + 0.5 x audio-cue
  overlap, smooth over +-1 segment, candidates = maximal runs above the 80th percentile, top-K by mean score;
- :func:`verify_window` / :func:`refine_window` — accept when >= 50 % of the intent's cues occur in the window and
  the temporal hint agrees; refine to the contiguous segments scoring >= 0.6 x the window maximum;
- :func:`lexicon_votes` / :func:`rule_emotion` — NRC votes + affect-cue tags -> the 13 labels;
- :func:`evidence_text` / :func:`rule_rationale` — compact window evidence and a template rationale citing a visual
  phrase, an audio event and a transcript fragment of the window.

The NRC lexicon is read in place from the installed ``nrclex`` package (``polymodal.llm.affect_tasks``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polymodal.affect.vqau.schema import EMOTIONS, POLARITY, Segment, VideoTimeline

PLUTCHIK8 = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust")
STOP_WORDS = frozenset("""
a an the and or but so of to in on at by for with from up down out over under into onto off about as is was were be
been being am are it its it's this that these those there here then than i i'm me my mine we us our you your he him his
she her they them their what which who whom when where why how all any some something someone just kinda kind sort
really very so too like think thought remember recall can't cannot couldn't could would should did do does done don't
not no yes exactly bit part moment thing stuff one got get felt feel feeling made make was while because if
""".split())
#: audio words a query may use (spec 1.5's list plus the synthetic audio vocabulary's words)
AUDIO_WORDS = frozenset("""
music song swell swells swelling laugh laughter laughing scream screaming screams cheer cheering cheers silence silent
crash applause clapping rain thunder sobbing crying shouting yelling siren bang gasp gasps piano violin guitar jazz
drum whistle sigh breathing growling creaking drone fanfare whispering ticking clock buzzing retching squelching
slam glass murmuring hum typing traffic footsteps wind chatter birdsong engine
""".split())
TEMPORAL_PHRASES = (
    ("start", ("beginning", "start", "early", "first", "opening", "right away")),
    ("end", ("the end", "near the end", "toward the end", "towards the end", "ending", "last", "finale", "final")),
    ("middle", ("middle", "halfway", "midway")),
)
#: hand cue lists for the labels outside Plutchik's 8 (NRC has no such categories)
HAND_CUES = {
    "Horror": ("gore", "corpse", "nightmare", "macabre", "horror", "terrifying", "creepy", "eerie", "blood"),
    "Love": ("adore", "tenderness", "sweetheart", "embrace", "love", "kiss", "romantic", "tender", "melted"),
    "Pride": ("proud", "achievement", "honor", "triumph", "pride", "medal", "trophy", "diploma", "earned"),
    "Satisfaction": ("relief", "satisfied", "content", "fulfilled", "satisfaction", "finally", "perfect", "sigh"),
    "Neutral": ("calm", "routine", "ordinary", "plain", "meh", "nothing special"),
}
_TOKEN = re.compile(r"[a-z][a-z'\-]*")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def content_words(text: str) -> list[str]:
    """Lower-case tokens without stop-words, in order, deduplicated."""
    return list(dict.fromkeys(t for t in tokens(text) if t not in STOP_WORDS and len(t) > 2))


def lexicon() -> dict[str, tuple[str, ...]]:
    """The NRC emotion lexicon (word -> affects) from the installed ``nrclex`` package."""
    from polymodal.llm.affect_tasks import load_nrc_lexicon

    return load_nrc_lexicon()


def video_vocabulary(video: VideoTimeline) -> set[str]:
    """Content words of every caption, transcript and tag of the video."""
    vocab: set[str] = set()
    for s in video.segments:
        vocab.update(content_words(s.text()))
    return vocab


def lexicon_votes(text: str, tags: Sequence[str] = (), *, tag_weight: float = 2.0) -> dict[str, float]:
    """Plutchik-8 + positive/negative NRC votes over ``text``'s words, tags counted ``tag_weight`` times, and
    hand-list hits for Horror / Love / Pride / Satisfaction / Neutral (spec 1.5)."""
    lex = lexicon()
    votes: Counter[str] = Counter()
    for w in tokens(text):
        for a in lex.get(w, ()):
            votes[a] += 1.0
    for t in tags:
        for w in tokens(t):
            for a in lex.get(w, ()):
                votes[a] += tag_weight
    low = " " + " ".join(tokens(text + " " + " ".join(tags))) + " "
    tagset = {t.lower() for t in tags}
    for label, cues in HAND_CUES.items():
        hits = sum(low.count(f" {c} ") for c in cues) + tag_weight * sum(c in tagset for c in cues)
        if hits:
            votes[label] += hits
    return dict(votes)


def polarity_of_votes(votes: dict[str, float]) -> str:
    pos, neg = votes.get("positive", 0.0), votes.get("negative", 0.0)
    if pos == neg:
        return "unknown"
    return "positive" if pos > neg else "negative"


def rule_emotion(votes: dict[str, float], *, neutral_below: float = 2.0) -> tuple[str, float]:
    """Map votes to one of the 13 labels and a confidence (normalised top score) [reconstruction, spec 1.5].

    Hand-listed labels score 3x their hits; Horror also gets min(fear, disgust)/2 and Love min(joy, trust)/2;
    Neutral wins when the total emotional evidence is below ``neutral_below`` or Neutral cues dominate.
    """
    scores = {e: 0.0 for e in EMOTIONS}
    for p in PLUTCHIK8:
        scores[p.capitalize()] = votes.get(p, 0.0)
    for label in ("Horror", "Love", "Pride", "Satisfaction", "Neutral"):
        scores[label] = 3.0 * votes.get(label, 0.0)
    scores["Horror"] += min(votes.get("fear", 0.0), votes.get("disgust", 0.0)) / 2
    scores["Love"] += min(votes.get("joy", 0.0), votes.get("trust", 0.0)) / 2
    total = sum(v for k, v in scores.items() if k != "Neutral")
    if total < neutral_below:
        return "Neutral", 1.0 if total == 0 else float(1 - total / neutral_below)
    label = max(EMOTIONS, key=lambda e: (scores[e], -EMOTIONS.index(e)))
    return label, float(scores[label] / (sum(scores.values()) or 1.0))


def temporal_hint(text: str) -> str:
    low = " ".join(tokens(text))
    for hint, phrases in TEMPORAL_PHRASES:
        if any(re.search(rf"\b{re.escape(p)}\b", low) for p in phrases):
            return hint
    return "none"


def rule_intent(query: str, video: VideoTimeline | None = None) -> dict:
    """The rule-based intent (spec 1.5) as a dict matching ``agents.Intent``."""
    words = content_words(query)
    vocab = video_vocabulary(video) if video is not None else set(words)
    audio = [w for w in words if w in AUDIO_WORDS]
    visual = [w for w in words if w in vocab and w not in AUDIO_WORDS]
    votes = lexicon_votes(query)
    emo, _ = rule_emotion(votes, neutral_below=1.0)
    return {"visual_cues": visual[:8], "audio_cues": audio[:4], "feeling": emo,
            "polarity": polarity_of_votes(votes), "temporal_hint": temporal_hint(query)}


def position_of(start: float, end: float, duration: float) -> str:
    c = (start + end) / 2 / max(duration, 1e-9)
    return "start" if c < 1 / 3 else ("end" if c > 2 / 3 else "middle")


@dataclass
class Candidate:
    """A candidate window: segment index range ``[first, last]`` (inclusive) and its mean score."""

    first: int
    last: int
    score: float

    def bounds(self, video: VideoTimeline) -> tuple[float, float]:
        return video.segments[self.first].start, video.segments[self.last].end


class Localizer:
    """Candidate localisation by retrieval over segment descriptions (spec 1.5)."""

    def __init__(self, encoder, *, audio_weight: float = 0.5, percentile: float = 80.0, top_k: int = 5,
                 max_segments: int = 8):
        self.encoder = encoder
        self.audio_weight = audio_weight
        self.percentile = percentile
        self.top_k = top_k
        self.max_segments = max_segments

    def segment_scores(self, video: VideoTimeline, query_text: str, audio_cues: Sequence[str] = ()) -> np.ndarray:
        seg_vecs = self.encoder.encode([s.text() for s in video.segments])
        q = self.encoder.encode([query_text])[0]
        scores = seg_vecs @ q
        if audio_cues:
            cues = {c.lower() for c in audio_cues}
            overlap = np.array([len(cues & set(tokens(" ".join(s.audio_tags)))) / len(cues) for s in video.segments])
            scores = scores + self.audio_weight * overlap
        return scores.astype(np.float64)

    @staticmethod
    def smooth(scores: np.ndarray) -> np.ndarray:
        padded = np.pad(scores, 1, mode="edge")
        return (padded[:-2] + padded[1:-1] + padded[2:]) / 3

    def candidates(self, scores: np.ndarray) -> list[Candidate]:
        """Maximal runs of the smoothed scores above the percentile, long runs split, top-K by mean score."""
        sm = self.smooth(scores)
        thr = np.percentile(sm, self.percentile)
        above = sm >= thr
        runs: list[Candidate] = []
        i = 0
        while i < len(sm):
            if not above[i]:
                i += 1
                continue
            j = i
            while j + 1 < len(sm) and above[j + 1]:
                j += 1
            for a in range(i, j + 1, self.max_segments):
                b = min(j, a + self.max_segments - 1)
                runs.append(Candidate(a, b, float(sm[a: b + 1].mean())))
            i = j + 1
        runs.sort(key=lambda c: (-c.score, c.first))
        return runs[: self.top_k]


def window_text(video: VideoTimeline, start: float, end: float) -> str:
    return " ".join(s.text() for s in video.window(start, end))


def verify_window(video: VideoTimeline, first: int, last: int, cues: Sequence[str], hint: str = "none",
                  *, min_coverage: float = 0.5) -> tuple[bool, float]:
    """(accepted, cue coverage): >= ``min_coverage`` of the cues occur in the window's text/tags and the
    temporal hint (start / middle / end third of the video) agrees. No cues: coverage 1."""
    segs = video.segments[first: last + 1]
    words = set(tokens(" ".join(s.text() for s in segs)))
    cues = [c.lower() for c in cues if c.strip()]
    coverage = float(np.mean([all(w in words for w in tokens(c)) for c in cues])) if cues else 1.0
    ok_time = hint in ("none", "") or position_of(segs[0].start, segs[-1].end, video.duration) == hint
    return coverage >= min_coverage and ok_time, coverage


def refine_window(scores: np.ndarray, first: int, last: int, *, ratio: float = 0.6, pad: int = 1) -> tuple[int, int]:
    """Contiguous segments around the window's best segment scoring >= ``ratio`` x its maximum, searched within
    the window widened by ``pad`` segments on each side (so a boundary can grow as well as shrink)."""
    lo, hi = max(0, first - pad), min(len(scores) - 1, last + pad)
    peak = lo + int(np.argmax(scores[lo: hi + 1]))
    bar = ratio * scores[peak] if scores[peak] > 0 else scores[peak]
    a = b = peak
    while a - 1 >= lo and scores[a - 1] >= bar:
        a -= 1
    while b + 1 <= hi and scores[b + 1] >= bar:
        b += 1
    return a, b


def evidence_text(video: VideoTimeline, first: int, last: int, *, max_chars: int = 600) -> str:
    """Compact evidence of a window for a prompt: captions, sounds, speech and cue tags (deduplicated)."""
    segs: list[Segment] = list(video.segments[first: last + 1])
    caps = list(dict.fromkeys(s.caption for s in segs))
    audio = list(dict.fromkeys(t for s in segs for t in s.audio_tags))
    speech = list(dict.fromkeys(s.transcript for s in segs if s.transcript))
    cues = list(dict.fromkeys(t for s in segs for t in s.affect_cues))
    text = (f"Seen: {'; '.join(caps)}. Heard: {', '.join(audio) or 'nothing'}. "
            f"Said: {' / '.join(repr(x) for x in speech) or 'nothing'}. Cues: {', '.join(cues) or 'none'}.")
    return text[:max_chars]


def short_evidence(video: VideoTimeline, first: int, last: int, *, max_items: int = 6) -> str:
    """The window's affect-cue tags and sounds in one line (``"Cues: a, b. Heard: c."``): the scored emotion
    prompt's evidence, short because a 135M model's choice degrades with prompt length."""
    segs = video.segments[first: last + 1]
    cues = list(dict.fromkeys(t for s in segs for t in s.affect_cues))[:max_items]
    audio = list(dict.fromkeys(t for s in segs for t in s.audio_tags))[:max_items]
    return f"Cues: {', '.join(cues) or 'none'}. Heard: {', '.join(audio) or 'nothing'}."


def rule_rationale(video: VideoTimeline, first: int, last: int, emotion: str) -> str:
    """Template rationale citing one visual phrase, one audio event and one transcript fragment of the window."""
    segs = video.segments[first: last + 1]
    caption = segs[len(segs) // 2].caption
    scene, _, action = caption.partition(": ")
    audio = next((t for s in segs for t in s.audio_tags), "")
    line = next((s.transcript for s in segs if s.transcript), "")
    parts = [f"At the {scene}, {action}" if action else f"{caption}"]
    if audio:
        parts.append(f"{audio} can be heard")
    if line:
        parts.append(f"someone says \"{line}\"")
    return "; ".join(parts[:1]) + (", " + " and ".join(parts[1:]) if len(parts) > 1 else "") + \
        f", which conveys {emotion.lower()}."


def polarity_agrees(emotion: str, expected: str) -> bool:
    """Cross-stage check: the label's polarity matches the intent's (unknown on either side always agrees)."""
    got = POLARITY.get(emotion, "unknown")
    return expected in ("unknown", "", "none") or got == "unknown" or got == expected

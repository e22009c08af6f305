"""VQAU-Bench + AffectSeek: affective-moment search in long videos under vague first-person queries
(arXiv 2605.05640; spec affect.md section 1; docs/methods/affectseek.md).

Ten-line use::

    from polymodal.affect.vqau import AffectSeek, RuleBasedLLM, evaluate, make_benchmark
    from polymodal.text import SentenceEncoder
    bench = make_benchmark(n_videos=4, seed=0)                 # or load_benchmark("folder/")
    seeker = AffectSeek(llm=RuleBasedLLM(), encoder=SentenceEncoder())   # or a polymodal.llm chat backend
    preds = [seeker.run(bench.videos[r.video_id], r.query) for r in bench.records]
    print(evaluate(preds, bench.records, bench.videos))
"""

from polymodal.affect.vqau.agents import (
    Intent,
    IntentLine,
    MemoBackend,
    RuleBasedLLM,
    can_score,
    score_options,
)
from polymodal.affect.vqau.baselines import OneStepLLM, RetrievalClassifier
from polymodal.affect.vqau.loader import load_benchmark, load_records, load_timelines, save_benchmark
from polymodal.affect.vqau.metrics import (
    bleu4,
    emotion_scores,
    evaluate,
    is_grounded,
    joint_at,
    rouge_l,
    tiou,
)
from polymodal.affect.vqau.pipeline import AffectSeek
from polymodal.affect.vqau.schema import (
    EMOTIONS,
    Segment,
    VideoTimeline,
    VQAUAnswer,
    VQAUBenchmark,
    VQAUPrediction,
    VQAURecord,
)
from polymodal.affect.vqau.synthetic import make_benchmark

__all__ = [
    "EMOTIONS",
    "AffectSeek",
    "Intent",
    "IntentLine",
    "MemoBackend",
    "OneStepLLM",
    "RetrievalClassifier",
    "RuleBasedLLM",
    "Segment",
    "VQAUAnswer",
    "VQAUBenchmark",
    "VQAUPrediction",
    "VQAURecord",
    "VideoTimeline",
    "bleu4",
    "can_score",
    "emotion_scores",
    "evaluate",
    "is_grounded",
    "joint_at",
    "load_benchmark",
    "load_records",
    "load_timelines",
    "make_benchmark",
    "rouge_l",
    "save_benchmark",
    "score_options",
    "tiou",
]

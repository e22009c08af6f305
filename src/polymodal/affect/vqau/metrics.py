"""VQAU metrics (spec affect.md 1.6). Only the names "Joint" and "Accuracy" are known from the paper [secondary];
every definition here is ours [reconstruction]:

- tIoU = overlap / union of the predicted and ground-truth windows; **R1@m** = share of queries whose (single,
  top-1) predicted window has tIoU >= m, m in {0.3, 0.5, 0.7}; **mIoU** = mean tIoU.
- **accuracy**, **macro_f1** over the 13 emotions (sklearn; macro over the labels present in gold or prediction).
- **Joint@m** = share of queries with tIoU >= m *and* the right emotion (Joint = Joint@0.5).
- **BLEU-4**: sacrebleu corpus BLEU (default 13a tokenisation, 0-100) of rationales vs the records' summaries;
  **ROUGE-L**: mean F-measure of rouge-score's LCS ROUGE-L with the Porter stemmer (no NLTK data needed), 0-1.
- **grounding** (evidence-grounding rate): share of rationales that cite at least one audio/affect cue tag of the
  video and cite *only* tags present in the predicted window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from polymodal.affect.vqau.schema import EMOTIONS, VideoTimeline, VQAUPrediction, VQAURecord
from polymodal.core.offline import MissingDependencyError

THRESHOLDS = (0.3, 0.5, 0.7)
_INSTALL = 'pip install "polymodal[affect]"  (sacrebleu==2.6.0, rouge-score==0.1.2)'


def tiou(pred: tuple[float, float], gold: tuple[float, float]) -> float:
    """Temporal IoU of two ``(start, end)`` windows; 0 for disjoint or touching windows."""
    (ps, pe), (gs, ge) = pred, gold
    if pe < ps or ge < gs:
        raise ValueError(f"windows must have end >= start, got {pred} and {gold}")
    inter = max(0.0, min(pe, ge) - max(ps, gs))
    union = max(pe, ge) - min(ps, gs)
    return float(inter / union) if union > 0 else 0.0


def recall_at_1(ious: Sequence[float], m: float) -> float:
    return float(np.mean(np.asarray(ious) >= m)) if len(ious) else 0.0


def joint_at(ious: Sequence[float], correct: Sequence[bool], m: float) -> float:
    """Share of queries with tIoU >= m and the right emotion."""
    if len(ious) != len(correct):
        raise ValueError(f"{len(ious)} IoUs vs {len(correct)} emotion results")
    return float(np.mean((np.asarray(ious) >= m) & np.asarray(correct, dtype=bool))) if len(ious) else 0.0


def emotion_scores(gold: Sequence[str], pred: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and weighted-F1 over the 13 labels (sklearn, ``zero_division=0``)."""
    from sklearn.metrics import f1_score

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels vs {len(pred)} predictions")
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0, "weighted_f1": 0.0}
    acc = float(np.mean([g == p for g, p in zip(gold, pred, strict=True)]))
    labels = [e for e in EMOTIONS if e in set(gold) | set(pred)]
    return {"accuracy": acc,
            "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0))}


def confusion(gold: Sequence[str], pred: Sequence[str]) -> np.ndarray:
    """13x13 counts, rows = gold, columns = prediction, in :data:`EMOTIONS` order."""
    idx = {e: i for i, e in enumerate(EMOTIONS)}
    m = np.zeros((len(EMOTIONS), len(EMOTIONS)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        m[idx[g], idx[p]] += 1
    return m


def _paired(hypotheses: Sequence[str], references: Sequence[str]) -> bool:
    """One reference per hypothesis (a ValueError otherwise); False when there is nothing to score."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses vs {len(references)} references")
    return bool(hypotheses)


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU-4 (0-100), one reference per hypothesis."""
    try:
        import sacrebleu
    except ImportError as e:
        raise MissingDependencyError(f"BLEU-4 needs sacrebleu: {_INSTALL}") from e
    if not _paired(hypotheses, references):
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure (rouge-score, Porter stemming), 0-1."""
    try:
        from rouge_score import rouge_scorer
    except ImportError as e:
        raise MissingDependencyError(f"ROUGE-L needs rouge-score: {_INSTALL}") from e
    if not _paired(hypotheses, references):
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references, strict=True)]))


def cited_cues(rationale: str, vocabulary: set[str]) -> set[str]:
    """The cue tags of ``vocabulary`` that ``rationale`` mentions (whole-word, case-insensitive)."""
    text = " " + re.sub(r"[^a-z0-9]+", " ", rationale.lower()) + " "
    return {c for c in vocabulary if f" {re.sub(r'[^a-z0-9]+', ' ', c).strip()} " in text}


def is_grounded(rationale: str, video: VideoTimeline, start: float, end: float) -> bool:
    """The rationale cites >= 1 cue tag of the video, and every cited tag occurs in ``[start, end)``."""
    cited = cited_cues(rationale, video.cue_vocabulary())
    return bool(cited) and cited <= video.window_cues(start, end)


def evaluate(preds: Sequence[VQAUPrediction], records: Sequence[VQAURecord],
             videos: Mapping[str, VideoTimeline] | None = None) -> dict[str, float]:
    """Every metric of the module docstring for ``preds[i]`` answering ``records[i]`` (grounding needs ``videos``)."""
    if len(preds) != len(records):
        raise ValueError(f"{len(preds)} predictions for {len(records)} records")
    ious = [tiou((p.start, p.end), (r.start, r.end)) for p, r in zip(preds, records, strict=True)]
    gold = [r.emotion for r in records]
    pred = [p.emotion for p in preds]
    correct = [g == p for g, p in zip(gold, pred, strict=True)]
    out: dict[str, float] = {f"r1@{m}": recall_at_1(ious, m) for m in THRESHOLDS}
    out["miou"] = float(np.mean(ious)) if ious else 0.0
    out.update(emotion_scores(gold, pred))
    out.update({f"joint@{m}": joint_at(ious, correct, m) for m in THRESHOLDS})
    hyps = [p.rationale for p in preds]
    refs = [r.summary for r in records]
    out["bleu4"] = bleu4(hyps, refs)
    out["rouge_l"] = rouge_l(hyps, refs)
    if videos is not None:
        out["grounding"] = float(np.mean([is_grounded(p.rationale, videos[r.video_id], p.start, p.end)
                                          for p, r in zip(preds, records, strict=True)])) if preds else 0.0
    return out

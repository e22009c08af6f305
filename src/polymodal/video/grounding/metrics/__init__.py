"""Video-grounding evaluation: the offline Moment-DETR metrics (:mod:`.moment_detr`), the OVG-HQ online metrics
with timeliness weights (:mod:`.online`), checked file reading (:mod:`.io`) and the CLI entry (:mod:`.cli`).

Ten lines::

    from polymodal.video.grounding.metrics import load_submission, eval_submission, evaluate, merge_reports
    preds, gts = load_submission("preds.jsonl", "highlight_val_release.jsonl", online=True)
    offline = eval_submission(preds, gts)            # Moment-DETR: MR-full-R1@0.5, MR-full-mAP, HL-min-*, ...
    online = evaluate(preds, gts, tolerances=(1, 3, 5))   # OVG-HQ: On-Avg-R1@0.5_pos, On-Avg-mAP@Avg_pos, ...
    report = merge_reports(offline, online)          # the reference file's layout
"""

from polymodal.video.grounding.metrics.io import load_ground_truth, load_predictions, load_submission
from polymodal.video.grounding.metrics.moment_detr import eval_submission, temporal_iou
from polymodal.video.grounding.metrics.online import evaluate, merge_reports, timeliness_weight

__all__ = ["eval_submission", "evaluate", "merge_reports", "timeliness_weight", "temporal_iou",
           "load_ground_truth", "load_predictions", "load_submission"]

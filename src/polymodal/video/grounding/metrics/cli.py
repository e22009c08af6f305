"""``polymodal eval moment-retrieval``: Moment-DETR metrics of a prediction file, and with ``--online`` the OVG-HQ
online metrics (spec ``video.md`` sections 3.5, 3.6). Prints the brief JSON; ``--out`` gets the full JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polymodal.video.grounding.metrics.io import load_submission, write_json
from polymodal.video.grounding.metrics.moment_detr import eval_submission
from polymodal.video.grounding.metrics.online import evaluate, merge_reports


def evaluate_files(pred: str | Path, gt: str | Path, online: bool = False) -> dict:
    """The full metrics dict of a prediction file against a GT file (both checked first).

    Offline: the Moment-DETR layout (``brief``, ``HL-min-*``, ``full``/``long``/``middle``/``short``). Online: the
    OVG-HQ reference layout, the file serving as both the offline and the online submission (``brief`` with
    ``OFF-*``, ``On-Avg-*``, ``On3-*`` and ``HL-*`` keys, ``HL-min-*``, ``full``).
    """
    preds, gts = load_submission(pred, gt, online=online)
    offline = eval_submission(preds, gts)
    if not online:
        return offline
    return merge_reports(offline, evaluate(preds, gts))


def run_moment_retrieval_eval(pred: str | Path, gt: str | Path, online: bool = False,
                              out: str | Path | None = None) -> int:
    """CLI body: print the brief as JSON on stdout, write the full metrics to ``out`` atomically; returns 0.

    Bad input raises :class:`~polymodal.core.errors.DataFormatError` (the CLI prints it and exits with 2).
    """
    result = evaluate_files(pred, gt, online=online)
    if out is not None:
        write_json(out, result)
    sys.stdout.write(json.dumps(result["brief"], indent=4) + "\n")
    return 0

"""OVG-HQ online video grounding (spec video.md section 3): the TTT-Linear memory, the unified model, the streaming
grounder, QVHighlights data and the offline / online moment-retrieval metrics."""

from polymodal.video.grounding.metrics import eval_submission, evaluate, merge_reports, timeliness_weight
from polymodal.video.grounding.model import OVGConfig, OVGHQUnify
from polymodal.video.grounding.stream import OnlineGrounder, StreamingGrounder
from polymodal.video.grounding.ttt import TTTLinear

__all__ = ["OVGConfig", "OVGHQUnify", "OnlineGrounder", "StreamingGrounder", "TTTLinear", "eval_submission",
           "evaluate", "merge_reports", "timeliness_weight"]

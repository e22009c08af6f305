"""``polymodal demo``: every paper's method against its baselines on embedded data, one report (issue 12).

``runner`` schedules the recipes (one child process each, ``child``), ``plan`` is the demo folder's plan and
statuses, ``report`` reads the results back, ``render`` writes ``report.md`` and the self-contained ``report.html``.
"""

from polymodal.demo.runner import DemoOutcome, run_demo, write_report

__all__ = ["DemoOutcome", "run_demo", "write_report"]

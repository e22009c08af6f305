"""Agent runtime shared by SensingAgents and AffectSeek: roles, pipelines with routing and bounded loops, traces."""

from polymodal.agents.pipeline import END, Pipeline, PipelineError, PipelineResult, StepContext
from polymodal.agents.roles import Role, RoleResult, render_template
from polymodal.agents.structured import StructuredOutputError, extract_json, parse_reply, schema_hint
from polymodal.agents.trace import Trace

__all__ = [
    "END",
    "Pipeline",
    "PipelineError",
    "PipelineResult",
    "Role",
    "RoleResult",
    "StepContext",
    "StructuredOutputError",
    "Trace",
    "extract_json",
    "parse_reply",
    "render_template",
    "schema_hint",
]

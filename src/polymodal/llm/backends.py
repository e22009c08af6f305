"""One chat protocol, several backends; `BackendConfig` + `make_backend` let recipes pick one from config.

- ``transformers``: local model (default SmolLM2-135M-Instruct), exposes log-probabilities — the reference.
- ``openai``: any OpenAI-compatible HTTP server (vLLM, llama.cpp server, Ollama): how runs scale.
- ``llama-cpp``: llama-cpp-python on a GGUF, when the user has installed it.
- ``scripted``: canned replies for unit tests (built in code, not from config).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from polymodal.core.errors import ConfigError
from polymodal.llm.chat import ChatBackend, ChatReply, Message, ScoringBackend
from polymodal.llm.openai_backend import OpenAICompatibleBackend
from polymodal.llm.scripted import ScriptedBackend, ScriptExhaustedError
from polymodal.llm.transformers_backend import TransformersBackend

__all__ = [
    "BackendConfig",
    "ChatBackend",
    "ChatReply",
    "Message",
    "OpenAICompatibleBackend",
    "ScoringBackend",
    "ScriptExhaustedError",
    "ScriptedBackend",
    "TransformersBackend",
    "make_backend",
]


class BackendConfig(BaseModel):
    """Which chat backend a recipe talks to. Embed it in a recipe config (e.g. ``--set llm.kind=openai``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["transformers", "openai", "llama-cpp"] = "transformers"
    model: str | None = Field(None, description="local model dir/.gguf (transformers, llama-cpp) or server model name")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key")
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0, le=20)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    n_ctx: int = Field(4096, ge=256, description="llama-cpp context window")
    n_threads: int | None = Field(None, ge=1, description="llama-cpp threads (None: all cores)")


def make_backend(config: BackendConfig | dict | None = None) -> ChatBackend:
    """Build the backend ``config`` describes (default: local transformers on SmolLM2)."""
    cfg = config if isinstance(config, BackendConfig) else BackendConfig(**(config or {}))
    if cfg.kind == "transformers":
        return TransformersBackend(name_or_path=cfg.model, dtype=cfg.dtype, device=cfg.device)
    if cfg.kind == "openai":
        if not cfg.base_url or not cfg.model:
            raise ConfigError("backend 'openai' needs fields 'base_url' and 'model' (the server's model name)")
        return OpenAICompatibleBackend(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env,
                                       timeout=cfg.timeout, max_retries=cfg.max_retries)
    from polymodal.llm.llamacpp_backend import LlamaCppBackend

    return LlamaCppBackend(cfg.model, n_ctx=cfg.n_ctx, n_threads=cfg.n_threads)

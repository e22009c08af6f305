"""Language-model engine: `load_causal_lm` (SmolLM2 bundled offline) and chat backends behind one protocol.

Method modules of the llm family (CCD, SparseCut, the gate_proj study) live beside these.
"""

from polymodal.llm.backends import (
    BackendConfig,
    ChatBackend,
    ChatReply,
    OpenAICompatibleBackend,
    ScoringBackend,
    ScriptedBackend,
    TransformersBackend,
    make_backend,
)
from polymodal.llm.errors import (
    BackendHTTPError,
    BackendTimeoutError,
    BackendUnreachableError,
    ContextTooLongError,
    LLMError,
    MalformedResponseError,
    ModelNotFoundError,
)
from polymodal.llm.loading import load_causal_lm, smollm2_gguf_path

__all__ = [
    "BackendConfig",
    "BackendHTTPError",
    "BackendTimeoutError",
    "BackendUnreachableError",
    "ChatBackend",
    "ChatReply",
    "ContextTooLongError",
    "LLMError",
    "MalformedResponseError",
    "ModelNotFoundError",
    "OpenAICompatibleBackend",
    "ScoringBackend",
    "ScriptedBackend",
    "TransformersBackend",
    "load_causal_lm",
    "make_backend",
    "smollm2_gguf_path",
]

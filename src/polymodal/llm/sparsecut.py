"""SparseCut: sparse shortcuts from several vision-encoder levels into a Llama-style decoder (spec section 2).

"Sparse Shortcuts: Facilitating Efficient Fusion in MLLMs" (arXiv 2602.00505, code ``DistriAI/SparseCut``, a
LLaVA-1.5 fork). What this module implements:

- :class:`MultiGrainedFusion` - the ``cross_mlp`` projector: every low-resolution patch token is concatenated with
  its 2x2 block of high-resolution tokens (5 x D) and mapped by a 2-layer MLP into the LLM width, so the visual
  token count stays that of the low-resolution view (36 -> 36 at our CPU scale). ``cross_attention`` (low-res
  tokens query the high-res ones) and ``none`` (LLaVA's ``mlp2x_gelu`` on the low-res tokens only) share the API.
- :func:`attach_shortcuts` - forward pre-hooks on the stock decoder layers that add level-k visual features to the
  hidden states of the visual-token span only, only in the prefill pass (incoming length > 1), as a plain residual
  add (no gate, no scale), exactly like the official ``customllama.py`` but without forking the modelling code.
- :class:`SparseCutMLLM` - the multimodal wrapper around any ``LlamaForCausalLM``-like model and any vision encoder
  returning per-block hidden states (``transformers.CLIPVisionModel``): main visual tokens from the penultimate
  encoder level spliced in at the image placeholder (LLaVA), plus the shortcuts; one projector shared by the main
  tokens and every level. ``fusion="none", shortcuts=False`` is the LLaVA-style projector-only baseline
  (:func:`llava_style`) with the identical token count.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.core.errors import ConfigError

FusionMode = Literal["cross_mlp", "cross_attention", "none"]
#: CLIP's pixel normalisation (OpenAI CLIP mean / std); applied by hand, no image processor needed
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------------------------- fusion
class MultiGrainedFusion(nn.Module):
    """Multi-grained feature fusion (official ``cross_mlp`` projector, aspect mode "hyres").

    ``forward(low, high)``: ``low`` (B, g*g, D) tokens of the low-resolution view, ``high`` (B, (2g)*(2g), D) tokens of
    the stitched 2x high-resolution view (row-major grid). Returns (B, g*g, out_dim): each low-res token with its
    2x2 high-res block folded in, so the token count is that of ``low``.

    ``mode="cross_mlp"``: concat [low, hr(2i,2j), hr(2i,2j+1), hr(2i+1,2j), hr(2i+1,2j+1)] (5D) -> Linear(5D, H) ->
    GELU -> Linear(H, H). ``mode="cross_attention"``: low tokens query the high-res tokens (multi-head attention,
    residual) -> LayerNorm -> FFN (residual) -> the same 2-layer MLP from D. ``mode="none"``: LLaVA's
    ``mlp2x_gelu`` on ``low`` alone (``high`` is ignored and may be None).
    """

    def __init__(self, vision_dim: int, out_dim: int, mode: FusionMode = "cross_mlp", hidden_dim: int | None = None,
                 num_heads: int = 4):
        super().__init__()
        if mode not in ("cross_mlp", "cross_attention", "none"):
            raise ConfigError(f"field 'fusion': {mode!r} is not one of cross_mlp, cross_attention, none")
        self.mode = mode
        self.vision_dim, self.out_dim = vision_dim, out_dim
        hidden = hidden_dim or out_dim
        in_dim = 5 * vision_dim if mode == "cross_mlp" else vision_dim
        if mode == "cross_attention":
            if vision_dim % num_heads:
                raise ConfigError(f"field 'num_heads': {num_heads} does not divide the vision width {vision_dim}")
            self.attn = nn.MultiheadAttention(vision_dim, num_heads, batch_first=True)
            self.norm1 = nn.LayerNorm(vision_dim)
            self.ffn = nn.Sequential(nn.Linear(vision_dim, 4 * vision_dim), nn.GELU(),
                                     nn.Linear(4 * vision_dim, vision_dim))
            self.norm2 = nn.LayerNorm(vision_dim)
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))

    @staticmethod
    def gather_blocks(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """(B, g*g, D), (B, 4*g*g, D) -> (B, g*g, 5*D): each low token followed by its 2x2 high-res block."""
        b, n, d = low.shape
        g = math.isqrt(n)
        if g * g != n or high.shape[1] != 4 * n or high.shape[0] != b or high.shape[2] != d:
            raise ValueError(f"fusion needs a square low-res grid and a 2x high-res grid; got low {tuple(low.shape)}, "
                             f"high {tuple(high.shape)}")
        hr = high.reshape(b, g, 2, g, 2, d).permute(0, 1, 3, 2, 4, 5).reshape(b, n, 4 * d)
        return torch.cat([low, hr], dim=-1)

    def forward(self, low: torch.Tensor, high: torch.Tensor | None = None) -> torch.Tensor:
        if self.mode == "none":
            return self.mlp(low)
        if high is None:
            raise ValueError(f"fusion {self.mode!r} needs the high-resolution tokens")
        if self.mode == "cross_mlp":
            return self.mlp(self.gather_blocks(low, high))
        x = self.norm1(low + self.attn(low, high, high, need_weights=False)[0])
        x = self.norm2(x + self.ffn(x))
        return self.mlp(x)


# ---------------------------------------------------------------------------------------------- shortcuts
def decoder_layers(llm: nn.Module) -> nn.ModuleList:
    """The decoder-layer list of a Llama-style model (``LlamaForCausalLM``, ``LlamaModel``, PEFT-wrapped)."""
    for path in ("model.layers", "layers", "base_model.model.model.layers", "model.model.layers",
                 "language_model.model.layers", "model.language_model.layers"):
        obj: Any = llm
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ConfigError(f"{type(llm).__name__} has no Llama-style decoder layer list (model.layers)")


def spaced_layers(n_levels: int, n_layers: int) -> tuple[int, ...]:
    """``n_levels`` LLM layers spaced evenly from layer 0: step ceil(n_layers / n_levels) when that fits, else the
    floor (30 layers, 8 levels -> 0, 4, ..., 28, spec 2.4)."""
    if n_levels < 1 or n_layers < 1:
        raise ConfigError(f"need at least one level and one layer, got {n_levels} levels, {n_layers} layers")
    step = math.ceil(n_layers / n_levels)
    if (n_levels - 1) * step > n_layers - 1:
        step = max(1, n_layers // n_levels)
    layers = tuple(i * step for i in range(n_levels))
    if layers[-1] >= n_layers:
        raise ConfigError(f"cannot place {n_levels} shortcuts into {n_layers} decoder layers")
    return layers


def level_layer_mapping(encoder_levels: Sequence[int], llm_layers: Sequence[int], *, n_llm_layers: int,
                        feature_order_reverse: bool = False,
                        skip_missing_layers: bool = False) -> dict[int, int]:
    """``{llm_layer: encoder_level}``: the k-th level goes into the k-th layer (shallow -> shallow, deep -> deep,
    official "dense2bottom"); ``feature_order_reverse`` flips the levels (deep -> shallow).

    Both sequences must be strictly increasing and of equal length. A layer that the LLM does not have raises a
    ConfigError naming ``llm_layers``, unless ``skip_missing_layers`` (the official code's silent behaviour: with a
    32-layer LLM its 40-layer list fires only 6 times) drops it."""
    levels, layers = list(encoder_levels), list(llm_layers)
    if len(levels) != len(layers):
        raise ConfigError(f"fields 'encoder_levels' and 'llm_layers' must have the same length, got {len(levels)} "
                          f"levels {levels} and {len(layers)} layers {layers}")
    for name, seq in (("encoder_levels", levels), ("llm_layers", layers)):
        if any(b <= a for a, b in zip(seq, seq[1:], strict=False)) or any(v < 0 for v in seq):
            raise ConfigError(f"field {name!r} must be non-negative and strictly increasing, got {seq}")
    if feature_order_reverse:
        levels = levels[::-1]
    missing = [ly for ly in layers if ly >= n_llm_layers]
    if missing and not skip_missing_layers:
        raise ConfigError(f"field 'llm_layers': layers {missing} do not exist (the LLM has {n_llm_layers} decoder "
                          f"layers, 0..{n_llm_layers - 1}); set skip_missing_layers=True to drop them silently as "
                          "the official code does")
    return {ly: lv for ly, lv in zip(layers, levels, strict=True) if ly < n_llm_layers}


class ShortcutInjector:
    """The features a forward pass injects: ``features[level]`` (B, N, H) and the visual-token mask (B, L).

    Set with :meth:`active` around a prefill; the hooks read it. ``fired`` counts injections per layer
    (tests check that cached decoding steps never inject)."""

    def __init__(self) -> None:
        self.features: dict[int, torch.Tensor] | None = None
        self.visual_mask: torch.Tensor | None = None
        self.fired: dict[int, int] = {}

    @contextmanager
    def active(self, features: dict[int, torch.Tensor], visual_mask: torch.Tensor) -> Iterator[None]:
        self.features, self.visual_mask = features, visual_mask
        try:
            yield
        finally:
            self.features, self.visual_mask = None, None

    def inject(self, layer: int, level: int, hidden: torch.Tensor) -> torch.Tensor:
        mask, feats = self.visual_mask, (self.features or {}).get(level)
        # prefill guard: cached decoding feeds one position at a time and must not revisit the visual span
        if feats is None or mask is None or hidden.shape[1] <= 1 or hidden.shape[:2] != mask.shape:
            return hidden
        delta = torch.zeros_like(hidden)
        delta[mask] = feats.reshape(-1, feats.shape[-1]).to(hidden.dtype)
        self.fired[layer] = self.fired.get(layer, 0) + 1
        return hidden + delta  # plain residual add; text positions get + 0 exactly


def attach_shortcuts(llm: nn.Module, mapping: dict[int, int], injector: ShortcutInjector, *,
                     skip_missing_layers: bool = False) -> list[torch.utils.hooks.RemovableHandle]:
    """Register a forward pre-hook on each decoder layer of ``mapping`` (``{llm_layer: encoder_level}``) that adds
    ``injector``'s level features to the visual span before the layer runs. Returns the handles (``.remove()``)."""
    layers = decoder_layers(llm)
    missing = [ly for ly in mapping if not 0 <= ly < len(layers)]
    if missing and not skip_missing_layers:
        raise ConfigError(f"field 'llm_layers': layers {sorted(missing)} do not exist (the LLM has {len(layers)} "
                          "decoder layers)")
    handles = []
    for ly, lv in sorted(mapping.items()):
        if ly in missing:
            continue

        def hook(module: nn.Module, args: tuple, kwargs: dict, _ly: int = ly, _lv: int = lv):
            if args:
                return (injector.inject(_ly, _lv, args[0]), *args[1:]), kwargs
            if "hidden_states" in kwargs:
                kwargs = {**kwargs, "hidden_states": injector.inject(_ly, _lv, kwargs["hidden_states"])}
            return args, kwargs

        handles.append(layers[ly].register_forward_pre_hook(hook, with_kwargs=True))
    return handles


# ---------------------------------------------------------------------------------------------- the model
def preprocess_images(images: torch.Tensor | Any, size: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) images (numpy or torch) or float (B, 3, H, W) in [0, 1] -> CLIP-normalised (B, 3, size,
    size) (bilinear, antialiased resize)."""
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = x.permute(0, 3, 1, 2).float() / 255.0
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, H, W, 3) uint8 or (B, 3, H, W) float, got {tuple(x.shape)}")
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class SparseCutMLLM(nn.Module):
    """A LLaVA-style multimodal LM with SparseCut's multi-grained fusion and sparse shortcuts.

    ``llm``: a ``LlamaForCausalLM``-like model (frozen or not; this wrapper never changes its weights).
    ``vision_encoder``: returns ``hidden_states`` per block with ``output_hidden_states=True`` and a CLS token first
    (``transformers.CLIPVisionModel``). ``encoder_levels``: 0-based block outputs routed as shortcuts (default: all
    blocks); ``llm_layers``: the decoder layers they are added before (default: evenly spaced from 0, for SmolLM2
    0, 4, ..., 28). ``main_level``: the block output spliced into the input sequence (default -2, the penultimate,
    LLaVA's ``mm_vision_select_layer``). ``fusion``: see :class:`MultiGrainedFusion`; ``shortcuts=False`` keeps
    the input path only. ``image_token_id``: the placeholder id in ``input_ids`` that becomes the visual tokens.

    Inputs are spliced per row and padded on the left (so the last position is each row's last real token).
    """

    def __init__(self, llm: nn.Module, vision_encoder: nn.Module, *, encoder_levels: Sequence[int] | None = None,
                 llm_layers: Sequence[int] | None = None, fusion: FusionMode = "cross_mlp", shortcuts: bool = True,
                 feature_order_reverse: bool = False, skip_missing_layers: bool = False, main_level: int = -2,
                 image_token_id: int = -200, projector_hidden: int | None = None, fusion_heads: int = 4):
        super().__init__()
        self.llm = llm
        self.vision_encoder = vision_encoder
        vcfg = vision_encoder.config
        self.image_size = int(vcfg.image_size)
        self.n_blocks = int(vcfg.num_hidden_layers)
        self.grid = self.image_size // int(vcfg.patch_size)
        self.n_visual_tokens = self.grid * self.grid
        hidden = int(llm.config.hidden_size)
        self.fusion_mode = fusion
        self.projector = MultiGrainedFusion(int(vcfg.hidden_size), hidden, fusion, projector_hidden, fusion_heads)
        if not -self.n_blocks <= main_level < self.n_blocks:
            raise ConfigError(f"field 'main_level': {main_level} is not a block of the {self.n_blocks}-block encoder")
        self.main_level = main_level % self.n_blocks
        self.image_token_id = image_token_id
        self.shortcuts = shortcuts
        self.feature_order_reverse = feature_order_reverse
        n_llm = len(decoder_layers(llm))
        levels = tuple(range(self.n_blocks)) if encoder_levels is None else tuple(int(v) for v in encoder_levels)
        bad = [v for v in levels if not 0 <= v < self.n_blocks]
        if bad:
            raise ConfigError(f"field 'encoder_levels': {bad} are not blocks of the {self.n_blocks}-block encoder")
        layers = spaced_layers(len(levels), n_llm) if llm_layers is None else tuple(int(v) for v in llm_layers)
        self.encoder_levels, self.llm_layers = levels, layers
        self.mapping = level_layer_mapping(levels, layers, n_llm_layers=n_llm,
                                           feature_order_reverse=feature_order_reverse,
                                           skip_missing_layers=skip_missing_layers) if shortcuts else {}
        self.injector = ShortcutInjector()
        self._handles = attach_shortcuts(llm, self.mapping, self.injector) if shortcuts else []
        #: set to a callable ``level -> bool`` in tests/ablations to zero chosen shortcut features
        self.zero_shortcuts = False

    # ------------------------------------------------------------------ pieces
    def remove_hooks(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Vision encoder + projector (the LLM stays frozen in our recipe)."""
        return [*self.vision_encoder.parameters(), *self.projector.parameters()]

    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.vision_encoder(pixel_values=pixels, output_hidden_states=True)
        return tuple(h[:, 1:] for h in out.hidden_states[1:])  # block outputs, CLS dropped

    def visual_features(self, images: Any) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """``(main tokens (B, N, H), {level: shortcut tokens (B, N, H)})`` through the one shared projector."""
        device = next(self.projector.parameters()).device
        low_px = preprocess_images(images, self.image_size).to(device)
        b = low_px.shape[0]
        needed = sorted({self.main_level, *(self.mapping.values())})
        if self.fusion_mode == "none":
            low = self._encode(low_px)
            high = None
        else:
            # 2x view cut into 4 crops (TL, TR, BL, BR) encoded with the low view in one batch, then stitched
            hi_px = preprocess_images(images, 2 * self.image_size).to(device)
            s = self.image_size
            crops = torch.stack([hi_px[:, :, :s, :s], hi_px[:, :, :s, s:], hi_px[:, :, s:, :s], hi_px[:, :, s:, s:]], 1)
            hs = self._encode(torch.cat([low_px, crops.reshape(4 * b, 3, s, s)]))
            low = tuple(h[:b] for h in hs)
            g = self.grid
            high = tuple(h[b:].reshape(b, 2, 2, g, g, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, 4 * g * g, -1)
                         for h in hs)
        feats = {lv: self.projector(low[lv], None if high is None else high[lv]) for lv in needed}
        main = feats[self.main_level]
        short = {lv: feats[lv] for lv in self.mapping.values()}
        if self.zero_shortcuts:
            short = {lv: torch.zeros_like(f) for lv, f in short.items()}
        return main, short

    def splice(self, main: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Replace each row's single image placeholder by its N visual tokens; left-pad the rows.

        Returns ``inputs_embeds``, ``attention_mask``, ``position_ids``, ``visual_mask`` (B, L) and ``labels``
        (-100 on visual tokens and padding) when given."""
        emb = self.llm.get_input_embeddings()
        b, n = main.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        rows = []
        for i in range(b):
            ids = input_ids[i][attention_mask[i].bool()]
            pos = (ids == self.image_token_id).nonzero().flatten()
            if len(pos) != 1:
                raise ValueError(f"row {i}: expected exactly one image token ({self.image_token_id}), found {len(pos)}")
            p = int(pos)
            lab = None
            if labels is not None:
                lab_row = labels[i][attention_mask[i].bool()]
                lab = torch.cat([lab_row[:p], lab_row.new_full((n,), -100), lab_row[p + 1:]])
            text = emb(ids.clamp_min(0))
            rows.append((torch.cat([text[:p], main[i].to(text.dtype), text[p + 1:]]),
                         torch.cat([torch.zeros(p, dtype=torch.bool), torch.ones(n, dtype=torch.bool),
                                    torch.zeros(len(ids) - p - 1, dtype=torch.bool)]).to(ids.device), lab))
        length = max(r[0].shape[0] for r in rows)
        out_e, out_m, out_v, out_l = [], [], [], []
        for e, v, lab in rows:
            pad = length - e.shape[0]
            out_e.append(torch.cat([e.new_zeros(pad, e.shape[1]), e]))
            out_m.append(torch.cat([torch.zeros(pad, dtype=torch.long), torch.ones(e.shape[0], dtype=torch.long)]))
            out_v.append(torch.cat([torch.zeros(pad, dtype=torch.bool, device=v.device), v]))
            if lab is not None:
                out_l.append(torch.cat([lab.new_full((pad,), -100), lab]))
        mask = torch.stack(out_m).to(main.device)
        res = {"inputs_embeds": torch.stack(out_e), "attention_mask": mask,
               "position_ids": (mask.cumsum(1) - 1).clamp_min(0), "visual_mask": torch.stack(out_v)}
        if labels is not None:
            res["labels"] = torch.stack(out_l)
        return res

    @contextmanager
    def _inject(self, short: dict[int, torch.Tensor], visual_mask: torch.Tensor) -> Iterator[None]:
        if not self.mapping:
            yield
            return
        with self.injector.active(short, visual_mask):
            yield

    # ------------------------------------------------------------------ forward / generate
    def forward(self, images: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, logits_positions: torch.Tensor | None = None,
                output_hidden_states: bool = False) -> dict[str, Any]:
        """One prefill. ``logits_positions`` (B, k) restricts the LM head to those positions of the spliced
        sequence (cheap training on answer tokens); ``labels`` give the shifted token cross-entropy ``loss``."""
        main, short = self.visual_features(images)
        sp = self.splice(main, input_ids, attention_mask, labels)
        with self._inject(short, sp["visual_mask"]):
            out = self.llm.model(inputs_embeds=sp["inputs_embeds"], attention_mask=sp["attention_mask"],
                                 position_ids=sp["position_ids"], use_cache=False,
                                 output_hidden_states=output_hidden_states)
        h = out.last_hidden_state
        res: dict[str, Any] = {"visual_mask": sp["visual_mask"], "attention_mask": sp["attention_mask"]}
        if output_hidden_states:
            res["hidden_states"] = out.hidden_states
        if logits_positions is not None:
            idx = logits_positions.unsqueeze(-1).expand(-1, -1, h.shape[-1])
            res["logits"] = self.llm.lm_head(torch.gather(h, 1, idx))
        else:
            res["logits"] = self.llm.lm_head(h)
        if labels is not None and logits_positions is None:
            lab = sp["labels"]
            res["loss"] = F.cross_entropy(res["logits"][:, :-1].flatten(0, 1).float(), lab[:, 1:].flatten(),
                                          ignore_index=-100)
        return res

    @torch.no_grad()
    def generate(self, images: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                 **gen_kwargs: Any) -> torch.Tensor:
        """``llm.generate`` on the spliced embeddings; shortcuts act in the prefill only (the guard in the hooks),
        cached decoding steps see the injected keys/values of the visual span. Returns the new token ids."""
        main, short = self.visual_features(images)
        sp = self.splice(main, input_ids, attention_mask)
        with self._inject(short, sp["visual_mask"]):
            return self.llm.generate(inputs_embeds=sp["inputs_embeds"], attention_mask=sp["attention_mask"],
                                     **gen_kwargs)

    def parameter_counts(self) -> dict[str, int]:
        return {"vision_params": sum(p.numel() for p in self.vision_encoder.parameters()),
                "projector_params": sum(p.numel() for p in self.projector.parameters()),
                "llm_params": sum(p.numel() for p in self.llm.parameters())}


def llava_style(llm: nn.Module, vision_encoder: nn.Module, **kwargs: Any) -> SparseCutMLLM:
    """The LLaVA-1.5-style baseline: penultimate-level tokens through ``mlp2x_gelu``, no fusion, no shortcuts; the
    same number of visual tokens as SparseCut."""
    return SparseCutMLLM(llm, vision_encoder, fusion="none", shortcuts=False, **kwargs)


def small_clip_vision(image_size: int = 96, patch_size: int = 16, hidden_size: int = 192, num_layers: int = 8,
                      num_heads: int = 4, intermediate_size: int | None = None, seed: int | None = None) -> nn.Module:
    """A random-init ``transformers.CLIPVisionModel`` from a small config (spec 2.4: 8 blocks, width 192, 96 px,
    patch 16 -> 36 tokens). No pretrained vision weights exist offline."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size,
                           num_hidden_layers=num_layers, num_attention_heads=num_heads,
                           intermediate_size=intermediate_size or 4 * hidden_size)
    if seed is not None:
        torch.manual_seed(seed)
    return CLIPVisionModel(cfg)

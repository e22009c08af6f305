"""OVG-HQ-Unify: the online grounding model (spec ``video.md`` section 3.3).

Pipeline per decision (one decision per 2-s clip, sliding window of ``window`` = 16 clips advanced by 1):

1. **Query encoding**: a 2-layer MLP projection per modality (text tokens, image feature, segment clips) plus a
   learned modality token; the hybrid query is ``[segment tokens] ++ [text tokens]`` (each with its modality token).
2. **Fusion**: ``fusion_layers`` query->video cross-attention layers (each clip token attends only to the query
   tokens, then an FFN). No temporal mixing, hence causal; fused clips are computed once per clip and reused by every
   window that holds them.
3. **PMB #1**: ``memory_blocks`` blocks ``x <- x + Mixer(RMSNorm(x)); x <- x + SwiGLU(RMSNorm(x))`` over the stream of
   windows (each window's 16 tokens + a learned position-in-window embedding); the default mixer is
   :class:`~polymodal.video.grounding.ttt.TTTLinear` with one mini-batch = one window, its inner weights carried
   from window to window. Baselines: ``memory="lstm"`` (an LSTM cell over window summaries, carried),
   ``"attention"`` (causal self-attention inside the window, nothing carried), ``"none"`` (no PMB).
4. **Decoder**: a ``decoder_layers``-layer DETR decoder with one query per anchor (lengths 1/2/4/8 clips, query
   positions initialised from the anchors' centre/width in the window), a class head (background/foreground logits)
   and a span head (offset, log-length; see :mod:`~polymodal.video.grounding.anchors`).
5. **PMB #2** (``refine=True``): per anchor ``[2 logits + 2 span values]`` projected to the width, concatenated with
   the anchor's decoder feature and fused back to the width, one single-head TTT layer with mini-batch = the anchors
   of one window, projected to 4 values added to the initial predictions (zero-initialised, so training starts
   from the unrefined output) [reconstruction of the residual].

``OVGHQUnify.forward_windows`` runs windows with an explicit carried :class:`MemoryState`; ``forward`` runs a
left-padded clip sequence (training sequences, the full causal pass); the streaming API is in
:mod:`~polymodal.video.grounding.stream`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.video.grounding.anchors import ANCHOR_LENGTHS
from polymodal.video.grounding.ttt import TTTLinear, TTTState

QUERY_MODALITIES = ("text", "image", "segment")
MODALITIES = ("text", "image", "segment", "hybrid")
MEMORIES = ("ttt", "lstm", "attention", "none")


@dataclass
class OVGConfig:
    """Model hyper-parameters. Paper/official defaults: width 256, 8 heads, FFN 1024, query MLP hidden 256, input
    dropout 0.5, dropout 0.1; our CPU default is width 128, 4 heads (``ffn_mult`` 2)."""

    input_dim: int = 512
    width: int = 128
    heads: int = 4
    query_hidden: int = 256
    fusion_layers: int = 2
    decoder_layers: int = 2
    ffn_mult: int = 2
    window: int = 16
    anchor_lengths: tuple[int, ...] = ANCHOR_LENGTHS
    memory: str = "ttt"
    memory_blocks: int = 2
    refine: bool = True
    ttt_base_lr: float = 1.0
    dropout: float = 0.1
    input_dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.memory not in MEMORIES:
            raise ValueError(f"memory must be one of {', '.join(MEMORIES)}, got {self.memory!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")
        if max(self.anchor_lengths) > self.window:
            raise ValueError(f"anchor lengths {self.anchor_lengths} must fit in the window ({self.window} clips)")
        self.anchor_lengths = tuple(int(x) for x in self.anchor_lengths)


@dataclass
class MemoryState:
    """Everything carried from one window to the next: one entry per PMB #1 block (``TTTState``, LSTM ``(h, c)`` or
    None) and the PMB #2 TTT state."""

    blocks: list[Any] = field(default_factory=list)
    refine: TTTState | None = None

    def detach(self) -> MemoryState:
        def d(s: Any) -> Any:
            if s is None:
                return None
            if isinstance(s, TTTState):
                return s.detach()
            return tuple(x.detach() for x in s)

        return MemoryState([d(s) for s in self.blocks], d(self.refine))


# ------------------------------------------------------------------------------------------------- building blocks
class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class LSTMMixer(nn.Module):
    """Baseline memory: an LSTM cell over window summaries (masked mean of the window's tokens), its ``(h, c)``
    carried across windows; every token of the window reads ``Linear([x_i ; h_t])``."""

    def __init__(self, width: int):
        super().__init__()
        self.cell = nn.LSTMCell(width, width)
        self.out = nn.Linear(2 * width, width)

    def init_state(self, batch: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = ref.new_zeros(batch, self.cell.hidden_size)
        return z, z

    def forward(self, x: torch.Tensor, state: Any, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        B, S, W, D = x.shape
        m = mask.to(x.dtype)[..., None]
        summary = (x * m).sum(2) / m.sum(2).clamp_min(1.0)  # (B, S, D)
        h, c = state if state is not None else self.init_state(B, x)
        hs = []
        for s in range(S):
            h, c = self.cell(summary[:, s], (h, c))
            hs.append(h)
        H = torch.stack(hs, 1)[:, :, None].expand(B, S, W, D)
        return self.out(torch.cat([x, H], -1)), (h, c)


class WindowAttentionMixer(nn.Module):
    """Baseline memory: causal multi-head self-attention inside each window (padding keys masked), nothing carried."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor, state: Any, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        B, S, W, D = x.shape
        q, k, v = self.qkv(x).view(B * S, W, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        eye = torch.eye(W, dtype=torch.bool, device=x.device)
        allowed = torch.ones(W, W, dtype=torch.bool, device=x.device).tril() & (
            mask.reshape(B * S, 1, W) | eye)  # padding rows still see themselves: never an empty softmax
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.out(y.transpose(1, 2).reshape(B, S, W, D)), None


class TTTMixer(nn.Module):
    """PMB mixer: TTT-Linear over the concatenated windows, one mini-batch = one window."""

    def __init__(self, width: int, heads: int, window: int, base_lr: float):
        super().__init__()
        self.ttt = TTTLinear(width, heads, mini_batch=window, base_lr=base_lr)

    def forward(self, x: torch.Tensor, state: Any, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        B, S, W, D = x.shape
        y, state = self.ttt(x.reshape(B, S * W, D), state, mask.reshape(B, S * W))
        return y.view(B, S, W, D), state


class MemoryBlock(nn.Module):
    """``x <- x + Mixer(RMSNorm(x)); x <- x + SwiGLU(RMSNorm(x))`` over windows (B, S, W, D)."""

    def __init__(self, cfg: OVGConfig):
        super().__init__()
        D = cfg.width
        self.norm1, self.norm2 = nn.RMSNorm(D), nn.RMSNorm(D)
        if cfg.memory == "ttt":
            self.mixer: nn.Module = TTTMixer(D, cfg.heads, cfg.window, cfg.ttt_base_lr)
        elif cfg.memory == "lstm":
            self.mixer = LSTMMixer(D)
        else:
            self.mixer = WindowAttentionMixer(D, cfg.heads)
        self.ffn = SwiGLU(D, cfg.ffn_mult * D)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, state: Any, mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.norm1(x), state, mask)
        x = x + self.drop(y)
        return x + self.drop(self.ffn(self.norm2(x))), state


class FusionLayer(nn.Module):
    """QD-DETR-style query->video cross-attention: each clip token attends to the query tokens only, then FFN."""

    def __init__(self, cfg: OVGConfig):
        super().__init__()
        D = cfg.width
        self.attn = nn.MultiheadAttention(D, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.ffn = nn.Sequential(nn.Linear(D, cfg.ffn_mult * D), nn.ReLU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_mult * D, D))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, v: torch.Tensor, q: torch.Tensor, q_pad: torch.Tensor) -> torch.Tensor:
        a, _ = self.attn(v, q, q, key_padding_mask=q_pad, need_weights=False)
        v = self.norm1(v + self.drop(a))
        return self.norm2(v + self.drop(self.ffn(v)))


class DecoderLayer(nn.Module):
    """DETR decoder layer (post-norm): self-attention over the anchor queries, cross-attention to the window."""

    def __init__(self, cfg: OVGConfig):
        super().__init__()
        D = cfg.width
        self.self_attn = nn.MultiheadAttention(D, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(D, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)
        self.ffn = nn.Sequential(nn.Linear(D, cfg.ffn_mult * D), nn.ReLU(), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.ffn_mult * D, D))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, tgt: torch.Tensor, qpos: torch.Tensor, mem: torch.Tensor, mpos: torch.Tensor,
                mem_pad: torch.Tensor) -> torch.Tensor:
        x = tgt + qpos
        a, _ = self.self_attn(x, x, tgt, need_weights=False)
        tgt = self.norm1(tgt + self.drop(a))
        a, _ = self.cross_attn(tgt + qpos, mem + mpos, mem, key_padding_mask=mem_pad, need_weights=False)
        tgt = self.norm2(tgt + self.drop(a))
        return self.norm3(tgt + self.drop(self.ffn(tgt)))


def sinusoid(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of scalars ``x`` (...,) in [0, 1] -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    ang = 2 * math.pi * x[..., None].float() * freqs * 10
    return torch.cat([ang.sin(), ang.cos()], -1)


# ------------------------------------------------------------------------------------------------- the model
class OVGHQUnify(nn.Module):
    """The unified online grounder (all query modalities in one model). See the module docstring.

    Typical use: ``q = model.encode_query(queries, "text")`` once per query; ``model.forward(video, clip_mask, q)``
    for a whole (left-padded) clip sequence, or ``model.fuse`` + ``model.forward_windows`` with a carried
    ``MemoryState`` for streaming."""

    def __init__(self, cfg: OVGConfig | None = None, **overrides: Any):
        super().__init__()
        cfg = cfg or OVGConfig(**overrides)
        self.cfg = cfg
        D, Din, A = cfg.width, cfg.input_dim, len(cfg.anchor_lengths)
        self.video_proj = nn.Sequential(nn.LayerNorm(Din), nn.Dropout(cfg.input_dropout), nn.Linear(Din, D))
        self.query_proj = nn.ModuleDict({
            m: nn.Sequential(nn.LayerNorm(Din), nn.Dropout(cfg.input_dropout), nn.Linear(Din, cfg.query_hidden),
                             nn.ReLU(), nn.Linear(cfg.query_hidden, D)) for m in QUERY_MODALITIES})
        self.modality_token = nn.ParameterDict({m: nn.Parameter(torch.randn(D) * 0.02) for m in QUERY_MODALITIES})
        self.fusion = nn.ModuleList(FusionLayer(cfg) for _ in range(cfg.fusion_layers))
        self.window_pos = nn.Parameter(torch.randn(cfg.window, D) * 0.02)
        n_blocks = 0 if cfg.memory == "none" else cfg.memory_blocks
        self.memory = nn.ModuleList(MemoryBlock(cfg) for _ in range(n_blocks))
        self.memory_norm = nn.RMSNorm(D) if n_blocks else nn.Identity()
        # anchor queries: positions initialised from each anchor's centre and width inside the window
        lengths = torch.tensor(cfg.anchor_lengths, dtype=torch.float32)
        centre = 1.0 - lengths / (2 * cfg.window)
        width = lengths / cfg.window
        init = torch.cat([sinusoid(centre, D // 2), sinusoid(width, D - D // 2)], -1)
        self.anchor_pos = nn.Parameter(init * 0.1)
        self.anchor_content = nn.Parameter(torch.zeros(A, D))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.decoder_layers))
        self.class_head = nn.Linear(D, 2)
        self.span_head = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, 2))
        if cfg.refine:
            self.refine_in = nn.Linear(4, D)
            self.refine_fuse = nn.Linear(2 * D, D)
            self.refine_ttt = TTTLinear(D, heads=1, mini_batch=A, base_lr=cfg.ttt_base_lr)
            self.refine_out = nn.Linear(D, 4)
            nn.init.zeros_(self.refine_out.weight)
            nn.init.zeros_(self.refine_out.bias)

    # ----------------------------------------------------------------------------------------- query and fusion
    def encode_query(self, queries: dict[str, torch.Tensor], modality: str,
                     masks: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Query tokens ``(B, Lq, D)`` and their padding mask ``(B, Lq)`` (True = padding) for ``modality`` in
        text/image/segment/hybrid. ``queries[m]`` is (B, L_m, input_dim); ``masks[m]`` (B, L_m) True for real tokens
        (all real when absent)."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
        parts = ("segment", "text") if modality == "hybrid" else (modality,)
        toks, pads = [], []
        for m in parts:
            if m not in queries:
                raise KeyError(f"query modality {m!r} missing (have {sorted(queries)})")
            x = queries[m]
            toks.append(self.query_proj[m](x) + self.modality_token[m])
            real = (masks or {}).get(m)
            pads.append(~real if real is not None else torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device))
        return torch.cat(toks, 1), torch.cat(pads, 1)

    def fuse(self, video: torch.Tensor, query: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Fused clip tokens (B, N, D) from clip features (B, N, input_dim): per clip, no temporal mixing."""
        q, q_pad = query
        v = self.video_proj(video)
        for layer in self.fusion:
            v = layer(v, q, q_pad)
        return v

    # ----------------------------------------------------------------------------------------- windows
    def init_state(self, batch: int) -> MemoryState:
        blocks: list[Any] = []
        for blk in self.memory:
            mixer = blk.mixer
            blocks.append(mixer.ttt.init_state(batch) if isinstance(mixer, TTTMixer) else None)
        return MemoryState(blocks, self.refine_ttt.init_state(batch) if self.cfg.refine else None)

    def forward_windows(self, windows: torch.Tensor, mask: torch.Tensor, state: MemoryState | None = None
                        ) -> tuple[dict[str, Any], MemoryState]:
        """Run ``S`` consecutive windows: ``windows`` (B, S, W, D) fused clip tokens (oldest first), ``mask``
        (B, S, W) True for real clips. Returns the outputs (each (B, S, A, ...)): ``logits`` (bg, fg), ``spans``
        (offset, log-length), the pre-refinement ``init_logits``/``init_spans``, ``features`` (one (B, S, A, D) per
        decoder layer), and the state after the last window."""
        B, S, W, D = windows.shape
        if state is None:
            state = self.init_state(B)
        x = windows + self.window_pos
        new_blocks = []
        for blk, st in zip(self.memory, state.blocks, strict=True):
            x, st = blk(x, st, mask)
            new_blocks.append(st)
        x = self.memory_norm(x)
        A = len(self.cfg.anchor_lengths)
        mem = x.reshape(B * S, W, D)
        pad = ~mask.reshape(B * S, W).clone()
        pad[:, -1] = False  # the current clip is always real: never an all-masked softmax (padded batch tails)
        mpos = self.window_pos.expand(B * S, W, D)
        qpos = self.anchor_pos.expand(B * S, A, D)
        tgt = self.anchor_content.expand(B * S, A, D)
        feats = []
        for layer in self.decoder:
            tgt = layer(tgt, qpos, mem, mpos, pad)
            feats.append(tgt.view(B, S, A, D))
        logits = self.class_head(tgt).view(B, S, A, 2)
        spans = self.span_head(tgt).view(B, S, A, 2)
        out = {"logits": logits, "spans": spans, "init_logits": logits, "init_spans": spans, "features": feats}
        refine_state = state.refine
        if self.cfg.refine:
            pred = torch.cat([logits, spans], -1)  # (B, S, A, 4)
            h = self.refine_fuse(torch.cat([self.refine_in(pred), feats[-1]], -1))
            h, refine_state = self.refine_ttt(h.reshape(B, S * A, D), refine_state)
            delta = self.refine_out(h).view(B, S, A, 4)
            out["logits"] = logits + delta[..., :2]
            out["spans"] = spans + delta[..., 2:]
        return out, MemoryState(new_blocks, refine_state)

    def forward(self, video: torch.Tensor, clip_mask: torch.Tensor, query: tuple[torch.Tensor, torch.Tensor],
                state: MemoryState | None = None) -> tuple[dict[str, Any], MemoryState]:
        """A left-padded clip sequence ``video`` (B, W - 1 + S, input_dim) with ``clip_mask`` (B, W - 1 + S): the
        ``S`` windows ending at positions ``W-1 .. W-2+S`` (the first ``W - 1`` positions are context/padding)."""
        W = self.cfg.window
        fused = self.fuse(video, query)
        S = fused.shape[1] - (W - 1)
        if S < 1:
            raise ValueError(f"need at least {W} positions (window {W}), got {fused.shape[1]}")
        idx = torch.arange(S, device=fused.device)[:, None] + torch.arange(W, device=fused.device)  # (S, W)
        return self.forward_windows(fused[:, idx], clip_mask[:, idx], state)

    def fg_prob(self, logits: torch.Tensor) -> torch.Tensor:
        """Foreground probability from (bg, fg) logits."""
        return torch.softmax(logits, -1)[..., 1]

"""MGHFT: multi-granularity hierarchical fusion transformer for sticker emotion (ACM MM 2025, spec 2.4).

Pieces, each usable alone: :func:`info_nce` and :func:`structure_loss` (item 6), :func:`lift_attention`,
:func:`local_reattention` and :func:`selection_counts` (LRA, item 3), :func:`attend_repeated` (why local text injection
is an addition, item 4), :func:`global_text_fusion` (item 7), :class:`TGFA` (item 9) and the full :class:`MGHFT`.
Baselines of the recipe: :class:`PVTLateFusion` (PVT CLS ++ view embeddings -> linear) and :class:`TextOnly`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from polymodal.affect.stickers.pvt import PVT, StageOutput
from polymodal.affect.stickers.views import MissingViewsError


# ---------------------------------------------------------------------------------------------- losses (item 6)
def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """CLIP-style symmetric InfoNCE between L2-normalised ``a`` and ``b`` ``(B, D)``; positives on the diagonal."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def structure_loss(visual: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """KL(P_t || P_v), sum reduction, where P_x are the row softmaxes (temperature 1) of the intra-batch similarity
    matrices (1 + cos) / 2 of each side."""
    v, t = F.normalize(visual, dim=-1), F.normalize(text, dim=-1)
    log_pv = F.log_softmax((1 + v @ v.T) / 2, dim=-1)
    log_pt = F.log_softmax((1 + t @ t.T) / 2, dim=-1)
    return F.kl_div(log_pv, log_pt, reduction="sum", log_target=True)


# ---------------------------------------------------------------------------------------------- LRA (item 3)
def selection_counts(heads: Sequence[int], sr_ratios: Sequence[int], alpha: int = 8,
                     has_cls: Sequence[bool] | None = None) -> list[int]:
    """Tokens Local Re-Attention selects per stage: heads * alpha * sr^2 (0 for a stage without CLS)."""
    has_cls = has_cls or [True] * len(heads)
    return [h * alpha * sr * sr if c else 0 for h, sr, c in zip(heads, sr_ratios, has_cls, strict=True)]


def lift_attention(attn: torch.Tensor, hw: tuple[int, int], sr: int) -> torch.Tensor:
    """Lift an SRA map ``(B, h, N+1, M+1)`` (keys: M reduced tokens then CLS) to ``(B, h, N+1, N+1)`` with CLS first
    on both axes, spreading each reduced token's weight uniformly over its sr x sr cell [reconstruction]."""
    b, h, nq, _ = attn.shape
    gh, gw = hw
    cls_col = attn[..., -1:]
    red = attn[..., :-1].reshape(b, h, nq, gh // sr, gw // sr)
    if sr > 1:
        red = red.repeat_interleave(sr, dim=-2).repeat_interleave(sr, dim=-1) / (sr * sr)
    return torch.cat([cls_col, red.reshape(b, h, nq, gh * gw)], dim=-1)


def local_reattention(stage: StageOutput, alpha: int = 8) -> torch.Tensor:
    """Indices ``(B, heads * k)`` of the selected tokens, k = alpha * sr^2 per head: roll out the stage's lifted
    attention maps (later blocks on the left), take the CLS row and keep each head's top-k spatial tokens."""
    if stage.cls is None:
        raise ValueError("local re-attention needs a stage with a CLS token")
    rollout = None
    for a in stage.attentions:
        lifted = lift_attention(a.float(), stage.hw, stage.sr)
        rollout = lifted if rollout is None else lifted @ rollout
    scores = rollout[:, :, 0, 1:]  # (B, h, N)
    k = alpha * stage.sr * stage.sr
    n = scores.shape[-1]
    if k > n:
        raise ValueError(f"stage with {n} tokens cannot select k = alpha*sr^2 = {k} per head; use a larger image "
                         f"(>= 96 px for alpha 8) or a smaller alpha")
    return scores.topk(k, dim=-1).indices.flatten(1)


def attend_repeated(queries: torch.Tensor, vector: torch.Tensor, k: int | None = None, scale: float | None = None
                    ) -> torch.Tensor:
    """Softmax attention of ``queries (B, K, C)`` over ``vector (B, C)`` repeated K times: every weight is 1/K, so
    the output is the vector itself for every query (why MGHFT's local text injection is an addition)."""
    k = k or queries.shape[1]
    keys = vector[:, None, :].expand(-1, k, -1)
    s = (queries @ keys.transpose(1, 2)) * (scale if scale is not None else queries.shape[-1] ** -0.5)
    return s.softmax(-1) @ keys


def global_text_fusion(globals_: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
    """G <- G + softmax(G T^T) T (no projections, no scaling; item 7)."""
    return globals_ + torch.softmax(globals_ @ views.transpose(1, 2), dim=-1) @ views


# ---------------------------------------------------------------------------------------------- TGFA (item 9)
class TGFA(nn.Module):
    """Text-Guided Fusion Attention (``FuseBlock``): pre-norm two-hop attention, visual query -> text summary ->
    query over the visual keys -> visual values; output projection + residual, MLP + residual; returns token 0."""

    def __init__(self, in_dim: int, dim: int = 192, heads: int = 4, mlp: int = 768, n_visual: int = 996,
                 dropout: float = 0.1):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion_dim {dim} is not divisible by fusion_heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.v_in, self.t_in = nn.Linear(in_dim, dim), nn.Linear(in_dim, dim)
        self.pos = nn.Parameter(torch.randn(1, n_visual, dim) * 0.02)
        self.norm_v, self.norm_t, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q1, self.k1, self.v1 = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.k2, self.v2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp, dim))
        self.drop = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, visual: torch.Tensor, text: torch.Tensor, return_tokens: bool = False) -> torch.Tensor:
        """``(B, Nv, in_dim)``, ``(B, Nt, in_dim)`` -> token 0 ``(B, dim)`` (all tokens with ``return_tokens``).

        Only token 0 is returned, and every step but the attention over keys is per token, so by default only
        query 0 is computed (exactly the same output, ~1000x less attention work than all 996 queries)."""
        if visual.shape[1] != self.pos.shape[1]:
            raise ValueError(f"TGFA got {visual.shape[1]} visual tokens, its positional table has {self.pos.shape[1]}")
        v = self.v_in(visual) + self.pos
        t = self.t_in(text)
        vn, tn = self.norm_v(v), self.norm_t(t)
        q_in = vn if return_tokens else vn[:, :1]
        p = self.dropout if self.training else 0.0
        summary = F.scaled_dot_product_attention(self._split(self.q1(q_in)), self._split(self.k1(tn)),
                                                 self._split(self.v1(tn)), dropout_p=p)
        out = F.scaled_dot_product_attention(summary, self._split(self.k2(vn)), self._split(self.v2(vn)), dropout_p=p)
        b, nq = q_in.shape[:2]
        out = out.transpose(1, 2).reshape(b, nq, -1)
        x = (v if return_tokens else v[:, :1]) + self.drop(self.proj(out))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x if return_tokens else x[:, 0]


def _mlp(i: int, o: int) -> nn.Module:
    """Two-layer MLP with the smaller width as hidden size (the CPU budget; the released code's widths differ)."""
    h = min(i, o)
    return nn.Sequential(nn.Linear(i, h), nn.GELU(), nn.Linear(h, o))


# ---------------------------------------------------------------------------------------------- the model
class MGHFT(nn.Module):
    """MGHFT (spec 2.4): ``MGHFT(7)(images, views)`` -> dict with ``logits`` and ``contrastive`` (summed per-stage
    InfoNCE + ``structure_weight`` x structure loss); :meth:`loss` adds label-smoothed CE.

    ``views``: ``(B, 4, text_dim)`` view embeddings (frozen MiniLM), or ``(B, 4, L)`` hashed ids when
    ``text_encoder`` (a trainable module such as ``HashingBagEncoder``) is given. ``fusion="mean"`` replaces TGFA by
    mean pooling (ablation); ``use_contrastive=False`` drops the contrastive terms (ablation).
    ``replicate_stage4_text_quirk=True`` makes the 4th local text token reuse stage 3's (the released code).
    ``text_norm=True`` (default) LayerNorms the view embeddings before ``l_proj``: MiniLM's are L2-normalised (norm
    1, components ~0.05) where the paper's BERT mean-pooled hidden states have norms ~10-15, so without it the text
    vectors enter ~10x weaker than the architecture assumes [reconstruction]; ``False`` gives the raw scale.
    """

    def __init__(self, n_classes: int, img_size: int = 96, dims: Sequence[int] = (32, 64, 160, 256),
                 heads: Sequence[int] = (1, 2, 5, 8), depths: Sequence[int] = (1, 1, 2, 1),
                 sr_ratios: Sequence[int] = (8, 4, 2, 1), mlp_ratios: Sequence[float] = (8, 8, 4, 4), alpha: int = 8,
                 text_dim: int = 384, embed_dim: int = 512, fusion_dim: int = 192, fusion_heads: int = 4,
                 fusion_mlp: int = 768, locals: Sequence[int] = (1, 1, 1, 0), drop_path: float = 0.1,
                 dropout: float = 0.1, temperature: float = 0.07, structure_weight: float = 30.0,
                 contrastive_weight: float = 0.5, label_smoothing: float = 0.2, use_contrastive: bool = True,
                 fusion: str = "tgfa", replicate_stage4_text_quirk: bool = False,
                 text_encoder: nn.Module | None = None, text_norm: bool = True):
        super().__init__()
        if len(dims) != 4:
            raise ValueError("MGHFT has four stages (one per view); dims needs 4 entries")
        if fusion not in ("tgfa", "mean"):
            raise ValueError(f"fusion must be 'tgfa' or 'mean', got {fusion!r}")
        self.backbone = PVT(None, img_size, dims=dims, heads=heads, mlp_ratios=mlp_ratios, depths=depths,
                            sr_ratios=sr_ratios, locals=locals, drop_path=drop_path)
        if not all(self.backbone.has_cls):
            raise ValueError("MGHFT needs a CLS token in every stage (locals = (1, 1, 1, *))")
        self.alpha = alpha
        self.counts = selection_counts(heads, sr_ratios, alpha)
        for i, (k, g) in enumerate(zip(self.counts, self.backbone.grids, strict=True)):
            if k // heads[i] > g * g:
                raise ValueError(f"stage {i + 1} has {g * g} tokens < k = alpha*sr^2 = {k // heads[i]}; "
                                 f"image size {img_size} is too small for alpha {alpha} (>= 96 px for alpha 8)")
        self.n_visual = 4 + sum(self.counts)  # 4 global + selected local tokens (996 by default)
        self.text_encoder = text_encoder
        self.text_norm = nn.LayerNorm(text_dim) if text_norm else nn.Identity()
        self.l_proj = nn.Linear(text_dim, embed_dim)
        self.text_mlps = nn.ModuleList(_mlp(embed_dim, c) for c in dims)
        self.token_proj = nn.ModuleList(_mlp(c, embed_dim) if i < 3 or c != embed_dim else nn.Identity()
                                        for i, c in enumerate(dims))
        self.global_proj = nn.ModuleList(nn.Linear(c, embed_dim) if i < 3 or c != embed_dim else nn.Identity()
                                         for i, c in enumerate(dims))
        self.visual_norm = nn.LayerNorm(embed_dim)
        self.fusion = fusion
        self.tgfa = TGFA(embed_dim, fusion_dim, fusion_heads, fusion_mlp, self.n_visual, dropout)
        self.head = nn.Linear(fusion_dim, n_classes)
        self.temperature, self.structure_weight = temperature, structure_weight
        self.contrastive_weight, self.label_smoothing = contrastive_weight, label_smoothing
        self.use_contrastive = use_contrastive
        self.replicate_stage4_text_quirk = replicate_stage4_text_quirk

    def encode_text(self, views: torch.Tensor) -> torch.Tensor:
        """View vectors t_1..t_4 ``(B, 4, embed_dim)``."""
        if self.text_encoder is not None:
            views = self.text_encoder(views)
        return self.l_proj(self.text_norm(views.float()))

    def forward(self, images: torch.Tensor, views: torch.Tensor | None = None, return_parts: bool = False) -> dict:
        if views is None:
            raise MissingViewsError("MGHFT needs the four view texts at inference too (spec 2.4): pass views "
                                    "(e.g. ViewFeaturizer().featurize(descriptions)); use a multi-view interpreter "
                                    "to write descriptions for stickers that have none")
        if views.shape[0] != images.shape[0] or views.shape[1] != 4:
            raise MissingViewsError(f"views must be (B={images.shape[0]}, 4, ...), got {tuple(views.shape)}")
        t = self.encode_text(views)
        stages = self.backbone.forward_stages(images)
        local_tokens, local_text, globals_ = [], [], []
        for i, st in enumerate(stages):
            idx = local_reattention(st, self.alpha)
            sel = st.tokens.gather(1, idx[..., None].expand(-1, -1, st.tokens.shape[-1]))
            p = self.text_mlps[i](t[:, i])
            # attention over one text vector repeated K times is uniform: it adds that vector (see attend_repeated)
            local_tokens.append(self.token_proj[i](sel + p[:, None, :]))
            local_text.append(self.token_proj[i](p))
            globals_.append(self.global_proj[i](st.cls))
        if self.replicate_stage4_text_quirk:
            local_text[3] = local_text[2]
        g = torch.stack(globals_, 1)
        contrastive = g.new_zeros(())
        if self.use_contrastive:
            for i in range(4):
                contrastive = contrastive + info_nce(g[:, i], t[:, i], self.temperature) \
                    + self.structure_weight * structure_loss(g[:, i], t[:, i])
        g = global_text_fusion(g.flip(1), t)  # stage 4 first
        visual = self.visual_norm(torch.cat([g, *local_tokens], dim=1))
        text = torch.cat([t, torch.stack(local_text, 1)], dim=1)
        if self.fusion == "tgfa":
            fused = self.tgfa(visual, text)
        else:
            fused = self.tgfa.v_in(visual).mean(1)
        out = {"logits": self.head(fused), "contrastive": contrastive}
        if return_parts:
            out.update(visual_tokens=visual, text_tokens=text, local_text=torch.stack(local_text, 1),
                       selected=[x.shape[1] for x in local_tokens])
        return out

    def fusion_parameters(self) -> list[nn.Parameter]:
        """Every parameter outside the PVT backbone (text branch, projections, TGFA, head)."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]

    def loss(self, out: dict, labels: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(out["logits"], labels, label_smoothing=self.label_smoothing)
        return ce + self.contrastive_weight * out["contrastive"]


# ---------------------------------------------------------------------------------------------- baselines
class PVTLateFusion(nn.Module):
    """Baseline: the same PVT's last CLS concatenated with the four view embeddings -> LayerNorm -> Linear.
    ``use_visual=False`` gives the text-only baseline (view embeddings + linear head)."""

    def __init__(self, n_classes: int, backbone: PVT | None, text_dim: int = 384, n_views: int = 4,
                 text_encoder: nn.Module | None = None, label_smoothing: float = 0.2):
        super().__init__()
        self.backbone, self.text_encoder = backbone, text_encoder
        d = (backbone.out_dim if backbone is not None else 0) + n_views * text_dim
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_classes)
        self.label_smoothing = label_smoothing

    def forward(self, images: torch.Tensor | None, views: torch.Tensor | None) -> dict:
        if views is None:
            raise MissingViewsError("this model needs the four view texts (views=None given)")
        v = self.text_encoder(views) if self.text_encoder is not None else views.float()
        parts = [v.flatten(1)]
        if self.backbone is not None:
            parts.insert(0, self.backbone.features(images))
        return {"logits": self.head(self.norm(torch.cat(parts, 1)))}

    def loss(self, out: dict, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out["logits"], labels, label_smoothing=self.label_smoothing)


class TextOnly(PVTLateFusion):
    """Baseline: view embeddings (MiniLM) + a linear head, no image."""

    def __init__(self, n_classes: int, text_dim: int = 384, n_views: int = 4, text_encoder: nn.Module | None = None,
                 label_smoothing: float = 0.2):
        super().__init__(n_classes, None, text_dim, n_views, text_encoder, label_smoothing)

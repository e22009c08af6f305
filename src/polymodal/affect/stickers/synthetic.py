"""Seeded synthetic stickers with four-view descriptions: the MGHFT recipe's embedded data (spec 2.6) [reconstruction].

Each sticker is a drawn cartoon character (Pillow) whose **mouth curve, eyebrows and eyes** (expression),
**arm pose** (gesture), **colour palette** and outline carry one of seven emotions (SER30K's believed label set:
anger, disgust, fear, happiness, neutral, sadness, surprise). Per-sample variation: position, size, expression
intensity, outline width, background pattern, pixel noise, and each cue (expression, gesture, palette) drawn from a
random other class with probability ``cue_noise`` so pixels alone are not a perfect signal.

The description has the four headed sections of spec 2.3 (intention, style, main role, gesture). Its emotion words
come from the NRC emotion lexicon read in place from the installed ``nrclex`` package (never copied here). The
text describes the sticker's true emotion with probability ``1 - text_noise`` and a random other emotion otherwise
(default 30 % label noise in the text), so neither modality alone is perfect; the style section describes the
colours actually drawn.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from polymodal.affect.stickers.views import join_views

#: SER30K's 7 classes (names believed to be Ekman-6 + neutral [unverified]); index = ``anno - 1``
SER30K_CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
#: our class -> the NRC lexicon affect whose words describe it (neutral uses flat words absent from the lexicon)
NRC_AFFECT = {"anger": "anger", "disgust": "disgust", "fear": "fear", "happiness": "joy", "sadness": "sadness",
              "surprise": "surprise"}
#: palette hue per class (HSV hue in [0, 1]; neutral is desaturated)
HUE = {"anger": 0.0, "disgust": 0.30, "fear": 0.76, "happiness": 0.14, "neutral": 0.55, "sadness": 0.61,
       "surprise": 0.07}
COLOUR_NAME = [(0.04, "red"), (0.1, "orange"), (0.19, "yellow"), (0.45, "green"), (0.53, "teal"), (0.7, "blue"),
               (0.85, "purple"), (0.95, "pink"), (1.01, "red")]
EXPRESSION_TEXT = {
    "anger": ("brows pulled down into a sharp V", "a tight, downturned mouth"),
    "disgust": ("one brow raised and the other lowered", "a crooked mouth pulled to one side"),
    "fear": ("brows raised and drawn together", "a trembling, wavy mouth"),
    "happiness": ("softly arched brows and closed smiling eyes", "a wide upturned smile"),
    "neutral": ("level brows", "a straight, flat mouth"),
    "sadness": ("brows slanting up in the middle", "a drooping frown"),
    "surprise": ("brows raised high over wide eyes", "a round open mouth"),
}
GESTURE_TEXT = {
    "anger": "plants both fists on the hips with elbows out",
    "disgust": "pushes one hand away while the other hangs down",
    "fear": "crosses both arms tightly in front of the body",
    "happiness": "throws both arms up in the air",
    "neutral": "lets both arms rest loosely at the sides",
    "sadness": "lets both arms hang limply down",
    "surprise": "raises both hands to the cheeks",
}
ROLES = ("round blob", "little cat", "cartoon bear", "tiny ghost", "bean-shaped buddy", "chubby bird", "potato kid")
STYLES = ("flat vector", "hand-drawn", "chibi", "comic", "pastel doodle", "bold cartoon")
INTENTION_TEMPLATES = (
    "The sender wants to show {a} and {b}; the sticker reads as a {c} reply in the chat.",
    "It conveys {a}, a sense of {b} and {c} toward the other person.",
    "Sent to express {a}; the mood is {b}, even {c}.",
    "A reaction sticker full of {a} and {b}, used when feeling {c}.",
)


@dataclass
class StickerDataset:
    """Stickers as ``uint8`` images ``(N, 3, H, W)``, integer labels, one description text each (may be ``None``
    for a dataset without descriptions), and the class names. ``meta`` holds per-sample extras (file, topic,
    the emotion the synthetic text describes)."""

    images: torch.Tensor
    labels: np.ndarray
    texts: list[str | None]
    class_names: tuple[str, ...]
    meta: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> StickerDataset:
        idx = np.asarray(idx, dtype=np.int64)
        return StickerDataset(self.images[torch.as_tensor(idx)], self.labels[idx], [self.texts[i] for i in idx],
                              self.class_names, [self.meta[i] for i in idx] if self.meta else [])

    @property
    def has_texts(self) -> bool:
        return all(t is not None for t in self.texts)

    def float_images(self, idx=None) -> torch.Tensor:
        """Images as float in [0, 1] (optionally a subset ``idx``)."""
        x = self.images if idx is None else self.images[torch.as_tensor(np.asarray(idx))]
        return x.float() / 255.0


def colour_name(hue: float, sat: float) -> str:
    if sat < 0.25:
        return "grey"
    return next(name for edge, name in COLOUR_NAME if hue < edge)


def emotion_words(class_names: tuple[str, ...] = SER30K_CLASSES) -> dict[str, list[str]]:
    """Words per class: NRC lexicon words associated with exactly one of Plutchik's 8 emotions (that class's),
    single words only; neutral gets our emotionally flat words absent from the lexicon."""
    from polymodal.llm.affect_tasks import NEUTRAL_WORDS, PLUTCHIK8, load_nrc_lexicon

    lexicon = load_nrc_lexicon()
    out: dict[str, list[str]] = {c: [] for c in class_names}
    by_affect = {v: k for k, v in NRC_AFFECT.items() if k in out}
    for w, affects in sorted(lexicon.items()):
        emo = [a for a in affects if a in PLUTCHIK8]
        if len(emo) == 1 and emo[0] in by_affect and w.isalpha():
            out[by_affect[emo[0]]].append(w)
    if "neutral" in out:
        out["neutral"] = [w for w in NEUTRAL_WORDS if w not in lexicon]
    return out


# ---------------------------------------------------------------------------------------------- drawing
def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0), 1), min(max(v, 0), 1))
    return int(255 * r), int(255 * g), int(255 * b)


def _mouth_points(kind: str, cx: float, cy: float, w: float, h: float, t: float) -> list[tuple[float, float]]:
    u = np.linspace(-1, 1, 15)
    if kind == "happiness":
        y = cy + t * h * (1 - u ** 2)
    elif kind in ("sadness", "anger"):
        y = cy - (t if kind == "sadness" else 0.5 * t) * h * (1 - u ** 2)
        if kind == "anger":
            u = u * 0.6
    elif kind == "disgust":
        y = cy + t * 0.8 * h * u + 0.3 * h * t * (1 - u ** 2)
    elif kind == "fear":
        y = cy + 0.35 * h * t * np.sin(3 * np.pi * u)
    else:  # neutral
        y = cy + 0 * u
    return list(zip((cx + w * u).tolist(), y.tolist(), strict=True))


def _draw_sticker(rng: np.random.Generator, size: int, expr: str, gesture: str, hue: float, neutral_palette: bool
                  ) -> tuple[Image.Image, dict]:
    s = 2 * size  # draw at 2x, downsample (anti-aliasing)
    sat = rng.uniform(0.05, 0.2) if neutral_palette else rng.uniform(0.5, 0.9)
    hue = (hue + rng.normal(0, 0.03)) % 1.0
    bg_hue = rng.uniform(0, 1)
    img = Image.new("RGB", (s, s), _hsv(bg_hue, rng.uniform(0.05, 0.25), rng.uniform(0.85, 1.0)))
    d = ImageDraw.Draw(img)
    pattern = rng.choice(["plain", "dots", "stripes"])
    pat_col = _hsv(bg_hue, 0.3, 0.8)
    if pattern == "dots":
        for _ in range(int(rng.integers(6, 16))):
            x, y, rr = rng.uniform(0, s), rng.uniform(0, s), rng.uniform(2, 6)
            d.ellipse([x - rr, y - rr, x + rr, y + rr], fill=pat_col)
    elif pattern == "stripes":
        step = int(rng.integers(14, 28))
        for k in range(-s, s, step):
            d.line([(k, 0), (k + s, s)], fill=pat_col, width=3)
    outline_w = int(rng.integers(2, 6))
    ink = (25, 25, 25)
    r = s * rng.uniform(0.17, 0.22)
    cx = s / 2 + rng.uniform(-0.08, 0.08) * s
    cy = s * 0.36 + rng.uniform(-0.05, 0.05) * s
    body = _hsv(hue, sat, rng.uniform(0.75, 0.95))
    t = rng.uniform(0.45, 1.0)  # expression intensity
    # body
    d.ellipse([cx - 0.75 * r, cy + 0.7 * r, cx + 0.75 * r, cy + 2.3 * r], fill=body, outline=ink, width=outline_w)
    # arms (shoulder -> [elbow ->] hand), per gesture, in units of r relative to the head centre
    arms = {
        "happiness": [[(1.6, -0.7)], [(-1.6, -0.7)]],
        "surprise": [[(1.4, 0.9), (1.0, 0.15)], [(-1.4, 0.9), (-1.0, 0.15)]],
        "anger": [[(1.55, 1.5), (0.75, 1.95)], [(-1.55, 1.5), (-0.75, 1.95)]],
        "sadness": [[(0.95, 2.6)], [(-0.95, 2.6)]],
        "fear": [[(-0.35, 1.45)], [(0.35, 1.35)]],
        "disgust": [[(2.0, 0.9)], [(-0.95, 2.55)]],
        "neutral": [[(1.35, 2.3)], [(-1.35, 2.3)]],
    }[gesture]
    for side, path in zip((1, -1), arms, strict=True):
        pts = [(cx + side * 0.6 * r, cy + 1.1 * r)] + [(cx + px * r, cy + py * r) for px, py in path]
        pts = [(x + rng.normal(0, 0.04 * r), y + rng.normal(0, 0.04 * r)) for x, y in pts]
        d.line(pts, fill=ink, width=outline_w + 2, joint="curve")
        hx, hy = pts[-1]
        hr = 0.16 * r
        d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body, outline=ink, width=max(1, outline_w - 1))
    # head
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=body, outline=ink, width=outline_w)
    # eyes
    ey = cy - 0.12 * r
    for side in (1, -1):
        ex = cx + side * 0.38 * r
        if expr == "happiness":
            d.arc([ex - 0.14 * r, ey - 0.1 * r, ex + 0.14 * r, ey + 0.14 * r], 200, 340, fill=ink, width=outline_w)
        elif expr == "anger":
            d.ellipse([ex - 0.12 * r, ey - 0.04 * r, ex + 0.12 * r, ey + 0.06 * r], fill=ink)
        else:
            er = 0.14 * r if expr in ("surprise", "fear") else 0.085 * r
            d.ellipse([ex - er, ey - er, ex + er, ey + er], fill=(255, 255, 255), outline=ink, width=2)
            d.ellipse([ex - 0.05 * r, ey - 0.05 * r, ex + 0.05 * r, ey + 0.05 * r], fill=ink)
    # eyebrows: (inner dy, outer dy, raise) in units of r; positive dy = lower
    inner, outer, lift = {
        "anger": (0.16, -0.1, 0.0), "sadness": (-0.14, 0.08, 0.0), "fear": (-0.12, 0.04, -0.08),
        "surprise": (0.0, 0.0, -0.16), "happiness": (-0.03, -0.03, -0.06), "neutral": (0.0, 0.0, 0.0),
        "disgust": (0.0, 0.0, 0.0),
    }[expr]
    for side in (1, -1):
        bx, by = cx + side * 0.38 * r, cy - 0.38 * r + lift * r * t
        i_dy, o_dy = inner * t, outer * t
        if expr == "disgust":
            i_dy = o_dy = (-0.12 if side == 1 else 0.1) * t
        d.line([(bx - side * 0.18 * r, by + i_dy * r), (bx + side * 0.2 * r, by + o_dy * r)], fill=ink,
               width=outline_w + 1)
    # mouth
    my, mw, mh = cy + 0.45 * r, 0.32 * r, 0.22 * r
    if expr == "surprise":
        mr = (0.1 + 0.08 * t) * r
        d.ellipse([cx - 0.8 * mr, my - mr, cx + 0.8 * mr, my + mr], fill=(120, 20, 30), outline=ink, width=2)
    else:
        d.line(_mouth_points(expr, cx, my, mw, mh, t), fill=ink, width=outline_w + 1, joint="curve")
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    style = {"palette": colour_name(hue, sat), "outline": "thick" if outline_w >= 4 else "thin",
             "background": {"plain": "plain", "dots": "dotted", "stripes": "striped"}[str(pattern)]}
    return img, style


def _description(rng: np.random.Generator, emo: str, style: dict, words: dict[str, list[str]]) -> str:
    pool = words[emo]
    a, b, c = (pool[i] for i in rng.choice(len(pool), 3, replace=len(pool) < 3))
    brows, mouth = EXPRESSION_TEXT[emo]
    intention = INTENTION_TEMPLATES[int(rng.integers(len(INTENTION_TEMPLATES)))].format(a=a, b=b, c=c)
    style_txt = (f"A {STYLES[int(rng.integers(len(STYLES)))]} sticker with {style['outline']} dark outlines, "
                 f"{style['palette']} colours and a {style['background']} background.")
    role = f"A {ROLES[int(rng.integers(len(ROLES)))]} with {brows} and {mouth}."
    gesture = f"The character {GESTURE_TEXT[emo]}, looking {pool[int(rng.integers(len(pool)))]}."
    return join_views([intention, style_txt, role, gesture])


def make_synthetic(n: int = 1400, classes: int = 7, size: int = 96, seed: int = 0, *, text_noise: float = 0.3,
                   cue_noise: float = 0.25, pixel_noise: float = 0.03) -> StickerDataset:
    """``n`` seeded synthetic stickers of the first ``classes`` of :data:`SER30K_CLASSES` with descriptions.

    ``text_noise``: probability that the description describes a random other emotion; ``cue_noise``: probability
    that each visual cue (expression, gesture, palette) is drawn from a random other class; ``pixel_noise``: std of
    the additive Gaussian pixel noise (images in [0, 1]).
    """
    if not 2 <= classes <= len(SER30K_CLASSES):
        raise ValueError(f"classes must be in 2..{len(SER30K_CLASSES)}, got {classes}")
    if n < classes:
        raise ValueError(f"n must be >= classes ({classes}), got {n}")
    names = SER30K_CLASSES[:classes]
    words = emotion_words(names)
    rng = np.random.default_rng([seed, 0x571C])
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, n - classes)])
    rng.shuffle(labels)

    def other(y: int) -> int:
        return int((y + rng.integers(1, classes)) % classes)

    images = np.empty((n, size, size, 3), dtype=np.uint8)
    texts, meta = [], []
    for i, y in enumerate(labels.tolist()):
        expr = names[other(y) if rng.random() < cue_noise else y]
        gesture = names[other(y) if rng.random() < cue_noise else y]
        pal = names[other(y) if rng.random() < cue_noise else y]
        img, style = _draw_sticker(rng, size, expr, gesture, HUE[pal], pal == "neutral")
        arr = np.asarray(img, dtype=np.float32) / 255.0
        arr = arr * rng.uniform(0.85, 1.1) + rng.normal(0, pixel_noise, arr.shape)
        images[i] = np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8)
        text_label = other(y) if rng.random() < text_noise else y
        texts.append(_description(rng, names[text_label], style, words))
        meta.append({"text_label": text_label, "expression": expr, "gesture": gesture, "palette": pal})
    return StickerDataset(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels.astype(np.int64), texts,
                          names, meta)

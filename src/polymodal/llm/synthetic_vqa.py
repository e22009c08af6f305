"""Synthetic visual question answering for SparseCut (spec 2.4): coloured shapes rendered with Pillow.

Each image (192 x 192 px by default, a 3 x 3 grid of cells) holds 1-3 shapes (circle, square, triangle) of distinct
kinds in distinct cells, each in one of four colours. Half of the shapes carry a small white dot at their centre
(a fine-detail attribute: 4 px at 192 px, a faint 2 px blur at the 96 px low-resolution view). One question per
image, one-word answer, four question types in turn:

- ``colour``   "What colour is the square?"            -> red | green | blue | yellow
- ``position`` "Which column is the square in?"        -> left | middle | right
- ``count``    "How many shapes are there?"            -> one | two | three
- ``detail``   "Does the square have a dot?"           -> yes | no

:func:`load_vqa_jsonl` reads a user's data in the same shape (JSONL: ``image`` path, ``question``, ``answer``,
optional ``type``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymodal.core.errors import DataFormatError

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
COLUMNS = ("left", "middle", "right")
COUNTS = ("one", "two", "three")
QUESTION_TYPES = ("colour", "position", "count", "detail")
ANSWERS = {"colour": tuple(COLOURS), "position": COLUMNS, "count": COUNTS, "detail": ("yes", "no")}


@dataclass
class VQADataset:
    """``images`` uint8 (n, S, S, 3); parallel lists of questions, one-word answers and question types."""

    images: np.ndarray
    questions: list[str]
    answers: list[str]
    qtypes: list[str]
    answer_set: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.answer_set:
            self.answer_set = tuple(dict.fromkeys(self.answers))

    def __len__(self) -> int:
        return len(self.questions)

    def subset(self, idx: np.ndarray | list[int]) -> VQADataset:
        idx = np.asarray(idx, dtype=np.int64)
        return VQADataset(self.images[idx], [self.questions[i] for i in idx], [self.answers[i] for i in idx],
                          [self.qtypes[i] for i in idx], self.answer_set)


def _draw_shape(draw, shape: str, box: tuple[int, int, int, int], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)


def render_scene(objects: list[dict], size: int = 192) -> np.ndarray:
    """uint8 (size, size, 3): each object ``{"shape", "colour", "cell": (row, col), "dot": bool}`` drawn in its cell
    of a 3 x 3 grid on a dark grey background."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (30, 30, 30))
    draw = ImageDraw.Draw(img)
    cell = size / 3
    pad = cell * 0.15
    for ob in objects:
        r, c = ob["cell"]
        box = (int(c * cell + pad), int(r * cell + pad), int((c + 1) * cell - pad), int((r + 1) * cell - pad))
        _draw_shape(draw, ob["shape"], box, COLOURS[ob["colour"]])
        if ob.get("dot"):
            cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2 + (int(cell * 0.12) if ob["shape"] == "triangle"
                                                                        else 0)
            d = max(1, size // 96)  # a 2d-px square: 4 px at 192
            draw.rectangle((cx - d, cy - d, cx + d - 1, cy + d - 1), fill=(255, 255, 255))
    return np.asarray(img, dtype=np.uint8)


def make_synthetic_vqa(n: int, seed: int = 0, size: int = 192,
                       qtypes: tuple[str, ...] = QUESTION_TYPES, max_shapes: int = 3) -> VQADataset:
    """``n`` seeded (image, question, answer) items; question types cycle through ``qtypes`` so each is balanced,
    and answers within a type are drawn uniformly (chance = 1 / number of answers of the type).

    ``max_shapes`` (1-3) caps the shapes per image: ``max_shapes=1`` is the easy curriculum of the quick compare
    (the asked-about shape is the only one, so no shape/attribute binding is needed); the ``count`` question needs
    ``max_shapes >= 2``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 1 <= max_shapes <= 3:
        raise ValueError(f"max_shapes must be 1, 2 or 3, got {max_shapes}")
    if max_shapes == 1 and "count" in qtypes:
        raise ValueError("the 'count' question needs max_shapes >= 2 (with one shape the answer is always 'one')")
    unknown = [q for q in qtypes if q not in QUESTION_TYPES]
    if unknown or not qtypes:
        raise ValueError(f"qtypes must be among {QUESTION_TYPES}, got {qtypes}")
    rng = np.random.default_rng([seed, 0x5C7])
    images = np.zeros((n, size, size, 3), dtype=np.uint8)
    questions, answers, types = [], [], []
    for i in range(n):
        qt = qtypes[i % len(qtypes)]
        k = int(rng.integers(1, max_shapes + 1))
        shapes = rng.choice(len(SHAPES), size=k, replace=False)
        cells = rng.choice(9, size=k, replace=False)
        colours = list(COLOURS)
        objs = [{"shape": SHAPES[s], "colour": colours[int(rng.integers(len(colours)))],
                 "cell": (int(c) // 3, int(c) % 3), "dot": bool(rng.integers(2))} for s, c in zip(shapes, cells,
                                                                                            strict=True)]
        target = objs[0]
        if qt == "colour":
            q, a = f"What colour is the {target['shape']}?", target["colour"]
        elif qt == "position":
            q, a = f"Which column is the {target['shape']} in?", COLUMNS[target["cell"][1]]
        elif qt == "count":
            q, a = "How many shapes are there?", COUNTS[k - 1]
        else:
            q, a = f"Does the {target['shape']} have a dot?", "yes" if target["dot"] else "no"
        images[i] = render_scene(objs, size)
        questions.append(q)
        answers.append(a)
        types.append(qt)
    counts = COUNTS[:max_shapes]
    answer_set = tuple(a for t in qtypes for a in (counts if t == "count" else ANSWERS[t]))
    return VQADataset(images, questions, answers, types, answer_set)


def load_vqa_jsonl(path: str | Path, size: int = 192) -> VQADataset:
    """A user's VQA set: one JSON object per line with ``image`` (path, relative to the file's folder),
    ``question``, ``answer`` (one word) and optional ``type``; images are resized to ``size`` x ``size`` RGB."""
    from PIL import Image, UnidentifiedImageError

    from polymodal.core.errors import read_input_bytes

    p = Path(path)
    text = read_input_bytes(p).decode("utf-8", errors="replace")
    images, qs, ans, types = [], [], [], []
    for ln, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataFormatError(p, f"not valid JSON: {e.msg}", line=ln, expected="one JSON object per line") from None
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in ("image", "question", "answer")):
            raise DataFormatError(p, "missing a string field", line=ln,
                                  expected='{"image": str, "question": str, "answer": str, "type": str?}')
        img_path = p.parent / rec["image"]
        try:
            img = Image.open(img_path).convert("RGB").resize((size, size), Image.BILINEAR)
        except (OSError, UnidentifiedImageError) as e:
            raise DataFormatError(p, f"cannot read image {img_path}: {e}", line=ln) from None
        images.append(np.asarray(img, dtype=np.uint8))
        qs.append(rec["question"])
        ans.append(rec["answer"].strip())
        types.append(str(rec.get("type", "all")))
    if not qs:
        raise DataFormatError(p, "no items", expected="one JSON object per line")
    return VQADataset(np.stack(images), qs, ans, types)

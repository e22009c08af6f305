"""Sticker dataset loaders (MGHFT spec 2.2, 2.6): SER30K JSON + image folder, and generic ``<class>/<image>`` folders.

SER30K annotation JSON: ``{"annotations": [{"topic": ..., "file_name": ..., "anno": 1..7, "text": ...?}, ...]}``
(a bare list of records is accepted too); ``anno`` is 1-based; MGHFT's ``Annotations_mg/image-level`` variant adds
the multi-view description in ``text``. Images are looked up as ``<image_root>/<file_name>``, then
``<image_root>/<topic>/<file_name>``. Every problem is a :class:`DataFormatError` naming the file, the record and
the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from polymodal.affect.stickers.synthetic import SER30K_CLASSES, StickerDataset
from polymodal.core.errors import DataFormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")


def load_image(path: Path, size: int) -> np.ndarray:
    """An RGB ``uint8`` array ``(3, size, size)`` (alpha composited on white, then resized)."""
    try:
        with Image.open(path) as im:
            im.seek(0)
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(path, f"cannot read the image: {e}", expected="an image file") from None


def load_ser30k(annotation_file: str | Path, image_root: str | Path | None = None, *, size: int = 96,
                class_names: tuple[str, ...] = SER30K_CLASSES, require_text: bool = False,
                limit: int | None = None) -> StickerDataset:
    """Load a SER30K (or MGHFT ``Annotations_mg``) annotation file with its images.

    ``image_root`` defaults to the annotation file's folder; ``require_text=True`` makes a record without a
    ``text`` field an error (MGHFT needs descriptions at inference too)."""
    path = Path(annotation_file)
    root = Path(image_root) if image_root is not None else path.parent
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e.msg}", line=e.lineno, expected="a SER30K annotation file")\
            from None
    if isinstance(raw, dict):
        if "annotations" not in raw:
            raise DataFormatError(path, "missing field 'annotations'",
                                  expected='{"annotations": [{"topic", "file_name", "anno"}, ...]}')
        records = raw["annotations"]
    else:
        records = raw
    if not isinstance(records, list) or not records:
        raise DataFormatError(path, "field 'annotations' is not a non-empty list", expected="a list of records")
    n_cls = len(class_names)
    images, labels, texts, meta = [], [], [], []
    for i, rec in enumerate(records[:limit] if limit else records):
        where = f"annotations[{i}]"
        if not isinstance(rec, dict):
            raise DataFormatError(path, f"{where} is not an object", expected='{"file_name", "anno", ...}')
        for key in ("file_name", "anno"):
            if key not in rec:
                raise DataFormatError(path, f"{where}: missing field '{key}'",
                                      expected='"file_name" (image path) and "anno" (1-based label)')
        anno = rec["anno"]
        try:
            label = int(anno)
            if isinstance(anno, bool) or label != float(anno):
                raise ValueError
        except (TypeError, ValueError):
            raise DataFormatError(path, f"{where}: field 'anno' is {anno!r}", expected=f"an integer in 1..{n_cls}")\
                from None
        if not 1 <= label <= n_cls:
            raise DataFormatError(path, f"{where}: field 'anno' is {label}", expected=f"an integer in 1..{n_cls}")
        text = rec.get("text")
        if text is not None and not isinstance(text, str):
            raise DataFormatError(path, f"{where}: field 'text' is {type(text).__name__}", expected="a string")
        if require_text and not text:
            raise DataFormatError(path, f"{where}: missing field 'text'",
                                  expected="the multi-view description (MGHFT's Annotations_mg layout)")
        fname = str(rec["file_name"])
        candidates = [root / fname]
        if "topic" in rec:
            candidates.append(root / str(rec["topic"]) / fname)
        img_path = next((c for c in candidates if c.is_file()), None)
        if img_path is None:
            raise DataFormatError(path, f"{where}: field 'file_name': image not found at "
                                  + " or ".join(str(c) for c in candidates), expected="an existing image file")
        images.append(load_image(img_path, size))
        labels.append(label - 1)
        texts.append(text)
        meta.append({"file": str(img_path), "topic": rec.get("topic")})
    return StickerDataset(torch.from_numpy(np.stack(images)), np.asarray(labels, dtype=np.int64), texts,
                          tuple(class_names), meta)


def load_image_folder(root: str | Path, *, size: int = 96, texts: dict[str, str] | None = None) -> StickerDataset:
    """Generic ``<root>/<class>/<image>`` folders (FI, EmotionROI...): class names are the sorted folder names.
    ``texts`` optionally maps an image's path relative to ``root`` to its description."""
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(root, "not a directory", expected="<root>/<class>/<image> folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise DataFormatError(root, f"found {len(classes)} class folder(s)", expected="at least 2 <class>/ folders")
    images, labels, descs, meta = [], [], [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for f in files:
            images.append(load_image(f, size))
            labels.append(c)
            rel = f.relative_to(root).as_posix()
            descs.append((texts or {}).get(rel))
            meta.append({"file": str(f)})
    if not images:
        raise DataFormatError(root, "no images found", expected=f"files ending in {', '.join(IMAGE_SUFFIXES)}")
    return StickerDataset(torch.from_numpy(np.stack(images)), np.asarray(labels, dtype=np.int64), descs,
                          tuple(classes), meta)


def load_stickers(path: str | Path, *, size: int = 96, image_root: str | Path | None = None,
                  class_names: tuple[str, ...] = SER30K_CLASSES) -> StickerDataset:
    """A ``.json`` file -> :func:`load_ser30k`; a directory -> :func:`load_image_folder`."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return load_ser30k(p, image_root, size=size, class_names=class_names)
    if p.is_dir():
        return load_image_folder(p, size=size)
    raise DataFormatError(p, "not found" if not p.exists() else "unknown data layout",
                          expected="a SER30K annotation .json or a <class>/<image> folder")

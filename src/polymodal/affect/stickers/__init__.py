"""MGHFT sticker emotion recognition (ACM MM 2025; spec ``affect.md`` section 2): data, interpreter, PVT, model.

Ten-line use::

    from polymodal.affect.stickers import MGHFT, ViewFeaturizer, make_synthetic
    data = make_synthetic(n=64)
    views = ViewFeaturizer("minilm").featurize(data.texts)      # (64, 4, 384), frozen MiniLM
    model = MGHFT(n_classes=7)
    out = model(data.float_images(), views)                      # logits + contrastive terms
    loss = model.loss(out, torch.as_tensor(data.labels))
"""

from polymodal.affect.stickers import interpreter, loaders
from polymodal.affect.stickers.interpreter import LLMInterpreter, TemplateInterpreter
from polymodal.affect.stickers.loaders import load_image_folder, load_ser30k, load_stickers
from polymodal.affect.stickers.mghft import (
    MGHFT,
    TGFA,
    PVTLateFusion,
    TextOnly,
    attend_repeated,
    global_text_fusion,
    info_nce,
    local_reattention,
    selection_counts,
    structure_loss,
)
from polymodal.affect.stickers.pvt import PVT
from polymodal.affect.stickers.synthetic import SER30K_CLASSES, StickerDataset, make_synthetic
from polymodal.affect.stickers.text_features import HashingBagEncoder, ViewFeaturizer
from polymodal.affect.stickers.views import VIEW_NAMES, MissingViewsError, join_views, split_views

__all__ = [
    "MGHFT", "PVT", "SER30K_CLASSES", "TGFA", "VIEW_NAMES", "HashingBagEncoder", "LLMInterpreter",
    "MissingViewsError", "PVTLateFusion", "StickerDataset", "TemplateInterpreter", "TextOnly", "ViewFeaturizer",
    "attend_repeated", "global_text_fusion", "info_nce", "interpreter", "join_views", "load_image_folder",
    "load_ser30k", "load_stickers", "loaders", "local_reattention", "make_synthetic", "selection_counts",
    "split_views", "structure_loss",
]

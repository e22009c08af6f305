"""Loaders for the two Shoaib IMU datasets (spec 6), with label normalisation and clear format errors.

- **Shoaib 2014** (Sensors 14:10146): ``Participant_<k>.csv``, 2 header rows (position names, then field names),
  70 columns = 5 blocks × 14 in the order Left_pocket, Right_pocket, Wrist, Upper_arm, Belt; each block
  ``time_stamp, Ax, Ay, Az, Lx, Ly, Lz, Gx, Gy, Gz, Mx, My, Mz`` + one extra column; the activity string is read from
  the LAST column only. Labels are normalised (``upsatirs`` → upstairs, ``running`` → jogging).
- **Shoaib 2013** (UIC'13): one table per position (``Arm``, ``Belt``, ``Wrist``, ``Pocket``; ``.csv`` or ``.xlsx``
  with ``openpyxl``), columns ``Timestamp, Ax..Az, Gx..Gz, Mx..Mz, Activity Label``; 6 activities (``running`` is
  mapped to ``jogging`` so both datasets share one label set). Positions are aligned by truncating each contiguous
  activity run to the shortest position (reconstruction: the readme does not say how the four phones were synced).

Every malformed file raises :class:`~polymodal.core.errors.DataFormatError` naming the file, line and column.
BasicMotions (sktime's ``.ts`` files, a smartwatch at 10 Hz) is read by :mod:`polymodal.sensing.basicmotions`.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymodal.core.errors import DataFormatError

ACTIVITIES = ("walking", "sitting", "standing", "jogging", "biking", "upstairs", "downstairs")
ACTIVITIES_2013 = ("walking", "jogging", "sitting", "standing", "upstairs", "downstairs")
DYNAMIC = ("walking", "jogging", "biking", "upstairs", "downstairs")
STATIC = ("sitting", "standing")
#: 2014 block order in the CSV (spec 6)
POSITIONS_2014 = ("left_pocket", "right_pocket", "wrist", "upper_arm", "belt")
POSITIONS_2013 = ("arm", "belt", "wrist", "pocket")
BLOCK_FIELDS = ("time_stamp", "Ax", "Ay", "Az", "Lx", "Ly", "Lz", "Gx", "Gy", "Gz", "Mx", "My", "Mz")
BLOCK_WIDTH = 14
POSITION_HEADER = {"left_pocket": "Left_pocket", "right_pocket": "Right_pocket", "wrist": "Wrist",
                   "upper_arm": "Upper_arm", "belt": "Belt"}
#: channel layout of a loaded position array: timestamp, acc(3), linear acc(3), gyro(3), mag(3)
ACC, LIN, GYRO, MAG = slice(1, 4), slice(4, 7), slice(7, 10), slice(10, 13)

_SYNONYMS = {"upsatirs": "upstairs", "upstair": "upstairs", "walking upstairs": "upstairs", "up stairs": "upstairs",
             "downstair": "downstairs", "walking downstairs": "downstairs", "down stairs": "downstairs",
             "running": "jogging", "run": "jogging", "jog": "jogging", "walk": "walking", "sit": "sitting",
             "stand": "standing", "bike": "biking", "cycling": "biking", "bicycling": "biking", "cycle": "biking"}


def normalise_label(raw: str) -> str | None:
    """Map a label string (any case, typos of the real files, synonyms) to one of :data:`ACTIVITIES`, else None."""
    s = re.sub(r"[\s_\-]+", " ", str(raw).strip().lower()).strip().strip(".\"'")
    if s in ACTIVITIES:
        return s
    return _SYNONYMS.get(s)


@dataclass
class Recording:
    """One participant's synchronised recording: ``positions[name]`` is ``(N, 13)`` (timestamp, acc, linear acc,
    gyro, mag; linear acc is NaN for 2013 data) and ``labels`` the ``N`` normalised activity strings."""

    participant: str
    positions: dict[str, np.ndarray]
    labels: np.ndarray
    source: str = ""
    fs: float = 50.0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)


def _float(path: Path, line: int, col: int, name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(path, f"column {col} ({name}): {text!r} is not a number", line=line,
                              expected="a decimal number") from None


def load_shoaib_2014_file(path: str | Path, *, participant: str | None = None) -> Recording:
    """One ``Participant_<k>.csv`` of Shoaib 2014 → :class:`Recording` with the five positions."""
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "file not found", expected="a Shoaib 2014 Participant_<k>.csv")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh)
        try:
            head1, head2 = next(rows), next(rows)
        except StopIteration:
            raise DataFormatError(path, "fewer than 2 header rows", line=1,
                                  expected="a position-name row and a field-name row") from None
        for ln, head in ((1, head1), (2, head2)):
            if len(head) != 5 * BLOCK_WIDTH:
                raise DataFormatError(path, f"header row has {len(head)} columns", line=ln,
                                      expected=f"{5 * BLOCK_WIDTH} columns (5 positions x {BLOCK_WIDTH})")
        for b, pos in enumerate(POSITIONS_2014):
            got = head1[b * BLOCK_WIDTH].strip().lower().replace(" ", "_")
            if got != pos:
                raise DataFormatError(path, f"column {b * BLOCK_WIDTH + 1}: position {head1[b * BLOCK_WIDTH]!r}",
                                      line=1, expected=f"{POSITION_HEADER[pos]!r} (block order "
                                      f"{', '.join(POSITION_HEADER.values())})")
            for j, name in enumerate(BLOCK_FIELDS[1:], start=1):
                col = b * BLOCK_WIDTH + j
                if head2[col].strip().lower() != name.lower():
                    raise DataFormatError(path, f"column {col + 1}: field {head2[col]!r}", line=2,
                                          expected=f"{name!r} ({pos} block)")
        values: list[list[float]] = []
        labels: list[str] = []
        for ln, row in enumerate(rows, start=3):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 5 * BLOCK_WIDTH:
                raise DataFormatError(path, f"{len(row)} columns", line=ln, expected=f"{5 * BLOCK_WIDTH} columns")
            lab = normalise_label(row[-1])
            if lab is None:
                raise DataFormatError(path, f"column {len(row)} (activity): unknown activity {row[-1]!r}", line=ln,
                                      expected=f"one of {', '.join(ACTIVITIES)}")
            vals = []
            for b in range(5):
                for j in range(13):
                    col = b * BLOCK_WIDTH + j
                    vals.append(_float(path, ln, col + 1, f"{POSITIONS_2014[b]}.{BLOCK_FIELDS[j]}", row[col]))
            values.append(vals)
            labels.append(lab)
    if not values:
        raise DataFormatError(path, "no data rows after the 2 header rows", expected="at least one sample")
    arr = np.asarray(values, dtype=np.float64).reshape(len(values), 5, 13)
    pid = participant or (re.findall(r"\d+", path.stem) or [path.stem])[-1]
    return Recording(str(pid), {p: arr[:, b, :].copy() for b, p in enumerate(POSITIONS_2014)},
                     np.asarray(labels), str(path), meta={"dataset": "shoaib2014"})


def load_shoaib_2014(paths: str | Path | list[str | Path]) -> list[Recording]:
    """A folder (its ``Participant_*.csv``, also under ``DataSet/``) or a list of CSV paths → recordings."""
    if isinstance(paths, str | Path):
        p = Path(paths)
        if p.is_dir():
            files = sorted(p.glob("Participant_*.csv")) or sorted(p.glob("DataSet/Participant_*.csv"))
            if not files:
                raise DataFormatError(p, "no Participant_*.csv files in this folder",
                                      expected="the Shoaib 2014 DataSet folder")
            files = sorted(files, key=lambda f: int((re.findall(r"\d+", f.stem) or ["0"])[-1]))
        else:
            files = [p]
    else:
        files = [Path(x) for x in paths]
    return [load_shoaib_2014_file(f) for f in files]


def agent_positions(rec: Recording, pocket: str = "right") -> dict[str, np.ndarray]:
    """Map a recording onto the four SensingAgents positions (arm, wrist, belt, pocket; spec 6 mapping).

    ``pocket``: "right" | "left" | "both" (both = the two pocket arrays averaged sample-wise — a reconstruction of
    "two pocket analysts averaged" that keeps four analysts).
    """
    p = rec.positions
    if "upper_arm" in p:  # 2014 layout
        if pocket == "both":
            pk = (p["left_pocket"] + p["right_pocket"]) / 2
        elif pocket in ("right", "left"):
            pk = p[f"{pocket}_pocket"]
        else:
            raise ValueError(f"pocket must be 'right', 'left' or 'both', got {pocket!r}")
        return {"arm": p["upper_arm"], "wrist": p["wrist"], "belt": p["belt"], "pocket": pk}
    return {k: p[k] for k in POSITIONS_2013 if k in p}


# -- Shoaib 2013 ----------------------------------------------------------------------------------------------------
_FIELDS_2013 = ("timestamp", "ax", "ay", "az", "gx", "gy", "gz", "mx", "my", "mz", "activity label")


def _table_rows(path: Path) -> list[tuple[str, list[list[str]]]]:
    """(sheet name, rows as strings) of a .csv (one sheet) or .xlsx (every sheet; needs openpyxl)."""
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return [("", [row for row in csv.reader(fh)])]
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        try:
            import openpyxl
        except ModuleNotFoundError:
            raise DataFormatError(path, "reading .xlsx needs openpyxl (pip install openpyxl), or export the sheets "
                                  "to .csv") from None
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        return [(ws.title, [["" if c is None else str(c) for c in r] for r in ws.iter_rows(values_only=True)])
                for ws in wb.worksheets]
    raise DataFormatError(path, f"unsupported file type {path.suffix!r}", expected=".csv or .xlsx")


def _parse_2013_table(path: Path, sheet: str, rows: list[list[str]]) -> tuple[np.ndarray, list[str], list[str]]:
    """(values (N, 10), labels, participant ids) of one 2013 table; an optional ``Participant`` 12th column."""
    where = f"{path}[{sheet}]" if sheet else path
    start = 0
    has_pid = False
    if rows and rows[0] and not _is_number(rows[0][0]):  # a header row
        head = [h.strip().lower().replace("_", " ") for h in rows[0]]
        if len(head) < 11:
            raise DataFormatError(where, f"header has {len(head)} columns", line=1,
                                  expected=f"{', '.join(_FIELDS_2013)}")
        for j, name in enumerate(_FIELDS_2013[1:10], start=1):
            if head[j] != name:
                raise DataFormatError(where, f"column {j + 1}: field {rows[0][j]!r}", line=1, expected=repr(name))
        has_pid = len(head) > 11 and head[11].startswith("participant")
        start = 1
    vals, labels, pids = [], [], []
    for ln, row in enumerate(rows[start:], start=start + 1):
        if not row or all(not str(c).strip() for c in row):
            continue
        if len(row) < 11:
            raise DataFormatError(where, f"{len(row)} columns", line=ln, expected="11 columns (timestamp, 9 sensor "
                                  "values, activity label)")
        lab = normalise_label(row[10])
        if lab is None or lab not in ACTIVITIES_2013:
            raise DataFormatError(where, f"column 11 (activity): unknown activity {row[10]!r}", line=ln,
                                  expected=f"one of {', '.join(ACTIVITIES_2013)} (or running)")
        vals.append([_float(where, ln, j + 1, _FIELDS_2013[j], str(row[j])) for j in range(10)])
        labels.append(lab)
        pids.append(str(row[11]).strip() if has_pid and len(row) > 11 else (sheet or "1"))
    if not vals:
        raise DataFormatError(where, "no data rows", expected="at least one sample")
    return np.asarray(vals), labels, pids


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except (TypeError, ValueError):
        return False


def load_shoaib_2013(folder: str | Path) -> list[Recording]:
    """``Arm``, ``Belt``, ``Wrist``, ``Pocket`` tables (.csv or .xlsx) in ``folder`` → one recording per
    participant (an xlsx sheet or a ``Participant`` column), positions aligned per activity run (see module doc)."""
    folder = Path(folder)
    tables: dict[str, dict[str, tuple[np.ndarray, list[str]]]] = {}
    for pos in POSITIONS_2013:
        cands = [f for ext in (".csv", ".xlsx") for f in folder.glob(f"*{ext}") if f.stem.lower() == pos]
        if not cands:
            raise DataFormatError(folder, f"no {pos.capitalize()}.csv / {pos.capitalize()}.xlsx",
                                  expected="the four Shoaib 2013 position files Arm, Belt, Wrist, Pocket")
        for sheet, rows in _table_rows(cands[0]):
            vals, labels, pids = _parse_2013_table(cands[0], sheet, rows)
            for pid in dict.fromkeys(pids):
                sel = np.asarray([p == pid for p in pids])
                tables.setdefault(pid, {})[pos] = (vals[sel], [lab for lab, s in zip(labels, sel, strict=True) if s])
    recs = []
    for pid, by_pos in sorted(tables.items()):
        if set(by_pos) != set(POSITIONS_2013):
            raise DataFormatError(folder, f"participant {pid!r} is missing positions "
                                  f"{sorted(set(POSITIONS_2013) - set(by_pos))}")
        runs = {pos: _runs(lbls) for pos, (_, lbls) in by_pos.items()}
        order = [lab for lab, _, _ in runs[POSITIONS_2013[0]]]
        out = {pos: [] for pos in POSITIONS_2013}
        labels: list[str] = []
        for k, lab in enumerate(order):
            if any(len(runs[p]) <= k or runs[p][k][0] != lab for p in POSITIONS_2013):
                raise DataFormatError(folder, f"participant {pid!r}: activity runs differ between positions at run "
                                      f"{k + 1} ({lab!r})", expected="the same activity order in all four files")
            n = min(runs[p][k][2] - runs[p][k][1] for p in POSITIONS_2013)
            for p in POSITIONS_2013:
                s = runs[p][k][1]
                v = by_pos[p][0][s : s + n]
                full = np.full((n, 13), np.nan)
                full[:, 0], full[:, ACC], full[:, GYRO], full[:, MAG] = v[:, 0], v[:, 1:4], v[:, 4:7], v[:, 7:10]
                out[p].append(full)
            labels += [lab] * n
        recs.append(Recording(pid, {p: np.concatenate(v) for p, v in out.items()}, np.asarray(labels), str(folder),
                              meta={"dataset": "shoaib2013"}))
    return recs


def _runs(labels: list[str]) -> list[tuple[str, int, int]]:
    """Contiguous runs (label, start, end) of a label sequence."""
    out, start = [], 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            out.append((labels[start], start, i))
            start = i
    return out

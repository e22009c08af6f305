"""BasicMotions, the one real IMU dataset available offline (spec 8), and a reader for the sktime / UEA ``.ts`` format.

- :func:`load_ts` reads any equal- or unequal-length multivariate ``.ts`` file (header directives ``@problemName``,
  ``@timeStamps``, ``@missing``, ``@univariate``, ``@dimensions``, ``@equalLength``, ``@seriesLength``,
  ``@classLabel``, then ``@data``; one series per line, dimensions separated by ``:``, values by ``,``, the class label
  last; ``?`` is a missing value, read as NaN). Every malformed file raises
  :class:`~polymodal.core.errors.DataFormatError` naming the file, the line and the field (dimension / value / label).
  Time-stamped (``@timeStamps true``) and regression (``@targetLabel``) files are refused with a clear message.
- :func:`load_basicmotions` returns the BasicMotions TRAIN / TEST splits: 40 + 40 series of a smartwatch worn on the
  wrist (4 students, 4 activities, 10 per class per split), ``(N, 100, 6)`` = 10 s at 10 Hz of 3-axis accelerometer
  then 3-axis gyroscope. Labels are mapped onto our activity vocabulary (:data:`BASICMOTIONS_LABELS`: Standing →
  standing, Walking → walking, Running → jogging as in :func:`~polymodal.sensing.imu.normalise_label`); Badminton has
  no Shoaib counterpart and stays its own label ``badminton`` (spec 8 suggests "other"; a named class is clearer).
  The files ship inside the PyPI ``sktime`` wheel and are located through package metadata only: ``sktime`` itself is
  never imported (its dependencies are not installed; ``pip install --no-deps sktime==1.2.0`` is enough).
- :func:`basicmotions_check` trains the random forest and the 1D-CNN of :mod:`polymodal.sensing.baselines` on TRAIN
  and scores them on TEST, and runs SensingAgents with the rule backend on the wrist analyst alone; the tools are
  called with ``fs=10`` (every sample-rate-dependent tool takes it as a parameter).

Two facts about the data the tools must live with: the accelerometer channels carry **no gravity** (a standing
window's mean |acc| is ≈ 0.8, not 9.81 m/s²), so the gravity-orientation tool and the data-quality tool's gravity
(bias) check do not apply (every window is flagged ``bias``, q < 1); and at 10 Hz the PSD band above 6 Hz lies beyond
the Nyquist frequency (always 0).
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from polymodal.core.errors import ConfigError, DataFormatError, read_input_bytes
from polymodal.core.offline import MissingDependencyError

SKTIME_INSTALL = "pip install --no-deps sktime==1.2.0"
#: BasicMotions class name → our activity vocabulary (Badminton has no Shoaib counterpart: kept as its own label)
BASICMOTIONS_LABELS = {"Standing": "standing", "Walking": "walking", "Running": "jogging", "Badminton": "badminton"}
BASICMOTIONS_FS = 10.0
BASICMOTIONS_POSITION = "wrist"
_BOOL = {"true": True, "false": False}
_DIRECTIVES = ("problemname", "timestamps", "missing", "univariate", "dimensions", "equallength", "serieslength",
               "classlabel", "targetlabel", "data")
CHECK_ROWS = ("random-forest", "cnn-1d", "sensing-agents-rules")


# ---------------------------------------------------------------------------------------------------------------
# the .ts reader
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class TSData:
    """A parsed ``.ts`` file: ``series[i]`` is ``(length_i, dimensions)``; ``y`` the raw class labels (or None)."""

    path: str
    problem_name: str
    series: list[np.ndarray]
    y: np.ndarray | None
    class_labels: tuple[str, ...]
    dimensions: int
    equal_length: bool
    series_length: int | None
    header: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.series)

    @property
    def X(self) -> np.ndarray:
        """All series stacked as ``(N, T, D)``; a DataFormatError when their lengths differ."""
        lengths = sorted({len(s) for s in self.series})
        if len(lengths) > 1:
            raise DataFormatError(self.path, f"series have different lengths {lengths[:5]}: cannot stack them",
                                  expected="equal-length series (use .series for the list)")
        return np.stack(self.series) if self.series else np.zeros((0, self.series_length or 0, self.dimensions))


def _bool(path: Path, line: int, key: str, text: str) -> bool:
    v = _BOOL.get(text.strip().lower())
    if v is None:
        raise DataFormatError(path, f"@{key}: {text.strip()!r} is not a boolean", line=line, expected="true or false")
    return v


def _int(path: Path, line: int, key: str, text: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        v = -1
    if v < 1:
        raise DataFormatError(path, f"@{key}: {text.strip()!r} is not a positive integer", line=line,
                              expected="an integer >= 1")
    return v


def _values(path: Path, line: int, dim: int, text: str) -> np.ndarray:
    out = []
    for j, cell in enumerate(text.split(","), start=1):
        c = cell.strip()
        if c == "?" or c.lower() == "nan":
            out.append(math.nan)
            continue
        try:
            out.append(float(c))
        except ValueError:
            what = "an empty value" if not c else f"{c[:40]!r} is not a number"
            raise DataFormatError(path, f"dimension {dim}, value {j}: {what}", line=line,
                                  expected="a decimal number or '?' for a missing value") from None
    return np.asarray(out, dtype=np.float64)


def load_ts(path: str | Path) -> TSData:
    """Read a sktime / UEA ``.ts`` classification file (format: see the module docstring) into :class:`TSData`."""
    path = Path(path)
    try:
        text = read_input_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    header: dict[str, str] = {}
    meta: dict[str, object] = {"problemname": path.stem, "timestamps": False, "univariate": None, "dimensions": None,
                               "equallength": None, "serieslength": None, "classlabel": None}
    labels: tuple[str, ...] = ()
    series: list[np.ndarray] = []
    y: list[str] = []
    in_data = False
    data_line = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise DataFormatError(path, f"{line[:40]!r} before the @data line", line=n,
                                      expected="a header directive (@name value), a # comment or @data")
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key not in _DIRECTIVES:
                raise DataFormatError(path, f"unknown header directive @{key}", line=n,
                                      expected="one of " + ", ".join("@" + d for d in _DIRECTIVES))
            header[key] = value.strip()
            if key == "data":
                in_data, data_line = True, n
                if meta["classlabel"] is None:
                    raise DataFormatError(path, "@data before @classLabel", line=n,
                                          expected="@classLabel true <labels...> (or false) in the header")
                if meta["timestamps"]:
                    raise DataFormatError(path, "time-stamped series (@timeStamps true) are not supported", line=n)
            elif key == "targetlabel":
                if _bool(path, n, key, value.split()[0] if value.split() else ""):
                    raise DataFormatError(path, "regression files (@targetLabel true) are not supported", line=n,
                                          expected="a classification file (@classLabel)")
            elif key == "problemname":
                meta[key] = value.strip()
            elif key in ("timestamps", "missing", "univariate", "equallength"):
                meta[key] = _bool(path, n, key, value)
            elif key in ("dimensions", "serieslength"):
                meta[key] = _int(path, n, key, value)
            elif key == "classlabel":
                words = value.split()
                meta[key] = _bool(path, n, key, words[0] if words else "")
                labels = tuple(words[1:])
                if meta[key] and not labels:
                    raise DataFormatError(path, "@classLabel true lists no class labels", line=n,
                                          expected="@classLabel true <label> <label> ...")
            continue
        # a data line: D dimensions (+ the label)
        parts = line.split(":")
        has_label = bool(meta["classlabel"])
        dims = meta["dimensions"] or (1 if meta["univariate"] else None)
        n_dims = len(parts) - int(has_label)
        if dims is None:
            dims = meta["dimensions"] = n_dims  # no @dimensions: the first series decides
        if n_dims != dims:
            raise DataFormatError(path, f"{n_dims} dimension(s) (':'-separated fields"
                                        f"{' before the label' if has_label else ''}), the header says {dims}",
                                  line=n, expected=f"{dims} dimension(s){' then the class label' if has_label else ''}")
        arrays = [_values(path, n, d, parts[d - 1]) for d in range(1, dims + 1)]
        lengths = {len(a) for a in arrays}
        if len(lengths) > 1:
            raise DataFormatError(path, f"dimensions have different lengths {[len(a) for a in arrays]}", line=n,
                                  expected="every dimension of a series with the same number of values")
        length = lengths.pop()
        if meta["equallength"] and meta["serieslength"] and length != meta["serieslength"]:
            raise DataFormatError(path, f"series of length {length}, the header says @seriesLength "
                                        f"{meta['serieslength']}", line=n,
                                  expected=f"{meta['serieslength']} values per dimension")
        if has_label:
            lab = parts[-1].strip()
            if lab not in labels:
                raise DataFormatError(path, f"class label {lab!r} is not declared in @classLabel", line=n,
                                      expected="one of " + ", ".join(labels))
            y.append(lab)
        series.append(np.stack(arrays, axis=1))
    if not in_data:
        raise DataFormatError(path, "no @data line: the header never ends", expected="a line '@data' before the series")
    if not series:
        raise DataFormatError(path, "no series after @data", line=data_line, expected="one series per line")
    lens = {len(s) for s in series}
    return TSData(path=str(path), problem_name=str(meta["problemname"]), series=series,
                  y=np.asarray(y) if meta["classlabel"] else None, class_labels=labels,
                  dimensions=int(meta["dimensions"] or series[0].shape[1]),
                  equal_length=bool(meta["equallength"]) if meta["equallength"] is not None else len(lens) == 1,
                  series_length=meta["serieslength"] or (lens.pop() if len(lens) == 1 else None), header=header)


# ---------------------------------------------------------------------------------------------------------------
# BasicMotions
# ---------------------------------------------------------------------------------------------------------------
def basicmotions_paths() -> tuple[Path, Path]:
    """``(TRAIN, TEST)`` paths of BasicMotions inside the installed sktime wheel (package metadata only)."""
    try:
        dist = importlib.metadata.distribution("sktime")
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            "BasicMotions ships inside the PyPI package sktime, which is not installed; install its data files "
            f"(without its dependencies) with: {SKTIME_INSTALL}") from None
    found: dict[str, Path] = {}
    for f in dist.files or ():
        if f.name in ("BasicMotions_TRAIN.ts", "BasicMotions_TEST.ts") and "datasets" in f.parts:
            p = Path(dist.locate_file(f))
            if p.is_file():
                found[f.name] = p
    missing = [n for n in ("BasicMotions_TRAIN.ts", "BasicMotions_TEST.ts") if n not in found]
    if missing:
        raise MissingDependencyError(
            f"the installed sktime ({dist.version}) has no datasets/data/BasicMotions/{missing[0]}; reinstall it "
            f"with: {SKTIME_INSTALL}")
    return found["BasicMotions_TRAIN.ts"], found["BasicMotions_TEST.ts"]


@dataclass
class BasicMotions:
    """Both splits: ``X_*`` ``(N, 100, 6)`` float (acc xyz, gyro xyz), ``y_*`` mapped labels, ``raw_*`` originals."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple[str, ...]  # mapped names in the header's order
    raw_classes: tuple[str, ...]
    raw_train: np.ndarray
    raw_test: np.ndarray
    fs: float = BASICMOTIONS_FS
    position: str = BASICMOTIONS_POSITION
    paths: tuple[str, str] = ("", "")

    def windows(self, split: str = "train") -> list[dict[str, np.ndarray]]:
        """SensingAgents / baseline windows ``[{"wrist": (100, 6)}, ...]`` of ``split`` (train | test)."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        return [{self.position: x} for x in (self.X_train if split == "train" else self.X_test)]


def load_basicmotions(root: str | Path | None = None, *, mapped: bool = True) -> BasicMotions:
    """BasicMotions TRAIN/TEST (spec 8). ``root``: a folder holding ``BasicMotions_{TRAIN,TEST}.ts`` (default: the
    copy inside the installed sktime wheel). ``mapped=False`` keeps the original class names as labels."""
    if root is None:
        train_p, test_p = basicmotions_paths()
    else:
        train_p, test_p = Path(root) / "BasicMotions_TRAIN.ts", Path(root) / "BasicMotions_TEST.ts"
    train, test = load_ts(train_p), load_ts(test_p)
    for d in (train, test):
        if d.dimensions != 6 or d.y is None:
            raise DataFormatError(d.path, f"{d.dimensions} dimension(s), labels {'absent' if d.y is None else 'ok'}",
                                  expected="6 dimensions (acc xyz, gyro xyz) and class labels")
        unknown = sorted(set(d.class_labels) - set(BASICMOTIONS_LABELS))
        if mapped and unknown:
            raise DataFormatError(d.path, f"class labels {unknown} are not BasicMotions classes",
                                  expected="labels among " + ", ".join(BASICMOTIONS_LABELS))
    m = (lambda v: np.asarray([BASICMOTIONS_LABELS[s] for s in v])) if mapped else np.asarray
    raw = train.class_labels
    return BasicMotions(X_train=train.X, y_train=m(train.y), X_test=test.X, y_test=m(test.y),
                        classes=tuple(BASICMOTIONS_LABELS[c] for c in raw) if mapped else raw, raw_classes=raw,
                        raw_train=np.asarray(train.y), raw_test=np.asarray(test.y), paths=(str(train_p), str(test_p)))


# ---------------------------------------------------------------------------------------------------------------
# the real-data check
# ---------------------------------------------------------------------------------------------------------------
def tool_summary(data: BasicMotions, split: str = "train") -> dict[str, dict[str, float]]:
    """Per class, the median of the wrist analyst's compact tool features at ``fs=data.fs`` (what the tools see),
    plus the share of windows the data-quality tool flags ``ok``."""
    from polymodal.sensing import signal_tools as st

    X, y = (data.X_train, data.y_train) if split == "train" else (data.X_test, data.y_test)
    feats = [st.compact_features(st.analyse_position(x[:, 0:3], x[:, 3:6], data.fs)) for x in X]
    keys = ("acc_mean", "acc_std", "f0_hz", "cadence_hz", "gyro_mean", "jerk", "q")
    out = {}
    for c in data.classes:
        rows = [f for f, lab in zip(feats, y, strict=True) if lab == c]
        out[c] = {k: float(np.median([f[k] for f in rows])) for k in keys}
        out[c]["ok_share"] = float(np.mean([f["quality"] == "ok" for f in rows]))
    return out


def _metrics(y_true: Sequence[str], y_pred: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=sorted(set(y_true)), average="macro", zero_division=0))}


def _cnn_slots(classes: Sequence[str]) -> dict[str, str]:
    """The baseline CNN's head is the 7 Shoaib activities: a class outside them (badminton) borrows an unused slot."""
    from polymodal.sensing.imu import ACTIVITIES

    free = [a for a in ACTIVITIES if a not in classes]
    slots, k = {}, 0
    for c in classes:
        if c in ACTIVITIES:
            slots[c] = c
        else:
            if k >= len(free):
                raise ConfigError(f"{len(classes)} classes do not fit the CNN's {len(ACTIVITIES)}-way head")
            slots[c], k = free[k], k + 1
    return slots


def basicmotions_check(data: BasicMotions | None = None, rows: Sequence[str] = CHECK_ROWS, *, seed: int = 0,
                       rf_trees: int = 100, cnn_epochs: int = 60, cnn_batch_size: int = 16,
                       cnn_lr: float = 1e-3) -> dict[str, dict[str, float]]:
    """Train on TRAIN, score on TEST: ``{row: {accuracy, macro_f1, seconds}}`` for ``rows`` among
    :data:`CHECK_ROWS` (random forest on the wrist's tool features at 10 Hz; the 1D-CNN on raw acc+gyro; SensingAgents
    with the rule backend and the wrist analyst alone — it cannot name ``badminton``, which is outside its
    vocabulary, so its ceiling is 0.75)."""
    import torch

    from polymodal.sensing.agents import RuleBasedLLM, SensingAgents
    from polymodal.sensing.baselines import CNNHAR, RandomForestHAR

    unknown = [r for r in rows if r not in CHECK_ROWS]
    if unknown:
        raise ConfigError(f"unknown rows {unknown}; choose among {list(CHECK_ROWS)}")
    data = data if data is not None else load_basicmotions()
    train, test = data.windows("train"), data.windows("test")
    y_true = [str(v) for v in data.y_test]
    pos = (data.position,)
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        t0 = time.perf_counter()
        if row == "random-forest":
            rf = RandomForestHAR(positions=pos, n_estimators=rf_trees, seed=seed, fs=data.fs)
            pred = rf.fit(train, list(data.y_train)).predict_many(test)
        elif row == "cnn-1d":
            slots = _cnn_slots(data.classes)
            back = {v: k for k, v in slots.items()}
            cnn = CNNHAR(positions=pos, epochs=cnn_epochs, batch_size=cnn_batch_size, lr=cnn_lr, seed=seed)
            cnn.fit(train, [slots[str(v)] for v in data.y_train])
            pred = [back.get(p, p) for p in cnn.predict_many(test)]
        else:
            agents = SensingAgents(llm=RuleBasedLLM(), positions=pos, fs=data.fs, seed=seed)
            with torch.no_grad():
                pred = [agents.predict(w).label for w in test]
        out[row] = {**_metrics(y_true, pred), "seconds": time.perf_counter() - t0}
    return out

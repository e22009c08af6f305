"""Dataset cache: checksummed downloads, safe archive extraction and a registry of fetchable data sets.

Everything lands under :func:`cache_dir` (``$POLYMODAL_CACHE`` or ``~/.cache/polymodal``); a data set named
``NAME`` lives in ``cache_dir()/datasets/NAME/`` and is complete once that folder holds a ``.complete`` marker.

Each download URL can be redirected to a mirror with ``POLYMODAL_MIRROR_<NAME>`` (the data set name upper-cased,
non-alphanumerics as ``_``; e.g. ``POLYMODAL_MIRROR_ML_100K``): the mirror is a flat folder, served over
``http(s)://`` or ``file://``, holding the files under their original names. Checksums still apply.

No ML here: this module only moves bytes.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from polymodal.core.errors import DownloadError, PolymodalError

__all__ = [
    "CACHE_ENV",
    "DatasetSpec",
    "UnsafeArchiveError",
    "cache_dir",
    "dataset_dir",
    "dataset_url",
    "download",
    "fetch_dataset",
    "get_dataset",
    "is_complete",
    "list_datasets",
    "mirror_env_var",
    "register_dataset",
    "safe_extract",
    "sha256_file",
]

CACHE_ENV = "POLYMODAL_CACHE"
MIRROR_ENV_PREFIX = "POLYMODAL_MIRROR_"
COMPLETE_MARKER = ".complete"
_CHUNK = 1 << 20
_USER_AGENT = "polymodal-dataset-cache/0.1 (+python-urllib)"


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the destination (or is a device file); nothing was extracted."""


# --------------------------------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """The polymodal cache folder: ``$POLYMODAL_CACHE`` if set, else ``~/.cache/polymodal``; created on demand."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "polymodal"
    root.mkdir(parents=True, exist_ok=True)
    return root


def dataset_dir(name: str) -> Path:
    """``cache_dir()/datasets/<name>`` (not created)."""
    return cache_dir() / "datasets" / name


def mirror_env_var(name: str) -> str:
    """Environment variable that overrides the download base URL of data set ``name``."""
    return MIRROR_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def dataset_url(name: str, default_url: str) -> str:
    """``default_url``, or ``$POLYMODAL_MIRROR_<NAME>/<file name of default_url>`` when that variable is set."""
    base = os.environ.get(mirror_env_var(name), "").strip()
    if not base:
        return default_url
    filename = PurePosixPath(urllib.parse.urlparse(default_url).path).name
    return base.rstrip("/") + "/" + urllib.parse.quote(filename)


# ------------------------------------------------------------------------------------------------ download


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


class _Transient(Exception):
    """A failure worth retrying (5xx, reset connection, timeout, truncated body)."""


def _progress_bar(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _download_once(url: str, dest: Path, expected: str | None, timeout: float, progress: bool) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        received = 0
        req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=timeout) as resp:
                length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
                total = int(length) if length and length.isdigit() else None
                bar = _progress_bar(progress)
                task = None
                if bar is not None:
                    bar.start()
                    task = bar.add_task(dest.name, total=total)
                try:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        received += len(chunk)
                        if bar is not None:
                            bar.update(task, completed=received)
                finally:
                    if bar is not None:
                        bar.stop()
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError | ConnectionError):
                raise _Transient(f"{type(reason).__name__}: {reason}") from exc
            raise DownloadError(f"{url}: {reason}") from exc
        except (TimeoutError, ConnectionError, http.client.IncompleteRead, http.client.BadStatusLine) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:
            raise DownloadError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if total is not None and received != total:
            raise _Transient(f"truncated body: got {received} of {total} bytes")
        actual = h.hexdigest()
        if expected is not None and actual != expected:
            raise DownloadError(
                f"{url}: checksum mismatch for {dest.name}: expected sha256 {expected}, got {actual} "
                f"({received} bytes)"
            )
        tmp.chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download(
    url: str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    *,
    timeout: float = 60,
    retries: int = 3,
    progress: bool = True,
    backoff: float = 1.0,
) -> Path:
    """Stream ``url`` to ``dest`` and return ``dest``.

    The body goes to a temp file beside ``dest`` and is renamed onto ``dest`` only once complete and, when
    ``sha256`` is given, verified; on any failure the temp file is removed, ``dest`` is left as it was and
    :class:`DownloadError` names the URL and the problem. Transient failures (HTTP 5xx/408/429, reset or refused
    connections, timeouts, truncated bodies) are retried up to ``retries`` more times, sleeping
    ``backoff * 2**attempt`` seconds in between; 4xx errors and checksum mismatches are not retried.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.strip().lower() if sha256 else None
    attempt = 0
    while True:
        try:
            _download_once(url, dest, expected, timeout, progress)
            return dest
        except _Transient as exc:
            if attempt >= retries:
                raise DownloadError(f"{url}: {exc} (gave up after {attempt + 1} attempts)") from exc
            time.sleep(backoff * (2**attempt))
            attempt += 1


# ------------------------------------------------------------------------------------------------- extract

MemberFilter = Iterable[str] | Callable[[str], bool] | None


def _member_key(name: str) -> str:
    key = name.replace("\\", "/").rstrip("/")
    while key.startswith("./"):
        key = key[2:]
    return key


def _safe_parts(name: str, archive: Path) -> tuple[str, ...]:
    raw = name.replace("\\", "/")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..' (would escape the destination)")
    return parts


def _check_link_target(name: str, parts: tuple[str, ...], target: str, archive: Path, *, hard: bool) -> None:
    """Lexically resolve a link target; it must stay inside the extraction root."""
    kind = "hardlink" if hard else "symlink"
    t = target.replace("\\", "/")
    if not t or t.startswith("/") or re.match(r"^[A-Za-z]:", t):
        raise UnsafeArchiveError(f"{archive}: {kind} {name!r} points to {target!r}, outside the destination")
    stack = [] if hard else list(parts[:-1])
    for p in t.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not stack:
                raise UnsafeArchiveError(
                    f"{archive}: {kind} {name!r} points to {target!r}, outside the destination"
                )
            stack.pop()
        else:
            stack.append(p)


def _select(keys: list[str], members: MemberFilter, archive: Path) -> list[bool]:
    if members is None:
        return [True] * len(keys)
    if callable(members):
        return [bool(members(k)) for k in keys]
    wanted = [_member_key(m) for m in members]
    hits = dict.fromkeys(wanted, False)
    chosen = []
    for k in keys:
        ok = False
        for w in wanted:
            if k == w or k.startswith(w + "/"):
                hits[w] = ok = True
        chosen.append(ok)
    missing = [w for w, hit in hits.items() if not hit]
    if missing:
        raise PolymodalError(f"{archive}: no member named {', '.join(map(repr, missing))} in the archive")
    return chosen


def _check_no_symlink_parent(
    name: str, parts: tuple[str, ...], symlinks: set[tuple[str, ...]], archive: Path
) -> None:
    for i in range(1, len(parts)):
        if parts[:i] in symlinks:
            raise UnsafeArchiveError(
                f"{archive}: member {name!r} lies under the symlink {'/'.join(parts[:i])!r}"
            )


def _plan_tar(tf: tarfile.TarFile, archive: Path, members: MemberFilter) -> list[tarfile.TarInfo]:
    infos = tf.getmembers()
    chosen = _select([_member_key(m.name) for m in infos], members, archive)
    by_parts: dict[tuple[str, ...], tarfile.TarInfo] = {}
    for m in infos:
        try:
            by_parts[_safe_parts(m.name, archive)] = m
        except UnsafeArchiveError:
            pass
    symlinks = {p for p, m in by_parts.items() if m.issym()}
    selected = []
    for m, ok in zip(infos, chosen, strict=True):
        if not ok:
            continue
        parts = _safe_parts(m.name, archive)
        if not parts:
            continue
        if m.ischr() or m.isblk() or m.isfifo() or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device or special file")
        _check_no_symlink_parent(m.name, parts, symlinks, archive)
        if m.issym():
            _check_link_target(m.name, parts, m.linkname, archive, hard=False)
        elif m.islnk():
            _check_link_target(m.name, parts, m.linkname, archive, hard=True)
            tparts = _safe_parts(m.linkname, archive)
            target = by_parts.get(tparts)
            if target is None or not target.isfile():
                raise UnsafeArchiveError(
                    f"{archive}: hardlink {m.name!r} points to {m.linkname!r}, not a regular file in the archive"
                )
            _check_no_symlink_parent(m.linkname, tparts, symlinks, archive)
        selected.append(m)
    return selected


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _plan_zip(zf: zipfile.ZipFile, archive: Path, members: MemberFilter) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    chosen = _select([_member_key(i.filename) for i in infos], members, archive)
    symlinks = set()
    for i in infos:
        if stat.S_ISLNK(_zip_mode(i)):
            try:
                symlinks.add(_safe_parts(i.filename, archive))
            except UnsafeArchiveError:
                pass
    selected = []
    for info, ok in zip(infos, chosen, strict=True):
        if not ok:
            continue
        parts = _safe_parts(info.filename, archive)
        if not parts:
            continue
        mode = _zip_mode(info)
        if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK):
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a device or special file")
        _check_no_symlink_parent(info.filename, parts, symlinks, archive)
        if stat.S_ISLNK(mode):
            target = zf.read(info).decode("utf-8", "surrogateescape")
            _check_link_target(info.filename, parts, target, archive, hard=False)
        selected.append(info)
    return selected


def _extract_zip(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], root: Path, archive: Path) -> list[str]:
    names = []
    for info in infos:
        parts = _safe_parts(info.filename, archive)
        target = root.joinpath(*parts)
        mode = _zip_mode(info)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if stat.S_ISLNK(mode):
            os.symlink(zf.read(info).decode("utf-8", "surrogateescape"), target)
        else:
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            if mode & 0o111:
                target.chmod(0o755)
        names.append("/".join(parts))
    return names


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def _merge_move(src: Path, dst: Path) -> None:
    if src.is_dir() and not src.is_symlink() and dst.is_dir() and not dst.is_symlink():
        for child in list(src.iterdir()):
            _merge_move(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


def safe_extract(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    members: MemberFilter = None,
) -> list[Path]:
    """Extract a ``.zip`` or ``.tar[.gz|.bz2|.xz]`` into ``dest``; return the extracted files (not folders).

    Every selected member is checked before anything is written: absolute paths, ``..`` components, members
    under a symlink, symlinks/hardlinks pointing outside ``dest`` and device/special files raise
    :class:`UnsafeArchiveError` (a :class:`DownloadError`) naming the member. Extraction goes to a temp folder
    beside ``dest`` that is merged into ``dest`` only on success, so a failure leaves ``dest`` untouched.
    ``members``: names to keep (a name selects that member and everything under it) or a predicate on the
    member name (``./`` prefix and trailing ``/`` stripped).
    """
    archive = Path(archive)
    dest = Path(dest)
    if not archive.is_file():
        raise DownloadError(f"{archive}: archive not found")
    dest.parent.mkdir(parents=True, exist_ok=True)
    is_zip = zipfile.is_zipfile(archive)
    if not is_zip and not tarfile.is_tarfile(archive):
        raise DownloadError(f"{archive}: not a zip or tar archive")
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-"))
    try:
        try:
            if is_zip:
                with zipfile.ZipFile(archive) as zf:
                    names = _extract_zip(zf, _plan_zip(zf, archive, members), tmp, archive)
            else:
                with tarfile.open(archive, "r:*") as tf:
                    plan = _plan_tar(tf, archive, members)
                    kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    tf.extractall(tmp, members=plan, **kwargs)
                    names = ["/".join(_safe_parts(m.name, archive)) for m in plan if not m.isdir()]
        except PolymodalError:
            raise
        except getattr(tarfile, "FilterError", ()) as exc:  # Python's "data" filter caught an escape
            raise UnsafeArchiveError(f"{archive}: unsafe member: {exc}") from exc
        except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise DownloadError(f"{archive}: extraction failed: {type(exc).__name__}: {exc}") from exc
        real_root = tmp.resolve()
        for p in tmp.rglob("*"):
            if p.is_symlink() and not _within(p.resolve(), real_root):
                raise UnsafeArchiveError(
                    f"{archive}: symlink {p.relative_to(tmp).as_posix()!r} resolves outside the destination"
                )
        dest.mkdir(parents=True, exist_ok=True)
        for child in list(tmp.iterdir()):
            _merge_move(child, dest / child.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [dest.joinpath(*n.split("/")) for n in dict.fromkeys(names)]


# ------------------------------------------------------------------------------------------------ registry


@dataclass
class DatasetSpec:
    """A fetchable data set.

    ``fetch(folder, force)`` fills ``folder`` (= ``cache_dir()/datasets/<name>``, already created) and returns
    it; ``force`` asks it to re-download even files it already has. It must raise :class:`DownloadError` (or
    another :class:`PolymodalError`) on failure. ``licence_note`` is shown to users before they rely on the data.
    """

    name: str
    description: str
    fetch: Callable[[Path, bool], Path]
    licence_note: str


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add (or replace) ``spec`` in the registry and return it."""
    _REGISTRY[spec.name] = spec
    return spec


def list_datasets() -> list[DatasetSpec]:
    """Registered data sets, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_dataset(name: str) -> DatasetSpec:
    """The spec registered as ``name``; unknown names raise :class:`PolymodalError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none registered)"
        raise PolymodalError(f"unknown dataset {name!r}; known datasets: {known}") from None


def is_complete(name: str) -> bool:
    """Whether ``fetch_dataset(name)`` has already completed in the current cache."""
    return (dataset_dir(name) / COMPLETE_MARKER).is_file()


def fetch_dataset(name: str, force: bool = False) -> Path:
    """Make data set ``name`` available in ``cache_dir()/datasets/<name>/`` and return that folder.

    Idempotent: once a fetch completed (``.complete`` marker) later calls return at once; ``force=True``
    drops the marker and fetches again.
    """
    spec = get_dataset(name)
    folder = dataset_dir(name)
    marker = folder / COMPLETE_MARKER
    if marker.is_file() and not force:
        return folder
    marker.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    spec.fetch(folder, force)
    tmp = marker.with_name(marker.name + ".tmp")
    tmp.write_text(json.dumps({"name": name, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
    os.replace(tmp, marker)
    return folder

"""Dataset cache: downloads against a local HTTP server, safe extraction, the registry and ml-100k conversion.

No internet: every URL points at a ThreadingHTTPServer on 127.0.0.1 serving a temp folder.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import time
import zipfile
from functools import partial
from pathlib import Path

import pytest

import polymodal.core.datasets as cds
import polymodal.recsys.datasets as rds
from polymodal.core.datasets import (
    DatasetSpec,
    UnsafeArchiveError,
    cache_dir,
    dataset_url,
    download,
    fetch_dataset,
    get_dataset,
    list_datasets,
    register_dataset,
    safe_extract,
    sha256_file,
)
from polymodal.core.errors import DownloadError, PolymodalError

# ----------------------------------------------------------------------------------------------- server


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves ``directory``; ``/flaky/NAME`` answers 500 on its first request, ``/slow/NAME`` stalls."""

    def do_GET(self):  # noqa: N802 (http.server naming)
        stats = self.server.stats
        stats[self.path] = stats.get(self.path, 0) + 1
        if self.path.startswith("/flaky/"):
            if stats[self.path] == 1:
                self.send_error(500, "try again")
                return
            self.path = self.path[len("/flaky") :]
        elif self.path.startswith("/slow/"):
            time.sleep(0.6)
            self.path = self.path[len("/slow") :]
        super().do_GET()

    def log_message(self, *args):  # keep test output quiet
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # client hung up on a stalled response
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    httpd = _Server(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    httpd.stats = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    httpd.root = root
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYMODAL_CACHE", str(tmp_path / "cache"))
    for var in ("POLYMODAL_MIRROR_ML_100K", "POLYMODAL_MIRROR_ML_100K_RECBOLE"):
        monkeypatch.delenv(var, raising=False)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------------------------- download


def test_cache_dir_honours_env(tmp_path):
    assert cache_dir() == tmp_path / "cache"
    assert cache_dir().is_dir()


def test_download_with_checksum(server, tmp_path):
    data = b"polymodal" * 50_000
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "out" / "blob.bin"
    got = download(f"{server.url}/blob.bin", dest, sha256=_sha(data).upper(), progress=True)
    assert got == dest
    assert dest.read_bytes() == data
    assert sha256_file(dest) == _sha(data)
    assert _leftovers(dest.parent) == []


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    (server.root / "blob.bin").write_bytes(b"actual bytes")
    dest = tmp_path / "out" / "blob.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        download(f"{server.url}/blob.bin", dest, sha256=wrong, progress=False)
    msg = str(info.value)
    assert f"{server.url}/blob.bin" in msg and wrong in msg and _sha(b"actual bytes") in msg
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []
    assert server.stats["/blob.bin"] == 1  # a mismatch is not retried


def test_404_fails_fast_without_retries(server, tmp_path):
    dest = tmp_path / "missing.bin"
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="404"):
        download(f"{server.url}/missing.bin", dest, progress=False)  # default backoff 1 s
    assert time.perf_counter() - t0 < 0.9
    assert server.stats["/missing.bin"] == 1
    assert not dest.exists() and list(tmp_path.glob(".missing.bin*")) == []


def test_500_then_200_is_retried(server, tmp_path):
    data = b"second time lucky"
    (server.root / "blob.bin").write_bytes(data)
    dest = tmp_path / "blob.bin"
    download(f"{server.url}/flaky/blob.bin", dest, sha256=_sha(data), backoff=0.01, progress=False)
    assert dest.read_bytes() == data
    assert server.stats["/flaky/blob.bin"] == 2


def test_timeout_retried_then_reported(server, tmp_path):
    (server.root / "blob.bin").write_bytes(b"x")
    dest = tmp_path / "blob.bin"
    with pytest.raises(DownloadError, match=r"(?i)timed out.*2 attempts"):
        download(f"{server.url}/slow/blob.bin", dest, timeout=0.15, retries=1, backoff=0.01, progress=False)
    assert server.stats["/slow/blob.bin"] == 2
    assert not dest.exists() and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------------------------- extract


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                name, data = e
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_safe_extract_tar_and_members_filter(tmp_path):
    arc = _tar(
        tmp_path / "ok.tar.gz",
        [
            ("./pkg/a.txt", b"A"),
            ("pkg/sub/b.txt", b"B"),
            ("other.txt", b"O"),
            _link("pkg/alias", "sub/b.txt"),
        ],
    )
    dest = tmp_path / "dest"
    files = safe_extract(arc, dest, members=["pkg"])
    assert files == [dest / "pkg/a.txt", dest / "pkg/sub/b.txt", dest / "pkg/alias"]
    assert (dest / "pkg/alias").read_text() == "B"
    assert not (dest / "other.txt").exists()
    only = safe_extract(arc, tmp_path / "d2", members=lambda n: n.endswith("other.txt"))
    assert only == [tmp_path / "d2/other.txt"]
    with pytest.raises(PolymodalError, match="nope"):
        safe_extract(arc, tmp_path / "d3", members=["nope"])
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad, needle",
    [
        (("../evil", b"x"), "../evil"),
        (("/abs/evil", b"x"), "/abs/evil"),
        (_link("link", "../../outside"), "link"),
        (_link("abslink", "/etc/passwd"), "abslink"),
        (_link("hard", "../outside", tarfile.LNKTYPE), "hard"),
        (_link("dev", "", tarfile.CHRTYPE), "dev"),
    ],
)
def test_safe_extract_rejects_unsafe_tar(tmp_path, bad, needle):
    arc = _tar(tmp_path / "bad.tar.gz", [("good.txt", b"fine"), bad])
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("keep")
    with pytest.raises(UnsafeArchiveError) as info:
        safe_extract(arc, dest)
    assert needle in str(info.value)
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]  # untouched: not even good.txt
    assert _leftovers(tmp_path) == []
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "outside").exists()


def test_safe_extract_rejects_symlink_chain_escape(tmp_path):
    # each link looks inside on its own; through d/s the second one resolves above the root
    arc = _tar(tmp_path / "chain.tar", [_link("d/s", ".."), _link("x", "d/s/..")])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="'x'"):
        safe_extract(arc, dest)
    assert not dest.exists() and _leftovers(tmp_path) == []


def test_safe_extract_rejects_member_under_symlink(tmp_path):
    arc = _tar(tmp_path / "under.tar", [_link("lnk", "."), ("lnk/f.txt", b"x")])
    with pytest.raises(UnsafeArchiveError, match="lnk/f.txt"):
        safe_extract(arc, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_safe_extract_rejects_zip_traversal(tmp_path):
    arc = tmp_path / "bad.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("fine.txt", "ok")
        zf.writestr("../evil.txt", "no")
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=r"\.\./evil\.txt"):
        safe_extract(arc, dest)
    assert not dest.exists() and not (tmp_path / "evil.txt").exists() and _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------------------- registry


def test_unknown_dataset_lists_known_names():
    with pytest.raises(PolymodalError) as info:
        get_dataset("no-such-data")
    msg = str(info.value)
    assert "no-such-data" in msg and "ml-100k" in msg and "ml-100k-recbole" in msg
    with pytest.raises(PolymodalError):
        fetch_dataset("no-such-data")
    assert {"ml-100k", "ml-100k-recbole"} <= {s.name for s in list_datasets()}
    assert all(s.licence_note for s in list_datasets())


def test_fetch_is_idempotent_and_force_refetches(monkeypatch):
    monkeypatch.setattr(cds, "_REGISTRY", dict(cds._REGISTRY))
    calls = []

    def fetch(folder: Path, force: bool) -> Path:
        calls.append(force)
        (folder / "data.txt").write_text("x")
        return folder

    register_dataset(DatasetSpec("toy", "a toy", fetch, "public domain"))
    folder = fetch_dataset("toy")
    assert folder == cache_dir() / "datasets" / "toy" and (folder / ".complete").is_file()
    assert fetch_dataset("toy") == folder and calls == [False]
    fetch_dataset("toy", force=True)
    assert calls == [False, True]


def test_failed_fetch_is_not_marked_complete(monkeypatch):
    monkeypatch.setattr(cds, "_REGISTRY", dict(cds._REGISTRY))

    def fetch(folder: Path, force: bool) -> Path:
        raise DownloadError("boom")

    register_dataset(DatasetSpec("broken", "fails", fetch, ""))
    with pytest.raises(DownloadError):
        fetch_dataset("broken")
    assert not (cache_dir() / "datasets" / "broken" / ".complete").exists()


def test_mirror_env_var(monkeypatch):
    url = "https://example.org/a/b/file.zip"
    assert dataset_url("ml-100k", url) == url
    monkeypatch.setenv("POLYMODAL_MIRROR_ML_100K", "http://127.0.0.1:1/mirror/")
    assert dataset_url("ml-100k", url) == "http://127.0.0.1:1/mirror/file.zip"


# ----------------------------------------------------------------------------------------------- ml-100k

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"
_G = ["0"] * 19


def _flags(*idx: int) -> str:
    f = list(_G)
    for i in idx:
        f[i] = "1"
    return "|".join(f)


U_ITEM = (
    f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}\n"
    f"12|Usual Suspects, The (1995)|14-Aug-1995||http://x|{_flags(6, 16)}\n"
    f"267|unknown||||{_flags(0)}\n"
    f"1300|Caf\xe9 au lait|01-Jan-1994||http://x|{_flags(8)}\n"
)


def _fake_ml100k(root: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", U_DATA)
        zf.writestr("ml-100k/u.item", U_ITEM.encode("latin-1"))
        zf.writestr("ml-100k/README", "not needed")
    data = buf.getvalue()
    (root / "ml-100k.zip").write_bytes(data)
    return data


def test_fetch_ml100k_builds_recbole_atomic_files(server, monkeypatch):
    data = _fake_ml100k(server.root)
    monkeypatch.setattr(rds, "ML100K_SHA256", _sha(data))
    monkeypatch.setenv("POLYMODAL_MIRROR_ML_100K", server.url)

    folder = fetch_dataset("ml-100k")
    assert folder == cache_dir() / "datasets" / "ml-100k"
    inter = (folder / "ml-100k" / "ml-100k.inter").read_text(encoding="utf-8").splitlines()
    assert inter[0] == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    assert inter[1:] == U_DATA.splitlines()
    item = (folder / "ml-100k" / "ml-100k.item").read_text(encoding="utf-8").splitlines()
    assert item[0] == "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"
    assert item[1:] == [
        "1\tToy Story\t1995\tAnimation Children's Comedy",
        "12\tUsual Suspects, The\t1995\tCrime Thriller",
        "267\tunknown\t\tunknown",
        "1300\tCaf\xe9 au lait\t1994\tDrama",
    ]
    assert not (folder / "ml-100k" / "ml-100k.user").exists()  # the fake archive has no u.user
    assert server.stats == {"/ml-100k.zip": 1}
    assert sorted(p.name for p in folder.iterdir()) == [".complete", "ml-100k", "ml-100k.zip"]

    def no_download(*a, **k):
        raise AssertionError("second fetch must not download")

    monkeypatch.setattr(rds, "download", no_download)
    t0 = time.perf_counter()
    assert fetch_dataset("ml-100k") == folder
    assert time.perf_counter() - t0 < 0.1
    assert server.stats == {"/ml-100k.zip": 1}


def test_fetch_ml100k_checksum_mismatch(server, monkeypatch):
    _fake_ml100k(server.root)
    monkeypatch.setenv("POLYMODAL_MIRROR_ML_100K", server.url)  # real pinned checksum: cannot match the fake
    with pytest.raises(DownloadError, match=rds.ML100K_SHA256):
        fetch_dataset("ml-100k")
    folder = cache_dir() / "datasets" / "ml-100k"
    assert not (folder / ".complete").exists() and not (folder / "ml-100k.zip").exists()
    assert _leftovers(folder) == []


def test_fetch_ml100k_recbole_from_local_wheel(server, monkeypatch):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "user_id:token\titem_id:token\n1\t2\n")
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.item", "item_id:token\n2\n")
        zf.writestr("recbole/dataset_example/ml-1m/ml-1m.inter", "no")
    (server.root / "recbole-1.2.1-py3-none-any.whl").write_bytes(buf.getvalue())
    monkeypatch.setattr(rds, "RECBOLE_WHEEL_SHA256", _sha(buf.getvalue()))
    monkeypatch.setenv("POLYMODAL_MIRROR_ML_100K_RECBOLE", server.url)
    monkeypatch.setattr(rds.importlib.metadata, "distribution", _no_dist)

    assert rds.find_recbole_ml100k() is None
    folder = fetch_dataset("ml-100k-recbole")
    assert sorted(p.name for p in (folder / "ml-100k").iterdir()) == ["ml-100k.inter", "ml-100k.item"]
    assert rds.find_recbole_ml100k() == folder / "ml-100k"


def _no_dist(name):
    raise rds.importlib.metadata.PackageNotFoundError(name)

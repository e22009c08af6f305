"""On-disk cache of sentence embeddings, keyed by (model fingerprint, text): one SQLite file, safe across processes."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """``get`` returns the stored vectors for the texts it has; ``put`` stores new ones (float32, one row per text).

    Rows written by a crashed process are either fully committed or absent (SQLite transactions), so the cache
    never holds half a batch.
    """

    def __init__(self, path: Path, model_key: str):
        self.path = Path(path)
        self.model_key = model_key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection shared by the threads that use this encoder
        self._conn = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " model TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL,"
            " PRIMARY KEY (model, text_hash))"
        )
        self._conn.commit()

    def get(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Map text -> vector for the texts already cached under this model."""
        found: dict[str, np.ndarray] = {}
        by_hash = {text_key(t): t for t in texts}
        hashes = list(by_hash)
        for start in range(0, len(hashes), 500):  # SQLite caps the number of bound parameters
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._conn.execute(
                    f"SELECT text_hash, dim, vec FROM embeddings WHERE model = ? AND text_hash IN ({marks})",
                    [self.model_key, *chunk],
                ).fetchall()
            for h, dim, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size == dim:
                    found[by_hash[h]] = vec
        return found

    def put(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = []
        for text, vec in items:
            v = np.ascontiguousarray(vec, dtype=np.float32)
            rows.append((self.model_key, text_key(text), int(v.size), v.tobytes()))
        with self._lock, self._conn:
            self._conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)", rows)

    def count(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM embeddings WHERE model = ?", [self.model_key]).fetchone()
        return int(n)

    def close(self) -> None:
        self._conn.close()

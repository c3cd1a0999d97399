"""The FAISS index: derived from `segments.embedding`, never the source of truth.

Ids are segment ids. `sync` brings the file in line with the database (adds rows it lacks,
drops ids whose rows are gone, so deletes and re-indexing leave no stale vectors); `rebuild`
starts from scratch. Writers hold a file lock, since several workers may finish videos at
once, and the file is replaced atomically (temp file + rename), so a reader never sees half.

Index type by size: exact inner product (IndexFlatIP) up to settings.search.exact_max
vectors — at 384-d that is at most ~300 MB and a few ms per query on 2 cores; above it,
HNSW (M=32, efConstruction=80, efSearch=128) over 8-bit scalar-quantised vectors, which
keeps recall@10 high at a quarter of the memory.
"""

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import select

from core.config import Settings
from store.db import session_scope
from store.schema import Segment

BATCH = 50_000
_cache_lock = threading.Lock()
_cache: dict[str, tuple[float, faiss.Index]] = {}


def new_index(dim: int, expected: int, settings: Settings) -> faiss.Index:
    if expected <= settings.search.exact_max:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    hnsw = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 80
    hnsw.hnsw.efSearch = 128
    return faiss.IndexIDMap2(hnsw)


@contextmanager
def _writer(settings: Settings):
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.faiss_path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _save(index: faiss.Index, path: Path) -> None:
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    faiss.write_index(index, str(tmp))
    os.replace(tmp, path)


def _read(path: Path) -> faiss.Index | None:
    return faiss.read_index(str(path)) if path.exists() else None


def _ids(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def _vectors(settings: Settings, ids: np.ndarray | None):
    """(ids, vectors) batches of the segments with embeddings, all or the given ids."""
    with session_scope(settings) as s:
        if ids is None:
            stmt = select(Segment.id, Segment.embedding).where(Segment.embedding.is_not(None))
            rows = s.execute(stmt.order_by(Segment.id).execution_options(yield_per=BATCH))
            for part in rows.partitions(BATCH):
                yield _stack(part)
        else:
            for i in range(0, len(ids), BATCH):
                part = s.execute(select(Segment.id, Segment.embedding).where(
                    Segment.id.in_(ids[i:i + BATCH].tolist()),
                    Segment.embedding.is_not(None))).all()
                if part:
                    yield _stack(part)


def _stack(rows) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    vecs = np.stack([np.frombuffer(r[1], np.float32) for r in rows])
    return ids, vecs


def _db_ids(settings: Settings) -> np.ndarray:
    with session_scope(settings) as s:
        ids = s.scalars(select(Segment.id).where(Segment.embedding.is_not(None))).all()
    return np.asarray(ids, np.int64)


def rebuild(settings: Settings) -> int:
    with _writer(settings):
        total = len(_db_ids(settings))
        index = None
        for ids, vecs in _vectors(settings, None):
            if index is None:
                index = new_index(vecs.shape[1], total, settings)
            index.add_with_ids(vecs, ids)
        if index is None:
            settings.faiss_path.unlink(missing_ok=True)
            return 0
        _save(index, settings.faiss_path)
        return index.ntotal


def sync(settings: Settings) -> int:
    """Add what the database has and the index lacks; drop what the database no longer has.
    Returns the number of vectors in the index."""
    with _writer(settings):
        index = _read(settings.faiss_path)
        db = _db_ids(settings)
        have = _ids(index) if index is not None else np.zeros(0, np.int64)
        stale = np.setdiff1d(have, db, assume_unique=True)
        missing = np.setdiff1d(db, have, assume_unique=True)
        if not len(stale) and not len(missing):
            return len(have)
        if index is not None and len(stale):
            index.remove_ids(faiss.IDSelectorBatch(stale))
        for ids, vecs in _vectors(settings, missing):
            if index is None or index.d != vecs.shape[1]:
                index = new_index(vecs.shape[1], len(db), settings)
            index.add_with_ids(vecs, ids)
        if index is None or index.ntotal == 0:
            settings.faiss_path.unlink(missing_ok=True)
            return 0
        _save(index, settings.faiss_path)
        return index.ntotal


def load(settings: Settings) -> faiss.Index | None:
    """The saved index, re-read only when the file changed."""
    path = settings.faiss_path
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    with _cache_lock:
        cached = _cache.get(str(path))
        if cached is None or cached[0] != mtime:
            cached = (mtime, faiss.read_index(str(path)))
            _cache[str(path)] = cached
        return cached[1]


def search(settings: Settings, query: np.ndarray, k: int,
           candidates: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(segment id, inner product) best first. With candidates, only those ids are searched
    (a selector inside FAISS, never a filter applied to a global top-k)."""
    index = load(settings)
    if index is None or index.ntotal == 0 or (candidates is not None and not len(candidates)):
        return []
    params = None
    if candidates is not None:
        sel = faiss.IDSelectorBatch(np.asarray(candidates, np.int64))
        inner = faiss.downcast_index(index.index)
        params = (faiss.SearchParametersHNSW(sel=sel, efSearch=max(128, 2 * k))
                  if isinstance(inner, faiss.IndexHNSW) else faiss.SearchParameters(sel=sel))
        k = min(k, len(candidates))
    scores, ids = index.search(query.reshape(1, -1).astype(np.float32), k, params=params)
    return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

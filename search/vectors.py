"""The FAISS side of search: derived from `segments.embedding`, never the source of truth.

Ids are segment ids. Only segments embedded by the configured text embedder (its model id,
`model.embed.model_id`) are indexed, since a query vector is comparable only with vectors of
the same model; switching models rebuilds the index on the next `sync`.

Files, next to each other in the data directory (`settings.faiss_path` = vectors.faiss):

- vectors.faiss: the *main* index, rewritten only by `rebuild` and by compaction.
- vectors.faiss.state.npz: the *delta* (vectors added since the last compaction, float32,
  searched exactly), the *deleted* set (ids still in main whose rows are gone; excluded at
  search time with a FAISS selector), and the bookkeeping that keeps `sync` cheap. It records
  the size, mtime and inode of the main file it goes with, so a crash between the two
  renames is detected and answered with a rebuild.

Cheap sync: for every video the state keeps its generation stamp (`videos.updated_at`, which
the pipeline bumps after writing a chunk's segments, and which vanishes with the row on
delete), the ids it has in the index (as runs of consecutive ids) and a signature (sum of a
hash of id and embedding). `sync` reads `videos (id, updated_at)` and the rows above a
high-water mark on id (a safety net for writers that do not touch the video row), and looks
at the segments of only the videos whose stamp changed, appeared or vanished. A video that
only gained rows (the signature of its old rows is unchanged) gets the new ones appended; any
other change (rows removed, or an id reused with new content, which SQLite can do) replaces
all of that video's vectors. Work and I/O are proportional to what changed, not to the index;
`sync(full=True)` compares every video, and `rebuild` starts from scratch.

Index type by size (N = vectors to index):

- N <= settings.search.exact_max (50k by default): IndexIDMap2(IndexFlatIP), exact inner
  product = cosine on unit vectors; ~3 ms per query at 50k on one core (a flat scan grows
  linearly: 7 ms at 100k), which is where IVF takes over.
- above: IndexIVFScalarQuantizer, 8-bit scalar quantisation (384 B + 8 B id per vector, a
  quarter of float32: 10M vectors = 3.9 GB, which fits beside the database in 24 GB), inner
  product, not by residual. nlist = the power of two nearest sqrt(N), clamped to
  [256, 8192] (about sqrt(N) vectors per list), k-means on 40 x nlist sampled vectors, 10
  iterations. Above 1024 lists the coarse quantizer is an HNSW graph (M=32) over the
  centroids, so assigning 10M vectors costs ~N log(nlist) instead of N x nlist distance
  computations. nprobe = 32 by default, or as many lists as hold MIN_SCAN (16k) vectors
  when that is more (small IVFs: at 60k vectors nprobe 32 of 256 lists gave recall 0.93)
  (bench/search_latency.py: recall@10 >= 0.95 against exact float32 search on MiniLM-like
  vectors; 8-bit quantisation alone caps it near 0.99).
  HNSW over all vectors was rejected: faiss's HNSW cannot remove ids (every delete or
  re-index would mean a rebuild) and its build costs ~M x efConstruction distance
  computations per vector; IVF-PQ was not needed at this size and costs recall. The IVF is
  re-planned (rebuilt from the database) when N drifts 4x from the size it was trained for.

Compaction: the delta is folded into main once it holds more than max(2048, min(32768, 5% of
main)) vectors, and the deleted ids are removed from main once they exceed 10% of it; both
rewrite vectors.faiss (atomically). Until then a sync writes only the small state file.

Filtered search: `search(..., candidates=ids)` restricts FAISS itself with an id selector
(a bitmap over the id range), so a filter never post-filters a global top-k. On IVF the
number of probed lists grows with 1/sqrt(selectivity), since the filtered top-k lies further
from the query. Small candidate sets do not come here at all: `search.query` scores them
exactly from their stored embeddings (`exact_search`).

Writers hold an fcntl lock (vectors.faiss.lock) since several workers may finish videos at
once; every file is written to a temp file, fsynced and renamed, so a reader never sees half.
Readers cache what they loaded and reload when a file's (size, mtime, inode) changes.
"""

import fcntl
import hashlib
import json
import logging
import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import func, select

from core.config import Settings
from core.errors import ModelUnavailable
from store.db import session_scope
from store.schema import Segment, Video

log = logging.getLogger(__name__)

FLAT, IVF = "flat", "ivf"
NPROBE = 32
MIN_SCAN = 16_384            # vectors an IVF query scans at least (recall of small IVFs)
MIN_NLIST, MAX_NLIST = 256, 8192
TRAIN_PER_LIST = 40          # faiss warns below 39 training points per centroid
HNSW_QUANTIZER_ABOVE = 1024  # lists; below, a flat quantizer is as fast and exact
RETRAIN_FACTOR = 4           # re-plan the IVF when N moves this far from its trained size
DELTA_MIN, DELTA_MAX = 2048, 32768   # exact delta search stays around a millisecond
DELETED_FRACTION = 0.1       # compact once a tenth of main is dead weight
BATCH = 20_000

_cache_lock = threading.Lock()
_cache: dict[str, "Loaded"] = {}


# ---------------------------------------------------------------------------------------
# Index construction (shared with bench/search_latency.py, so the bench measures this code)

def plan(n: int, settings: Settings) -> dict:
    """The index kind and parameters for n vectors."""
    if n <= settings.search.exact_max:
        return {"kind": FLAT}
    nlist = min(MAX_NLIST, max(MIN_NLIST, 2 ** round(math.log2(max(n, 1)) / 2)))
    # Never more lists than k-means can fill (only with a tiny exact_max, as in tests).
    nlist = max(1, min(nlist, n // TRAIN_PER_LIST))
    return {"kind": IVF, "nlist": int(nlist), "trained_for": n}


def new_index(dim: int, spec: dict) -> faiss.Index:
    if spec["kind"] == FLAT:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    nlist = spec["nlist"]
    if nlist > HNSW_QUANTIZER_ABOVE:
        quantizer = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        quantizer.hnsw.efConstruction = 80
    else:
        quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                          faiss.METRIC_INNER_PRODUCT, False)
    # k-means on a flat index, then the centroids go into the (HNSW) quantizer: training
    # through the graph would rebuild it at every iteration.
    index.quantizer_trains_alone = 2
    index.cp.niter = 10
    index.nprobe = NPROBE
    return index


def train_size(spec: dict) -> int:
    return TRAIN_PER_LIST * spec["nlist"] if spec["kind"] == IVF else 0


def train(index: faiss.Index, sample: np.ndarray) -> None:
    if not index.is_trained:
        index.train(np.ascontiguousarray(sample, np.float32))


def index_kind(index: faiss.Index | None) -> str:
    if index is None:
        return ""
    return IVF if isinstance(faiss.downcast_index(index), faiss.IndexIVF) else FLAT


def _selector(ids: np.ndarray, max_id: int):
    """An id selector over candidate ids: a bitmap when the id range is dense enough (one
    bit per id up to max_id, tested in O(1)), a hash set otherwise."""
    # Timsort is linear on the already sorted ids a database returns; np.unique (hashing)
    # and the default sort take 50-700 ms on a million ids.
    ids = np.sort(np.asarray(ids, np.int64), kind="stable")
    ids = ids[np.r_[True, ids[1:] != ids[:-1]] & (ids >= 0) & (ids <= max_id)]
    if len(ids) and max_id < 64 * len(ids) + 4096:
        # Built from the ids alone (no pass over the whole id range): bits of one byte are
        # distinct, so their sum is their OR.
        byte, bit = ids >> 3, (1 << (ids & 7)).astype(np.uint8)
        first = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        bitmap = np.zeros(max_id // 8 + 1, np.uint8)
        bitmap[byte[first]] = np.add.reduceat(bit, first) if len(ids) else 0
        sel = faiss.IDSelectorBitmap(bitmap)
        sel._keep = bitmap       # the selector only points at it
        return sel
    return faiss.IDSelectorBatch(ids)


def search_index(index: faiss.Index, query: np.ndarray, k: int, *, allowed=None,
                 selectivity: float = 1.0, excluded=None, nprobe: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of one query; `allowed` and `excluded` are FAISS id selectors.
    On IVF, nprobe (default: NPROBE, or enough lists to scan MIN_SCAN vectors) grows as
    1/sqrt(selectivity): the filtered top-k lies further out."""
    if index is None or index.ntotal == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    sel = allowed
    if excluded is not None:
        sel = faiss.IDSelectorAnd(allowed, excluded) if allowed is not None else excluded
    if index_kind(index) == IVF:
        ivf = faiss.downcast_index(index)
        if nprobe is None:
            nprobe = max(NPROBE, math.ceil(ivf.nlist * MIN_SCAN / max(ivf.ntotal, 1)))
        probe = min(ivf.nlist, math.ceil(nprobe / math.sqrt(max(selectivity, 1e-9))))
        params = faiss.SearchParametersIVF(sel=sel, nprobe=probe)
        if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
            params.quantizer_params = faiss.SearchParametersHNSW(efSearch=max(64, 2 * probe))
    else:
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
    scores, ids = index.search(np.asarray(query, np.float32).reshape(1, -1), k, params=params)
    keep = ids[0] >= 0
    return np.clip(scores[0][keep], -1.0, 1.0), ids[0][keep]


def exact_search(query: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int
                 ) -> list[tuple[int, float]]:
    """Exact cosine over a small candidate set (unit vectors): (id, score) best first."""
    if not len(ids):
        return []
    scores = vectors @ np.asarray(query, np.float32)
    top = np.argsort(-scores, kind="stable")[:k]
    return [(int(ids[i]), float(np.clip(scores[i], -1.0, 1.0))) for i in top]


# ---------------------------------------------------------------------------------------
# State: delta, deleted set and per-video bookkeeping

@dataclass
class State:
    model: str = ""
    dim: int = 0
    main_stat: list | None = None      # (size, mtime_ns, inode) of the main file, or None
    main_kind: str = ""
    main_count: int = 0
    trained_for: int = 0
    hwm: int = 0                       # highest segment id ever indexed
    videos: dict = field(default_factory=dict)   # id -> {"stamp", "sig", "runs"}
    delta_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    delta_vecs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    deleted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def total(self) -> int:
        return self.main_count - len(self.deleted) + len(self.delta_ids)


def _state_path(settings: Settings) -> Path:
    return settings.faiss_path.with_name(settings.faiss_path.name + ".state.npz")


def _stat(path: Path) -> list | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_state(settings: Settings, st: State) -> None:
    meta = {k: getattr(st, k) for k in ("model", "dim", "main_stat", "main_kind", "main_count",
                                        "trained_for", "hwm", "videos")}
    blob = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, meta=blob, delta_ids=st.delta_ids, delta_vecs=st.delta_vecs,
                     deleted=st.deleted)
    _atomic_write(_state_path(settings), write)


def _read_state(settings: Settings) -> State | None:
    path = _state_path(settings)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            return State(**meta, delta_ids=z["delta_ids"], delta_vecs=z["delta_vecs"],
                         deleted=z["deleted"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("vector index state unreadable (%s): it will be rebuilt", e)
        return None


def _runs(ids: np.ndarray) -> list[list[int]]:
    """Sorted ids as [first, count] runs: a chunk's rows are mostly consecutive ids."""
    if not len(ids):
        return []
    ids = np.sort(ids)
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(ids)]))
    return [[int(ids[a]), int(b - a)] for a, b in zip(starts, ends)]


def _unruns(runs: list[list[int]]) -> np.ndarray:
    if not runs:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in runs])


def _row_hash(seg_id: int, emb: bytes) -> int:
    h = hashlib.blake2b(emb, digest_size=8, key=int(seg_id).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little")


def _sig(rows) -> int:
    return sum(_row_hash(i, e) for i, e in rows) % (1 << 64)


def _stamp(value) -> str:
    return value.isoformat() if value is not None else ""


# ---------------------------------------------------------------------------------------
# Writers

@contextmanager
def _writer(settings: Settings):
    settings.faiss_path.parent.mkdir(parents=True, exist_ok=True)
    lock = settings.faiss_path.with_name(settings.faiss_path.name + ".lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _target_model(settings: Settings, state: State | None) -> str | None:
    """The embedder queries use; when it cannot be loaded here, keep what the index has."""
    from model import embed
    try:
        return embed.model_id(settings)
    except ModelUnavailable:
        if state is not None and state.model:
            return state.model
        with session_scope(settings) as s:
            return s.scalar(select(Segment.embed_model).where(Segment.embedding.is_not(None))
                            .order_by(Segment.id.desc()).limit(1))


def _embedded(model: str):
    return (Segment.embed_model == model, Segment.embedding.is_not(None))


def _decode(rows, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    if not rows:
        return ids, np.zeros((0, dim or 0), np.float32)
    return ids, np.stack([np.frombuffer(r[1], np.float32) for r in rows])


def rebuild(settings: Settings) -> int:
    """Rebuild the index from the database; returns the number of vectors in it."""
    with _writer(settings):
        state = _read_state(settings)
        return _rebuild(settings, _target_model(settings, state)).total


def sync(settings: Settings, *, full: bool = False) -> None:
    """Bring the index in line with the database: vectors of new segments added, those of
    deleted or replaced segments dropped. Cheap: only videos whose stamp changed are read."""
    with _writer(settings):
        state = _read_state(settings)
        model = _target_model(settings, state)
        if state is None or state.model != model or state.main_stat != _stat(settings.faiss_path):
            _rebuild(settings, model)
            return
        if _apply_changes(settings, state, full=full):
            _maybe_compact(settings, state)
            _save_state(settings, state)


def remove_video(settings: Settings, video_id: str) -> None:
    """Drop one video's vectors now, whatever the database says (a later `sync` adds them
    back if its segments are still there). `delete` needs only `sync`, after the rows go."""
    with _writer(settings):
        state = _read_state(settings)
        if state is None or video_id not in state.videos:
            return
        _drop(state, _unruns(state.videos.pop(video_id)["runs"]))
        _save_state(settings, state)


def _drop(state: State, ids: np.ndarray) -> None:
    in_delta = np.isin(state.delta_ids, ids)
    if in_delta.any():
        state.delta_ids = state.delta_ids[~in_delta]
        state.delta_vecs = state.delta_vecs[~in_delta]
    # Everything else may sit in main: excluded at search time until compaction.
    state.deleted = np.union1d(state.deleted, ids)


def _append(state: State, ids: np.ndarray, vecs: np.ndarray) -> None:
    if not len(ids):
        return
    if state.delta_vecs.shape[1] != vecs.shape[1]:
        state.delta_vecs = np.zeros((0, vecs.shape[1]), np.float32)
    state.dim = state.dim or int(vecs.shape[1])
    state.delta_ids = np.concatenate([state.delta_ids, ids])
    state.delta_vecs = np.concatenate([state.delta_vecs, vecs.astype(np.float32)])
    state.hwm = max(state.hwm, int(ids.max()))


def _apply_changes(settings: Settings, state: State, *, full: bool) -> bool:
    model = state.model
    with session_scope(settings) as s:
        # Stamps first: segments read afterwards are at least as new as them, so a write
        # that lands in between is seen again at the next sync (its stamp moves after it).
        stamps = {v: _stamp(t) for v, t in s.execute(select(Video.id, Video.updated_at))}
        fresh = set(s.scalars(select(Segment.video_id).distinct()
                              .where(Segment.id > state.hwm, *_embedded(model))))
        changed = {v for v, t in stamps.items()
                   if full or v in fresh or state.videos.get(v, {}).get("stamp") != t}
        gone = [v for v in state.videos if v not in stamps]
        if not changed and not gone:
            return False
        for v in gone:
            _drop(state, _unruns(state.videos.pop(v)["runs"]))
        for v in sorted(changed):
            rows = s.execute(select(Segment.id, Segment.embedding)
                             .where(Segment.video_id == v, *_embedded(model))
                             .order_by(Segment.id)).all()
            _update_video(state, v, stamps[v], rows)
    return True


def _update_video(state: State, video_id: str, stamp: str, rows) -> None:
    old = state.videos.get(video_id)
    ids, vecs = _decode(rows, state.dim)
    if len(ids) and state.dim and vecs.shape[1] != state.dim:
        raise ValueError(f"segment vectors of {video_id} have {vecs.shape[1]} dimensions, "
                         f"the index {state.dim}: rebuild it")
    sig = _sig(rows)
    record = {"stamp": stamp, "sig": str(sig), "runs": _runs(ids)}
    if old is None:
        _append(state, ids, vecs)
    elif old["sig"] != str(sig):
        before = _unruns(old["runs"])
        new = ~np.isin(ids, before)
        kept_sig = _sig([r for r, is_new in zip(rows, new) if not is_new])
        if np.isin(before, ids).all() and str(kept_sig) == old["sig"]:
            _append(state, ids[new], vecs[new])        # only gained rows
        else:
            _drop(state, before)                       # anything else: replace them all
            _append(state, ids, vecs)
    state.videos[video_id] = record      # even with no rows: its stamp is then known


def _rebuild(settings: Settings, model: str | None) -> State:
    """A fresh main index and state from the database (lock held)."""
    state = State(model=model or "")
    with session_scope(settings) as s:
        stamps = {v: _stamp(t) for v, t in s.execute(select(Video.id, Video.updated_at))}
    index, rows_by_video = None, {}
    if model:
        index, rows_by_video = _build_main(settings, state)
    for v, (ids, sig) in rows_by_video.items():
        state.videos[v] = {"stamp": stamps.get(v, ""), "sig": str(sig % (1 << 64)),
                           "runs": _runs(np.asarray(ids, np.int64))}
    _write_main(settings, state, index)
    _save_state(settings, state)
    return state


def _build_main(settings: Settings, state: State):
    """Stream every embedded segment of the model into a new main index; returns it and
    {video_id: (ids, signature)}."""
    model = state.model
    with session_scope(settings) as s:
        n = s.scalar(select(func.count()).select_from(Segment).where(*_embedded(model)))
        if not n:
            return None, {}
        spec = plan(n, settings)
        index = None
        if spec["kind"] == IVF:
            # A strided sample over the id range: every era of the library, not the oldest.
            stride = max(1, n // train_size(spec))
            sample = s.execute(select(Segment.id, Segment.embedding)
                               .where(*_embedded(model), Segment.id % stride == 0)).all()
            if len(sample) < train_size(spec) // 2:      # ids too sparse for the stride
                sample = s.execute(select(Segment.id, Segment.embedding)
                                   .where(*_embedded(model)).limit(train_size(spec))).all()
            _, vecs = _decode(sample)
            index = new_index(vecs.shape[1], spec)
            train(index, vecs)
            del sample, vecs
        ids_by_video: dict[str, list[int]] = {}
        sig_by_video: dict[str, int] = {}
        stmt = (select(Segment.id, Segment.embedding, Segment.video_id)
                .where(*_embedded(model)).order_by(Segment.id)
                .execution_options(yield_per=BATCH))
        for part in s.execute(stmt).partitions(BATCH):
            ids, vecs = _decode(part)
            if index is None:
                index = new_index(vecs.shape[1], spec)
            index.add_with_ids(vecs, ids)
            for seg_id, emb, video_id in part:
                ids_by_video.setdefault(video_id, []).append(seg_id)
                sig_by_video[video_id] = sig_by_video.get(video_id, 0) + _row_hash(seg_id, emb)
            state.hwm = max(state.hwm, int(ids.max()))
            state.dim = int(vecs.shape[1])
        state.trained_for = spec.get("trained_for", 0)
        return index, {v: (ids_by_video[v], sig_by_video[v]) for v in ids_by_video}


def _write_main(settings: Settings, state: State, index: faiss.Index | None) -> None:
    path = settings.faiss_path
    if index is None or index.ntotal == 0:
        path.unlink(missing_ok=True)
        state.main_kind, state.main_count = "", 0
    else:
        _atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))
        state.main_kind, state.main_count = index_kind(index), int(index.ntotal)
    state.main_stat = _stat(path)


def _maybe_compact(settings: Settings, state: State) -> None:
    """Fold the delta and the deleted set into main when they grow, and re-plan the index
    type when the size calls for another one."""
    exact_max = settings.search.exact_max
    if plan(state.total, settings)["kind"] == IVF and state.main_kind != IVF:
        _rebuild_into(settings, state)           # flat -> IVF: training needs everything
        return
    if state.main_kind == IVF and (
            state.total < exact_max // 2     # back to exact, with hysteresis against flapping
            or not state.trained_for / RETRAIN_FACTOR <= state.total
            <= state.trained_for * RETRAIN_FACTOR):
        _rebuild_into(settings, state)
        return
    delta_cap = min(DELTA_MAX, max(DELTA_MIN, state.main_count // 20))
    dead = len(state.deleted) > DELETED_FRACTION * state.main_count + 1000
    first = state.main_kind == "" and len(state.delta_ids)   # give the library its file
    if len(state.delta_ids) <= delta_cap and not dead and not first:
        return
    index = faiss.read_index(str(settings.faiss_path)) if state.main_kind else None
    if index is not None and len(state.deleted):
        index.remove_ids(faiss.IDSelectorBatch(state.deleted))
    if len(state.delta_ids):
        if index is None:
            index = new_index(state.delta_vecs.shape[1], {"kind": FLAT})
        index.add_with_ids(state.delta_vecs, state.delta_ids)
    _write_main(settings, state, index)
    state.delta_ids = np.zeros(0, np.int64)
    state.delta_vecs = np.zeros((0, state.dim or state.delta_vecs.shape[1]), np.float32)
    state.deleted = np.zeros(0, np.int64)


def _rebuild_into(settings: Settings, state: State) -> None:
    fresh = _rebuild(settings, state.model)
    for name in State.__dataclass_fields__:
        setattr(state, name, getattr(fresh, name))


# ---------------------------------------------------------------------------------------
# Readers

@dataclass
class Loaded:
    main: faiss.Index | None
    state: State
    keys: tuple
    excluded: object = None          # selector of the deleted ids, built once per load


def load(settings: Settings) -> Loaded | None:
    """What is on disk, re-read only when a file changed."""
    keys = (tuple(_stat(settings.faiss_path) or ()), tuple(_stat(_state_path(settings)) or ()))
    if not keys[1]:
        return None
    with _cache_lock:
        cached = _cache.get(str(settings.faiss_path))
        if cached is not None and cached.keys == keys:
            return cached
        state = _read_state(settings)
        if state is None:
            return None
        main = None
        if keys[0]:
            if cached is not None and cached.keys[0] == keys[0]:
                main = cached.main           # only the state moved: keep the big file
            else:
                main = faiss.read_index(str(settings.faiss_path))
        excluded = None
        if len(state.deleted):
            batch = faiss.IDSelectorBatch(state.deleted)
            excluded = faiss.IDSelectorNot(batch)
            excluded._keep = batch           # the Not only points at it
        loaded = Loaded(main, state, keys, excluded)
        _cache[str(settings.faiss_path)] = loaded
        return loaded


def indexed_model(settings: Settings) -> str | None:
    loaded = load(settings)
    return loaded.state.model if loaded is not None else None


def ids_of_videos(settings: Settings, video_ids: set[str]) -> np.ndarray | None:
    """The ids of those videos' vectors, from the index's own bookkeeping (no segment row is
    read); None when they are all the indexed vectors, so no restriction is needed."""
    loaded = load(settings)
    if loaded is None:
        return np.zeros(0, np.int64)
    videos = loaded.state.videos
    if all(v in video_ids for v, record in videos.items() if record["runs"]):
        return None
    return _unruns([run for v in sorted(video_ids & videos.keys()) for run in videos[v]["runs"]])


def size(settings: Settings) -> int:
    loaded = load(settings)
    return loaded.state.total if loaded is not None else 0


def ids(settings: Settings) -> np.ndarray:
    """Every id a search can return (sorted): main minus deleted, plus delta."""
    loaded = load(settings)
    if loaded is None:
        return np.zeros(0, np.int64)
    main = np.zeros(0, np.int64)
    if loaded.main is not None:
        inner = faiss.downcast_index(loaded.main)
        if isinstance(inner, faiss.IndexIVF):
            invlists = inner.invlists
            main = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i))
                                   .copy() for i in range(inner.nlist)] or [main])
        else:
            main = faiss.vector_to_array(loaded.main.id_map).astype(np.int64)
    main = np.setdiff1d(main, loaded.state.deleted)
    return np.union1d(main, loaded.state.delta_ids)


def search(settings: Settings, query: np.ndarray, k: int,
           candidates: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(segment id, cosine) best first. With candidates, only those ids are searched, by a
    selector inside FAISS (never a filter over a global top-k)."""
    loaded = load(settings)
    if loaded is None or k <= 0:
        return []
    st = loaded.state
    if candidates is not None:
        candidates = np.asarray(candidates, np.int64)
        if not len(candidates):
            return []
    allowed, selectivity = None, 1.0
    if candidates is not None and loaded.main is not None:
        allowed = _selector(candidates, max(st.hwm, int(candidates.max())))
        selectivity = min(1.0, len(candidates) / max(1, st.main_count))
    scores, found = search_index(loaded.main, query, k, allowed=allowed,
                                 selectivity=selectivity, excluded=loaded.excluded)
    hits = dict(zip(found.tolist(), scores.tolist()))
    if len(st.delta_ids):
        mask = np.isin(st.delta_ids, candidates) if candidates is not None else slice(None)
        for seg_id, score in exact_search(query, st.delta_ids[mask], st.delta_vecs[mask], k):
            hits[seg_id] = score             # the delta is newer than main
    return sorted(hits.items(), key=lambda h: -h[1])[:k]

"""The FAISS side of search: derived from `segments.embedding`, never the source of truth.

Ids are segment ids. Only segments embedded by the configured text embedder (its model id,
`model.embed.model_id`) are indexed, since a query vector is comparable only with vectors of
the same model; switching models rebuilds the index on the next `sync`.

Files, next to each other in the data directory (`settings.faiss_path` = vectors.faiss):

- vectors.faiss: the *main* index, rewritten only by `rebuild` and by compaction.
- vectors.faiss.attrs.npz: what filters test of main's vectors (below), written with it.
- vectors.faiss.state.npz: the *delta* (vectors added since the last compaction, float32,
  searched exactly, with their attrs), the *deleted* set (ids still in main whose rows are
  gone; excluded at search time), and the bookkeeping that keeps `sync` cheap. It records
  the size, mtime and inode of the two main files it goes with, so a crash between the
  renames is detected and answered with a rebuild (so is a state an older version wrote).

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

Filtered search. Every indexed vector carries what filters test (`Attrs`, 13 B): its
segment's start and end (ms), its kind and its video (an ordinal the state assigns). Main's
are kept in the index's own storage order (its inverted lists one after the other). A
filter (`Filter`: videos, time range, kinds) is evaluated on them in memory, inside
retrieval: no segment id is read from the database, and no global top-k is post-filtered.
- flat main: the filter over every vector gives an id selector (a bitmap), and the flat
  scan scores exactly the vectors it lets through.
- IVF main: only the lists a query probes are tested. The filter is first evaluated on the
  nprobe nearest lists; from the share of their vectors that pass, enough lists are
  probed to look at FILTER_MIN_PASS (8192) passing vectors, since the filtered top-k lies
  further out (bench/search_latency.py sweeps this over selectivities from 50% to 0.17%:
  at 10M it gives recall@10 0.96-0.99 for all; at 1M, 0.94 for 8-10% filters, which
  would need twice as many for 0.95; see bench/RESULTS.md). The passing vectors are
  scored from their 8-bit codes with the index's own quantizer table, so scores equal the
  IVF scan's: copied out and scanned flat when few pass (a scan that tests every probed
  vector against a selector costs more); when over GATHER_SHARE of them pass, FAISS's
  plain scan of those lists over-fetches ~3k/share and the passing ones are kept (exact
  for those lists whenever k of them pass, else the copy path). Work grows with the probed
  lists, not the library. When over FULL_PASS of the lists would be probed (a filter that
  passes almost nothing), the filter is tested on every vector in one pass and every
  passing vector is scored.
`search.query` scores a filter on a few videos (<= EXACT_CANDIDATES vectors) exactly from
their stored float32 embeddings instead when main is an IVF: exact beats 8-bit there.

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
from core.types import KINDS
from store.db import session_scope
from store.schema import Segment, Video

log = logging.getLogger(__name__)

FLAT, IVF = "flat", "ivf"
NPROBE = 32
FILTER_MIN_PASS = 8192       # passing vectors a filtered IVF search looks at, at least
GATHER_SHARE = 0.25          # above this share of probed vectors passing, over-fetch
FULL_PASS = 0.25             # a filter to probe this share of the lists tests every vector
MIN_SCAN = 16_384            # vectors an IVF query scans at least (recall of small IVFs)
MIN_NLIST, MAX_NLIST = 256, 8192
TRAIN_PER_LIST = 40          # faiss warns below 39 training points per centroid
HNSW_QUANTIZER_ABOVE = 1024  # lists; below, a flat quantizer is as fast and exact
RETRAIN_FACTOR = 4           # re-plan the IVF when N moves this far from its trained size
DELTA_MIN, DELTA_MAX = 2048, 32768   # exact delta search stays around a millisecond
DELETED_FRACTION = 0.1       # compact once a tenth of main is dead weight
BATCH = 20_000
KIND_CODE = {k: i for i, k in enumerate(KINDS)}

_cache_lock = threading.Lock()
_cache: dict[str, "Loaded"] = {}


# ---------------------------------------------------------------------------------------
# What filters test, per vector

@dataclass
class Attrs:
    """Per vector: segment start and end (ms), kind code, video ordinal."""
    start: np.ndarray
    end: np.ndarray
    kind: np.ndarray
    video: np.ndarray

    NAMES = ("start", "end", "kind", "video")
    DTYPES = (np.int32, np.int32, np.uint8, np.int32)

    @classmethod
    def empty(cls) -> "Attrs":
        return cls(*(np.zeros(0, t) for t in cls.DTYPES))

    @classmethod
    def of_rows(cls, rows, ord_of) -> "Attrs":
        """From rows (id, embedding, video_id, start_ms, end_ms, kind); `ord_of` gives a
        video's ordinal."""
        n = len(rows)
        return cls(np.fromiter((r[3] for r in rows), np.int32, n),
                   np.fromiter((r[4] for r in rows), np.int32, n),
                   np.fromiter((KIND_CODE.get(r[5], 255) for r in rows), np.uint8, n),
                   np.fromiter((ord_of(r[2]) for r in rows), np.int32, n))

    @classmethod
    def concat(cls, parts: list["Attrs"]) -> "Attrs":
        return cls(*(np.concatenate([getattr(p, a) for p in parts]).astype(t)
                     for a, t in zip(cls.NAMES, cls.DTYPES)))

    def take(self, idx) -> "Attrs":
        return Attrs(*(getattr(self, a)[idx] for a in self.NAMES))

    def arrays(self, prefix: str = "") -> dict:
        return {prefix + a: getattr(self, a) for a in self.NAMES}

    @classmethod
    def from_arrays(cls, z, prefix: str = "") -> "Attrs":
        return cls(*(np.asarray(z[prefix + a], t) for a, t in zip(cls.NAMES, cls.DTYPES)))


@dataclass(frozen=True)
class Filter:
    """What a search is restricted to: videos (ids), a time range overlapping [start, end)
    in ms of each video, kinds. None: no restriction on that."""
    videos: frozenset | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    kinds: tuple | None = None


@dataclass
class Match:
    """A Filter compiled against the video ordinals of one index."""
    start_ms: int | None = None
    end_ms: int | None = None
    kind_ok: np.ndarray | None = None     # by kind code
    video_ok: np.ndarray | None = None    # by video ordinal

    def __call__(self, a: Attrs, pos=slice(None)) -> np.ndarray:
        """Which of the vectors at positions `pos` pass."""
        mask = np.ones(len(a.start[pos]), bool)
        if self.start_ms is not None:
            mask &= a.end[pos] > self.start_ms
        if self.end_ms is not None:
            mask &= a.start[pos] < self.end_ms
        if self.kind_ok is not None:
            mask &= self.kind_ok[a.kind[pos]]
        if self.video_ok is not None:
            mask &= self.video_ok[a.video[pos]]
        return mask


def _match(flt: Filter, state: "State") -> Match:
    m = Match(flt.start_ms, flt.end_ms)
    if flt.kinds is not None:
        m.kind_ok = np.zeros(256, bool)
        m.kind_ok[[KIND_CODE[k] for k in flt.kinds if k in KIND_CODE]] = True
    if flt.videos is not None:
        indexed = [v for v, r in state.videos.items() if r["runs"]]
        if not all(v in flt.videos for v in indexed):   # else it owns the whole index
            m.video_ok = np.zeros(state.next_ord, bool)
            m.video_ok[[state.videos[v]["ord"] for v in flt.videos if v in state.videos]] = True
    return m


# ---------------------------------------------------------------------------------------
# Index construction and search (shared with bench/search_latency.py, so the bench
# measures this code)

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


def storage(index: faiss.Index | None) -> np.ndarray:
    """The ids in the index's storage order (an IVF's lists one after the other)."""
    if index is None:
        return np.zeros(0, np.int64)
    inner = faiss.downcast_index(index)
    if not isinstance(inner, faiss.IndexIVF):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    inv = inner.invlists
    ids = [faiss.rev_swig_ptr(inv.get_ids(i), n).copy()
           for i in range(inner.nlist) if (n := int(inv.list_size(i)))]
    return np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64)


@dataclass
class Layout:
    """What a filtered search reads beside the index: ids and attrs in storage order, where
    each IVF list starts in it, and each list's 8-bit codes (views into the index)."""
    ids: np.ndarray
    attrs: Attrs
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    codes: list = field(default_factory=list)


def layout(index: faiss.Index | None, attrs: Attrs) -> Layout:
    lay = Layout(storage(index), attrs)
    if index_kind(index) == IVF:
        inner = faiss.downcast_index(index)
        inv, size = inner.invlists, inner.code_size
        sizes = [int(inv.list_size(i)) for i in range(inner.nlist)]
        lay.offsets = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        # One opaque item per vector: gathering rows is then one memcpy each.
        row = np.dtype((np.void, size))
        lay.codes = [faiss.rev_swig_ptr(inv.get_codes(i), n * size).view(row)
                     if n else None for i, n in enumerate(sizes)]
    return lay


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
        bitmap[byte[first]] = np.add.reduceat(bit, first)
        sel = faiss.IDSelectorBitmap(bitmap)
        sel._keep = bitmap       # the selector only points at it
        return sel
    return faiss.IDSelectorBatch(ids)


def _and(allowed, excluded):
    if allowed is None or excluded is None:
        return allowed if excluded is None else excluded
    sel = faiss.IDSelectorAnd(allowed, excluded)
    sel._keep = (allowed, excluded)
    return sel


def _quantizer_params(ivf, nprobe: int):
    if isinstance(faiss.downcast_index(ivf.quantizer), faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(efSearch=max(64, 2 * nprobe))
    return None


def _nprobe(ivf) -> int:
    """NPROBE, or enough lists to scan MIN_SCAN vectors when that is more."""
    return max(NPROBE, math.ceil(ivf.nlist * MIN_SCAN / max(ivf.ntotal, 1)))


def _positions(offsets: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """Storage positions of every vector in the given lists."""
    starts, lens = offsets[lists], offsets[lists + 1] - offsets[lists]
    before = np.concatenate(([0], np.cumsum(lens)[:-1]))
    return np.repeat(starts - before, lens) + np.arange(int(lens.sum()))


def search_index(index: faiss.Index | None, query: np.ndarray, k: int, *,
                 match: Match | None = None, lay: Layout | None = None,
                 deleted: np.ndarray | None = None, excluded=None, nprobe: int | None = None,
                 min_pass: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids) of one query, best first. With `match`, only the vectors whose attrs
    (`lay`, from `layout`) pass are searched. Deleted ids are left out: `excluded` is
    a FAISS selector of the ids still allowed, `deleted` the same ids, sorted."""
    empty = np.zeros(0, np.float32), np.zeros(0, np.int64)
    if index is None or index.ntotal == 0:
        return empty
    q = np.ascontiguousarray(query, np.float32).reshape(1, -1)
    ivf = faiss.downcast_index(index) if index_kind(index) == IVF else None
    if ivf is not None and match is not None:
        return _search_filtered(ivf, q, k, match, lay, deleted, nprobe or _nprobe(ivf),
                                min_pass or FILTER_MIN_PASS)
    if ivf is None:
        sel = excluded
        if match is not None:
            allowed = lay.ids[match(lay.attrs)]
            if not len(allowed):
                return empty
            sel = _and(_selector(allowed, int(allowed.max())), excluded)
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
    else:
        probe = min(ivf.nlist, nprobe or _nprobe(ivf))
        params = faiss.SearchParametersIVF(sel=excluded, nprobe=probe)
        params.quantizer_params = _quantizer_params(ivf, probe)
    scores, found = index.search(q, k, params=params)
    keep = found[0] >= 0
    return np.clip(scores[0][keep], -1.0, 1.0), found[0][keep]


def _coarse(ivf, q: np.ndarray, nprobe: int) -> tuple[np.ndarray, np.ndarray]:
    """The nprobe lists nearest to the query, and their centroids' scores."""
    dist, lists = ivf.quantizer.search(q, nprobe, params=_quantizer_params(ivf, nprobe))
    keep = lists[0] >= 0
    return lists[0][keep], dist[0][keep]


def _search_filtered(ivf, q, k, match, lay, deleted, nprobe, min_pass):
    """IVF search restricted to the vectors that pass `match`, testing only probed lists."""
    lists, dist = _coarse(ivf, q, min(ivf.nlist, nprobe))
    pos = _positions(lay.offsets, lists)
    passed = match(lay.attrs, pos)
    # Enough lists for min_pass passing vectors, at the rate the nearest lists pass.
    probe = min(ivf.nlist, max(len(lists), math.ceil(
        len(lists) * min_pass / max(int(passed.sum()), 1))))
    keep = pos[passed]
    if probe > len(lists):
        if probe > FULL_PASS * ivf.nlist:
            # Much of the index: one pass in storage order beats gathering, and every
            # passing vector is scored (not many: the filter is that selective).
            keep, pos = np.flatnonzero(match(lay.attrs)), None
        else:
            lists, dist = _coarse(ivf, q, probe)
            pos = _positions(lay.offsets, lists)
            keep = pos[match(lay.attrs, pos)]
    if deleted is not None and len(deleted) and len(keep):
        at = np.minimum(np.searchsorted(deleted, lay.ids[keep]), len(deleted) - 1)
        keep = keep[deleted[at] != lay.ids[keep]]
    if pos is not None and len(keep) > GATHER_SHARE * len(pos):
        found = _overfetch(ivf, q, k, lists, dist, lay, match, deleted, len(keep) / len(pos))
        if found is not None:
            return found
    return _score_codes(ivf, q, k, lay, keep)


def _overfetch(ivf, q, k, lists, dist, lay, match, deleted, share):
    """When most probed vectors pass: FAISS's plain scan of the lists for the best
    ~3k/share, of which the passing ones are kept. If k of them pass (or the lists hold no
    more), they are exactly the top k passing vectors of those lists; else None."""
    want = min(len(lay.ids), math.ceil(3 * k / share) + 16)
    lists = np.ascontiguousarray(lists.reshape(1, -1), np.int64)
    dist = np.ascontiguousarray(dist.reshape(1, -1), np.float32)
    scores, pairs = np.empty((1, want), np.float32), np.empty((1, want), np.int64)
    params = faiss.SearchParametersIVF(nprobe=lists.shape[1])
    ivf.search_preassigned_c(1, faiss.swig_ptr(q), want, faiss.swig_ptr(lists),
                             faiss.swig_ptr(dist), faiss.swig_ptr(scores),
                             faiss.swig_ptr(pairs), True, params)
    ok = pairs[0] >= 0
    pos = lay.offsets[pairs[0][ok] >> 32] + (pairs[0][ok] & 0xFFFFFFFF)   # (list, offset)
    scores = scores[0][ok]
    good = match(lay.attrs, pos)
    if deleted is not None and len(deleted):
        ids = lay.ids[pos]
        good &= deleted[np.minimum(np.searchsorted(deleted, ids), len(deleted) - 1)] != ids
    if good.sum() < k and ok.all():
        return None
    pos, scores = pos[good][:k], scores[good][:k]
    return np.clip(scores, -1.0, 1.0), lay.ids[pos]


def _score_codes(ivf, q, k, lay, keep):
    """The top k of the vectors at storage positions `keep`, scored from their 8-bit codes
    exactly as the IVF scan would (same quantizer table), in one flat pass over copies of
    them: when few of the probed vectors pass, cheaper than a scan that tests each one."""
    if not len(keep):
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    keep = np.sort(keep)
    lst = np.searchsorted(lay.offsets, keep, side="right") - 1
    cut = np.flatnonzero(np.r_[True, lst[1:] != lst[:-1], True])
    codes = np.concatenate([lay.codes[lst[a]][keep[a:b] - lay.offsets[lst[a]]]
                            for a, b in zip(cut[:-1].tolist(), cut[1:].tolist())])
    flat = faiss.IndexScalarQuantizer(ivf.d, faiss.ScalarQuantizer.QT_8bit,
                                      faiss.METRIC_INNER_PRODUCT)
    flat.sq = ivf.sq
    flat.is_trained = True
    faiss.copy_array_to_vector(codes.view(np.uint8), flat.codes)
    flat.ntotal = len(codes)
    scores, found = flat.search(q, min(k, len(codes)))
    return np.clip(scores[0], -1.0, 1.0), lay.ids[keep[found[0]]]


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
    attrs_stat: list | None = None     # the same of main's attrs file
    main_kind: str = ""
    main_count: int = 0
    trained_for: int = 0
    hwm: int = 0                       # highest segment id ever indexed
    next_ord: int = 0                  # the next video ordinal
    videos: dict = field(default_factory=dict)   # id -> {"stamp", "sig", "runs", "ord"}
    delta_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    delta_vecs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    delta_attrs: Attrs = field(default_factory=Attrs.empty)
    deleted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def total(self) -> int:
        return self.main_count - len(self.deleted) + len(self.delta_ids)

    def ord_of(self, video_id: str) -> int:
        if video_id not in self.videos:
            self.videos[video_id] = {"stamp": None, "sig": "0", "runs": [], "ord": self.next_ord}
            self.next_ord += 1
        return self.videos[video_id]["ord"]


META = ("model", "dim", "main_stat", "attrs_stat", "main_kind", "main_count", "trained_for",
        "hwm", "next_ord", "videos")


def _state_path(settings: Settings) -> Path:
    return settings.faiss_path.with_name(settings.faiss_path.name + ".state.npz")


def _attrs_path(settings: Settings) -> Path:
    return settings.faiss_path.with_name(settings.faiss_path.name + ".attrs.npz")


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


def _savez(path: Path, **arrays) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    _atomic_write(path, write)


def _save_state(settings: Settings, st: State) -> None:
    blob = np.frombuffer(json.dumps({k: getattr(st, k) for k in META}).encode(), np.uint8)
    _savez(_state_path(settings), meta=blob, delta_ids=st.delta_ids, delta_vecs=st.delta_vecs,
           deleted=st.deleted, **st.delta_attrs.arrays("delta_"))


def _read_state(settings: Settings) -> State | None:
    path = _state_path(settings)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes())
            return State(**meta, delta_ids=z["delta_ids"], delta_vecs=z["delta_vecs"],
                         delta_attrs=Attrs.from_arrays(z, "delta_"), deleted=z["deleted"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        # Also a state written before a field existed: rebuilt in the current format.
        log.warning("vector index state unreadable (%s): it will be rebuilt", e)
        return None


def _read_attrs(settings: Settings) -> Attrs:
    with np.load(_attrs_path(settings), allow_pickle=False) as z:
        return Attrs.from_arrays(z)


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
    return sum(_row_hash(r[0], r[1]) for r in rows) % (1 << 64)


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


# What the index reads of a segment: Attrs.of_rows and _decode take these rows.
ROW = (Segment.id, Segment.embedding, Segment.video_id, Segment.start_ms, Segment.end_ms,
       Segment.kind)


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
        if (state is None or state.model != model
                or state.main_stat != _stat(settings.faiss_path)
                or state.attrs_stat != _stat(_attrs_path(settings))):
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
        state.delta_attrs = state.delta_attrs.take(~in_delta)
    # Everything else may sit in main: excluded at search time until compaction.
    state.deleted = np.union1d(state.deleted, ids)


def _append(state: State, ids: np.ndarray, vecs: np.ndarray, attrs: Attrs) -> None:
    if not len(ids):
        return
    if state.delta_vecs.shape[1] != vecs.shape[1]:
        state.delta_vecs = np.zeros((0, vecs.shape[1]), np.float32)
    state.dim = state.dim or int(vecs.shape[1])
    state.delta_ids = np.concatenate([state.delta_ids, ids])
    state.delta_vecs = np.concatenate([state.delta_vecs, vecs.astype(np.float32)])
    state.delta_attrs = Attrs.concat([state.delta_attrs, attrs])
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
            rows = s.execute(select(*ROW).where(Segment.video_id == v, *_embedded(model))
                             .order_by(Segment.id)).all()
            _update_video(state, v, stamps[v], rows)
    return True


def _update_video(state: State, video_id: str, stamp: str, rows) -> None:
    old = state.videos.get(video_id)
    ids, vecs = _decode(rows, state.dim)
    if len(ids) and state.dim and vecs.shape[1] != state.dim:
        raise ValueError(f"segment vectors of {video_id} have {vecs.shape[1]} dimensions, "
                         f"the index {state.dim}: rebuild it")
    attrs = Attrs.of_rows(rows, state.ord_of)
    sig = _sig(rows)
    if old is None:
        _append(state, ids, vecs, attrs)
    elif old["sig"] != str(sig):
        before = _unruns(old["runs"])
        new = ~np.isin(ids, before)
        kept_sig = _sig([r for r, is_new in zip(rows, new) if not is_new])
        if np.isin(before, ids).all() and str(kept_sig) == old["sig"]:
            _append(state, ids[new], vecs[new], attrs.take(new))     # only gained rows
        else:
            _drop(state, before)                                   # anything else: replace
            _append(state, ids, vecs, attrs)
    state.ord_of(video_id)          # a record even with no rows: its stamp is then known
    state.videos[video_id].update(stamp=stamp, sig=str(sig), runs=_runs(ids))


def _rebuild(settings: Settings, model: str | None) -> State:
    """A fresh main index and state from the database (lock held)."""
    state = State(model=model or "")
    with session_scope(settings) as s:
        stamps = {v: _stamp(t) for v, t in s.execute(select(Video.id, Video.updated_at))}
    index, table, rows_by_video = None, None, {}
    if model:
        index, table, rows_by_video = _build_main(settings, state)
    for v, (ids, sig) in rows_by_video.items():
        state.videos[v].update(stamp=stamps.get(v, ""), sig=str(sig % (1 << 64)),
                               runs=_runs(np.asarray(ids, np.int64)))
    _write_main(settings, state, index, table)
    _save_state(settings, state)
    return state


def _build_main(settings: Settings, state: State):
    """Stream every embedded segment of the model into a new main index; returns it, its
    attrs by id and {video_id: (ids, signature)}."""
    model = state.model
    with session_scope(settings) as s:
        n = s.scalar(select(func.count()).select_from(Segment).where(*_embedded(model)))
        if not n:
            return None, None, {}
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
        all_ids, attrs = [], []
        stmt = select(*ROW).where(*_embedded(model)).order_by(Segment.id) \
            .execution_options(yield_per=BATCH)
        for part in s.execute(stmt).partitions(BATCH):
            ids, vecs = _decode(part)
            if index is None:
                index = new_index(vecs.shape[1], spec)
            index.add_with_ids(vecs, ids)
            for row in part:
                seg_id, emb, video_id = row[0], row[1], row[2]
                ids_by_video.setdefault(video_id, []).append(seg_id)
                sig_by_video[video_id] = sig_by_video.get(video_id, 0) + _row_hash(seg_id, emb)
            all_ids.append(ids)
            attrs.append(Attrs.of_rows(part, state.ord_of))
            state.hwm = max(state.hwm, int(ids.max()))
            state.dim = int(vecs.shape[1])
        state.trained_for = spec.get("trained_for", 0)
        table = (np.concatenate(all_ids), Attrs.concat(attrs))    # ordered by id
        return index, table, {v: (ids_by_video[v], sig_by_video[v]) for v in ids_by_video}


def _write_main(settings: Settings, state: State, index: faiss.Index | None,
                table: tuple[np.ndarray, Attrs] | None) -> None:
    """Write main and its attrs in storage order; `table` holds the attrs of at least every
    id in the index, by id (sorted)."""
    path = settings.faiss_path
    if index is None or index.ntotal == 0:
        path.unlink(missing_ok=True)
        _attrs_path(settings).unlink(missing_ok=True)
        state.main_kind, state.main_count = "", 0
    else:
        ids = storage(index)
        at = np.searchsorted(table[0], ids)
        if not np.array_equal(table[0][np.minimum(at, len(table[0]) - 1)], ids):
            raise RuntimeError("vector index: attributes missing for indexed ids")
        _atomic_write(path, lambda tmp: faiss.write_index(index, str(tmp)))
        _savez(_attrs_path(settings), **table[1].take(at).arrays())
        state.main_kind, state.main_count = index_kind(index), int(index.ntotal)
    state.main_stat, state.attrs_stat = _stat(path), _stat(_attrs_path(settings))


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
    index, ids, attrs = None, np.zeros(0, np.int64), Attrs.empty()
    if state.main_kind:
        index = faiss.read_index(str(settings.faiss_path))
        ids, attrs = storage(index), _read_attrs(settings)
        live = ~np.isin(ids, state.deleted)      # a deleted id may come back in the delta
        ids, attrs = ids[live], attrs.take(live)
    if index is not None and len(state.deleted):
        index.remove_ids(faiss.IDSelectorBatch(state.deleted))
    if len(state.delta_ids):
        if index is None:
            index = new_index(state.delta_vecs.shape[1], {"kind": FLAT})
        index.add_with_ids(state.delta_vecs, state.delta_ids)
    ids = np.concatenate([ids, state.delta_ids])
    attrs = Attrs.concat([attrs, state.delta_attrs])
    order = np.argsort(ids, kind="stable")
    _write_main(settings, state, index, (ids[order], attrs.take(order)))
    state.delta_ids = np.zeros(0, np.int64)
    state.delta_vecs = np.zeros((0, state.dim or state.delta_vecs.shape[1]), np.float32)
    state.delta_attrs = Attrs.empty()
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
    lay: Layout                      # main's ids, attrs and lists
    excluded: object = None          # selector of the deleted ids, built once per load


def load(settings: Settings) -> Loaded | None:
    """What is on disk, re-read only when a file changed."""
    keys = (tuple(_stat(settings.faiss_path) or ()), tuple(_stat(_attrs_path(settings)) or ()),
            tuple(_stat(_state_path(settings)) or ()))
    if not keys[2]:
        return None
    with _cache_lock:
        cached = _cache.get(str(settings.faiss_path))
        if cached is not None and cached.keys == keys:
            return cached
        state = _read_state(settings)
        if state is None:
            return None
        if cached is not None and cached.keys[:2] == keys[:2]:
            main, lay = cached.main, cached.lay      # only the state moved: keep the big files
        elif keys[0] and keys[1]:
            main = faiss.read_index(str(settings.faiss_path))
            lay = layout(main, _read_attrs(settings))
        else:
            main, lay = None, layout(None, Attrs.empty())
        excluded = None
        if len(state.deleted):
            batch = faiss.IDSelectorBatch(state.deleted)
            excluded = faiss.IDSelectorNot(batch)
            excluded._keep = batch           # the Not only points at it
        loaded = Loaded(main, state, keys, lay, excluded)
        _cache[str(settings.faiss_path)] = loaded
        return loaded


def indexed_model(settings: Settings) -> str | None:
    loaded = load(settings)
    return loaded.state.model if loaded is not None else None


def approximate(settings: Settings) -> bool:
    """Whether main scores 8-bit codes (an IVF) rather than the float vectors."""
    loaded = load(settings)
    return loaded is not None and loaded.state.main_kind == IVF


def count_of_videos(settings: Settings, video_ids) -> int:
    """How many vectors those videos have in the index (from its bookkeeping)."""
    loaded = load(settings)
    if loaded is None:
        return 0
    videos = loaded.state.videos
    return sum(n for v in video_ids if v in videos for _, n in videos[v]["runs"])


def size(settings: Settings) -> int:
    loaded = load(settings)
    return loaded.state.total if loaded is not None else 0


def ids(settings: Settings) -> np.ndarray:
    """Every id a search can return (sorted): main minus deleted, plus delta."""
    loaded = load(settings)
    if loaded is None:
        return np.zeros(0, np.int64)
    main = np.setdiff1d(loaded.lay.ids, loaded.state.deleted)
    return np.union1d(main, loaded.state.delta_ids)


def search(settings: Settings, query: np.ndarray, k: int,
           flt: Filter | None = None) -> list[tuple[int, float]]:
    """(segment id, cosine) best first. With a filter, only the vectors that pass it are
    searched, inside FAISS (never a filter over a global top-k)."""
    loaded = load(settings)
    if loaded is None or k <= 0:
        return []
    st = loaded.state
    match = _match(flt, st) if flt is not None else None
    scores, found = search_index(loaded.main, query, k, match=match, lay=loaded.lay,
                                 deleted=st.deleted, excluded=loaded.excluded)
    hits = dict(zip(found.tolist(), scores.tolist()))
    if len(st.delta_ids):
        mask = match(st.delta_attrs) if match is not None else slice(None)
        for seg_id, score in exact_search(query, st.delta_ids[mask], st.delta_vecs[mask], k):
            hits[seg_id] = score             # the delta is newer than main
    return sorted(hits.items(), key=lambda h: -h[1])[:k]

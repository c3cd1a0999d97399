"""FAISS indexes, built and searched: pure functions over an index and the attrs beside it
(shared with bench/search_latency.py, so the bench measures this code).

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
  computations per vector; IVF-PQ was not needed at this size and costs recall.

Filtered search (a `Match` over the attrs, kept in the index's own storage order: its
inverted lists one after the other):
- flat: the filter over every vector gives an id selector (a bitmap), and the flat scan
  scores exactly the vectors it lets through.
- IVF: only the lists a query probes are tested. The filter is first evaluated on the
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
"""

import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from core.config import Settings
from search.index.filters import Attrs, Match

FLAT, IVF = "flat", "ivf"
NPROBE = 32
FILTER_MIN_PASS = 8192       # passing vectors a filtered IVF search looks at, at least
GATHER_SHARE = 0.25          # above this share of probed vectors passing, over-fetch
FULL_PASS = 0.25             # a filter to probe this share of the lists tests every vector
MIN_SCAN = 16_384            # vectors an IVF query scans at least (recall of small IVFs)
MIN_NLIST, MAX_NLIST = 256, 8192
TRAIN_PER_LIST = 40          # faiss warns below 39 training points per centroid
HNSW_QUANTIZER_ABOVE = 1024  # lists; below, a flat quantizer is as fast and exact


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

"""The vector index of a space (`search.index.state.SPACES`) as searches see it: what is on disk, loaded once and cached, reloaded
when a file's (size, mtime, inode) changes; searched in main (FAISS, filters inside it,
deleted ids left out) and in the delta (exactly), the delta winning for an id in both."""

import threading
from dataclasses import dataclass

import faiss
import numpy as np

from core.config import Settings
from search.index import state as files
from search.index.faiss_ops import IVF, Layout, exact_search, layout, search_index
from search.index.filters import Attrs, Filter, match as compile_match
from search.index.state import TEXT, State

_cache_lock = threading.Lock()
_cache: dict[str, "Loaded"] = {}


@dataclass
class Loaded:
    main: faiss.Index | None
    state: State
    keys: tuple
    lay: Layout                      # main's ids, attrs and lists
    excluded: object = None          # selector of the deleted ids, built once per load


def load(settings: Settings, space: str = TEXT) -> Loaded | None:
    """What is on disk, re-read only when a file changed."""
    path = files.index_path(settings, space)
    keys = tuple(tuple(files.stat(p) or ()) for p in (
        path, files.attrs_path(settings, space), files.state_path(settings, space)))
    if not keys[2]:
        return None
    with _cache_lock:
        cached = _cache.get(str(path))
        if cached is not None and cached.keys == keys:
            return cached
        state = files.read_state(settings, space)
        if state is None:
            return None
        if cached is not None and cached.keys[:2] == keys[:2]:
            main, lay = cached.main, cached.lay      # only the state moved: keep the big files
        elif keys[0] and keys[1]:
            main = _read(str(path), state.main_kind)
            lay = layout(main, files.read_attrs(settings, space))
        else:
            main, lay = None, layout(None, Attrs.empty())
        excluded = None
        if len(state.deleted):
            batch = faiss.IDSelectorBatch(state.deleted)
            excluded = faiss.IDSelectorNot(batch)
            excluded._keep = batch           # the Not only points at it
        loaded = Loaded(main, state, keys, lay, excluded)
        _cache[str(path)] = loaded
        return loaded


def _read(path: str, kind: str) -> faiss.Index:
    """The index memory-mapped: a flat index's vectors (zero copy) or an IVF's lists are
    paged in as a search scans them, not copied whole at each load (a command-line search
    reads the index once). The writer saves by rename, so a mapped file never changes
    under a reader. A file FAISS cannot map is read."""
    flag = faiss.IO_FLAG_MMAP if kind == IVF else faiss.IO_FLAG_MMAP_IFC
    try:
        return faiss.read_index(path, flag | faiss.IO_FLAG_READ_ONLY)
    except RuntimeError:
        return faiss.read_index(path)


def indexed_model(settings: Settings, space: str = TEXT) -> str | None:
    loaded = load(settings, space)
    return loaded.state.model if loaded is not None else None


def approximate(settings: Settings, space: str = TEXT) -> bool:
    """Whether main scores 8-bit codes (an IVF) rather than the float vectors."""
    loaded = load(settings, space)
    return loaded is not None and loaded.state.main_kind == IVF


def count_of_videos(settings: Settings, video_ids, space: str = TEXT) -> int:
    """How many vectors those videos have in the index (from its bookkeeping)."""
    loaded = load(settings, space)
    if loaded is None:
        return 0
    videos = loaded.state.videos
    return sum(n for v in video_ids if v in videos for _, n in videos[v]["runs"])


def size(settings: Settings, space: str = TEXT) -> int:
    loaded = load(settings, space)
    return loaded.state.total if loaded is not None else 0


def ids(settings: Settings, space: str = TEXT) -> np.ndarray:
    """Every id a search can return (sorted): main minus deleted, plus delta."""
    loaded = load(settings, space)
    if loaded is None:
        return np.zeros(0, np.int64)
    main = np.setdiff1d(loaded.lay.ids, loaded.state.deleted)
    return np.union1d(main, loaded.state.delta_ids)


def search(settings: Settings, query: np.ndarray, k: int,
           flt: Filter | None = None, space: str = TEXT) -> list[tuple[int, float]]:
    """(segment id, cosine) best first. With a filter, only the vectors that pass it are
    searched, inside FAISS (never a filter over a global top-k)."""
    loaded = load(settings, space)
    if loaded is None or k <= 0:
        return []
    st = loaded.state
    match = compile_match(flt, st) if flt is not None else None
    scores, found = search_index(loaded.main, query, k, match=match, lay=loaded.lay,
                                 deleted=st.deleted, excluded=loaded.excluded)
    hits = dict(zip(found.tolist(), scores.tolist()))
    if len(st.delta_ids):
        mask = match(st.delta_attrs) if match is not None else slice(None)
        for seg_id, score in exact_search(query, st.delta_ids[mask], st.delta_vecs[mask], k):
            hits[seg_id] = score             # the delta is newer than main
    return sorted(hits.items(), key=lambda h: -h[1])[:k]

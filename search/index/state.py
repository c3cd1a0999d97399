"""The vector indexes on disk, one per vector space, next to each other in the data
directory. A space is the vectors of one embedding model: `text` (the text embedder, over
speech, screen text and captions: `settings.faiss_path` = vectors.faiss, as it always was)
and `visual` (the image-text model's keyframe embeddings: vectors-visual.faiss). Each has
its own files, dimension and state:

- vectors.faiss: the *main* index, rewritten only by a rebuild and by compaction.
- vectors.faiss.attrs.npz: what filters test of main's vectors, in its storage order.
- vectors.faiss.state.npz: the *delta* (vectors added since the last compaction, float32,
  searched exactly, with their attrs), the *deleted* set (ids still in main whose rows are
  gone; excluded at search time), and the per-video bookkeeping that keeps a sync cheap
  (`State.videos`: generation stamp, signature, ids as runs, ordinal). It records the size,
  mtime and inode of the two main files it goes with, so a crash between the renames is
  detected and answered with a rebuild (so is a state an older version wrote).

Every file is written to a temp file, fsynced and renamed, so a reader never sees half.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.config import Settings
from search.index.filters import Attrs

log = logging.getLogger(__name__)


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


TEXT, VISUAL = "text", "visual"
SPACES = (TEXT, VISUAL)


def index_path(settings: Settings, space: str = TEXT) -> Path:
    """The main index file of a space."""
    if space == TEXT:
        return settings.faiss_path
    return settings.faiss_path.with_name(f"vectors-{space}.faiss")


def state_path(settings: Settings, space: str = TEXT) -> Path:
    path = index_path(settings, space)
    return path.with_name(path.name + ".state.npz")


def attrs_path(settings: Settings, space: str = TEXT) -> Path:
    path = index_path(settings, space)
    return path.with_name(path.name + ".attrs.npz")


def stat(path: Path) -> list | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def savez(path: Path, **arrays) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    atomic_write(path, write)


def save_state(settings: Settings, st: State, space: str = TEXT) -> None:
    blob = np.frombuffer(json.dumps({k: getattr(st, k) for k in META}).encode(), np.uint8)
    savez(state_path(settings, space), meta=blob, delta_ids=st.delta_ids, delta_vecs=st.delta_vecs,
          deleted=st.deleted, **st.delta_attrs.arrays("delta_"))


def read_state(settings: Settings, space: str = TEXT) -> State | None:
    path = state_path(settings, space)
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


def read_attrs(settings: Settings, space: str = TEXT) -> Attrs:
    with np.load(attrs_path(settings, space), allow_pickle=False) as z:
        return Attrs.from_arrays(z)


def runs(ids: np.ndarray) -> list[list[int]]:
    """Sorted ids as [first, count] runs: a chunk's rows are mostly consecutive ids."""
    if not len(ids):
        return []
    ids = np.sort(ids)
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(ids)]))
    return [[int(ids[a]), int(b - a)] for a, b in zip(starts, ends)]


def unruns(spans: list[list[int]]) -> np.ndarray:
    if not spans:
        return np.zeros(0, np.int64)
    return np.concatenate([np.arange(a, a + n, dtype=np.int64) for a, n in spans])

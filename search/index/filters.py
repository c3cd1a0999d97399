"""What filters test, per vector, and the filters themselves.

Every indexed vector carries `Attrs` (13 B): its segment's start and end (ms, int32), its
kind and its video (an ordinal the state assigns). A `Filter` (videos, time range, kinds) is
compiled against one index's video ordinals into a `Match`, which tests attrs in memory,
inside retrieval: no segment id is read from the database, and no global top-k is
post-filtered.
"""

from dataclasses import dataclass

import numpy as np

from core.types import KINDS

KIND_CODE = {k: i for i, k in enumerate(KINDS)}
INT32 = np.iinfo(np.int32)


def _ms32(values, n: int) -> np.ndarray:
    """Times as int32 ms. A stored time beyond the int32 range (24.8 days) belongs to a bad
    video: clamped here, so one video's rows never break the shared index."""
    ms = np.fromiter(values, np.int64, n)
    return np.clip(ms, INT32.min, INT32.max).astype(np.int32)


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
        return cls(_ms32((r[3] for r in rows), n),
                   _ms32((r[4] for r in rows), n),
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


def match(flt: Filter, state) -> Match:
    """`flt` against the video ordinals of `state` (a `search.index.state.State`)."""
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

"""Which keyframe shows a moment, from the stored shots (the JPEGs themselves are written at
index time by `indexer.thumbs`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.config import Settings
from store import shots as shot_rows
from store.db import session_scope

AROUND_MS = 600_000     # shots read around a moment: a gap between chunks still finds one


class HasKeyframes(Protocol):
    start_ms: int
    end_ms: int
    keyframe_ms: Sequence[int]


def thumbnail_ms(shots: Sequence[HasKeyframes], best_start_ms: int, best_end_ms: int) -> int | None:
    """The keyframe that shows a moment: in the shot holding the middle of the moment's best
    segment, the keyframe nearest that middle. None when no shot has a keyframe."""
    middle = (best_start_ms + best_end_ms) // 2
    holding = [s for s in shots if s.start_ms <= middle < s.end_ms and s.keyframe_ms]
    times = list(holding[0].keyframe_ms) if holding else \
        [t for s in shots for t in s.keyframe_ms]   # a gap between chunks: nearest anywhere
    if not times:
        return None
    return min(times, key=lambda t: (abs(t - middle), t))


def chapter_ms(shots: Sequence[HasKeyframes], start_ms: int, end_ms: int) -> int | None:
    """The keyframe that shows a chapter: the first one inside [start_ms, end_ms) (the
    picture the chapter opens on), else the one nearest its start (a chapter shorter than
    the keyframe spacing); None when the video has no keyframe at all."""
    times = sorted(t for s in shots for t in s.keyframe_ms)
    inside = [t for t in times if start_ms <= t < end_ms]
    if inside:
        return inside[0]
    return min(times, key=lambda t: (abs(t - start_ms), t), default=None)


def url(video_id: str, t_ms: int | None) -> str | None:
    return None if t_ms is None else f"/v1/videos/{video_id}/thumbnails/{int(t_ms)}.jpg"


def attach(settings: Settings, moments: list) -> None:
    """Set each moment's thumbnail_ms: the keyframe of the shot holding its best segment."""
    if not moments:
        return
    with session_scope(settings) as s:
        for m in moments:
            best = max(m.segments, key=lambda g: g["score"], default=None)
            a, b = (best["start_ms"], best["end_ms"]) if best else (m.start_ms, m.end_ms)
            shots = shot_rows.get_shots(s, video_id=m.video_id, start_ms=a - AROUND_MS,
                                        end_ms=b + AROUND_MS)
            m.thumbnail_ms = thumbnail_ms(shots, a, b)

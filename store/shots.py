"""Shots as stored: written per chunk (replace, never append) and read back by time.
Plain queries with keyword-only arguments; the caller owns the transaction."""

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.schema import Shot


def replace_shots(session: Session, *, video_id: str, chunk_idx: int,
                  shots: Sequence[tuple[int, int, Sequence[int]]]) -> None:
    """One chunk's shots as (start_ms, end_ms, keyframe times): a chunk indexed twice
    leaves the same rows."""
    session.execute(delete(Shot).where(Shot.video_id == video_id, Shot.chunk_idx == chunk_idx))
    session.add_all(Shot(video_id=video_id, chunk_idx=chunk_idx, start_ms=int(a), end_ms=int(b),
                         keyframe_ms=[int(t) for t in keys]) for a, b, keys in shots)


def get_shots(session: Session, *, video_id: str, start_ms: int | None = None,
              end_ms: int | None = None) -> Sequence[Shot]:
    """A video's shots overlapping [start_ms, end_ms), in time order."""
    stmt = select(Shot).where(Shot.video_id == video_id)
    if start_ms is not None:
        stmt = stmt.where(Shot.end_ms > start_ms)
    if end_ms is not None:
        stmt = stmt.where(Shot.start_ms < end_ms)
    return session.scalars(stmt.order_by(Shot.start_ms, Shot.id)).all()


def holding(session: Session, *, video_id: str, t_ms: int) -> Shot | None:
    """The shot that holds the time t_ms, if one was stored."""
    return session.scalars(select(Shot).where(Shot.video_id == video_id, Shot.start_ms <= t_ms,
                                              Shot.end_ms > t_ms)
                           .order_by(Shot.start_ms.desc()).limit(1)).first()

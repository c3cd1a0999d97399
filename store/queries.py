"""Plain SQLAlchemy 2.0 queries with keyword-only arguments. The caller owns the transaction."""

from collections.abc import Sequence

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from core import types
from core.errors import NotFound
from store.schema import Chunk, ChunkRun, Segment, Summary, Video, utcnow


def get_video(session: Session, video_id: str, *, tenant: str | None = None) -> Video:
    video = session.get(Video, video_id)
    if video is None or (tenant is not None and video.tenant != tenant):
        raise NotFound(f"no video with id {video_id}")
    return video


def find_video_by_sha256(session: Session, *, sha256: str, tenant: str) -> Video | None:
    return session.scalars(select(Video).where(Video.sha256 == sha256, Video.tenant == tenant)
                           .order_by(Video.created_at)).first()


def list_videos(session: Session, *, tenant: str | None = None) -> Sequence[Video]:
    stmt = select(Video).order_by(Video.created_at)
    if tenant is not None:
        stmt = stmt.where(Video.tenant == tenant)
    return session.scalars(stmt).all()


def get_chunks(session: Session, *, video_id: str) -> Sequence[Chunk]:
    return session.scalars(select(Chunk).where(Chunk.video_id == video_id)
                           .order_by(Chunk.idx)).all()


def finished_runs(session: Session, *, video_id: str, chunk_idx: int) -> set[tuple[str, str]]:
    rows = session.execute(select(ChunkRun.signal, ChunkRun.model_id)
                           .where(ChunkRun.video_id == video_id,
                                  ChunkRun.chunk_idx == chunk_idx))
    return {(r.signal, r.model_id) for r in rows}


def replace_unit(session: Session, *, video_id: str, chunk_idx: int, signal: str, model_id: str,
                 segments: Sequence[types.Segment], embeddings: np.ndarray | None,
                 embed_model: str | None) -> None:
    """Write one (chunk, signal, model) unit: replace its segments and mark it finished, in
    the caller's transaction, so a task that runs twice leaves the same rows."""
    session.execute(delete(Segment).where(Segment.video_id == video_id,
                                          Segment.chunk_idx == chunk_idx,
                                          Segment.kind == signal,
                                          Segment.model_id == model_id))
    for i, seg in enumerate(segments):
        vec = embeddings[i].astype(np.float32).tobytes() if embeddings is not None else None
        session.add(Segment(video_id=video_id, chunk_idx=chunk_idx, kind=seg.kind,
                            start_ms=seg.start_ms, end_ms=seg.end_ms, text=seg.text,
                            model_id=seg.model_id, embedding=vec, embed_model=embed_model))
    run = session.get(ChunkRun, (video_id, chunk_idx, signal, model_id))
    if run is None:
        session.add(ChunkRun(video_id=video_id, chunk_idx=chunk_idx, signal=signal,
                             model_id=model_id))
    else:
        run.finished_at = utcnow()


def mark_chunk_done(session: Session, *, video_id: str, chunk_idx: int) -> None:
    """The chunk's signals of this run are in (all of them in-process; on workers, the CPU
    stage or, after it, the captions)."""
    session.execute(update(Chunk).where(Chunk.video_id == video_id, Chunk.idx == chunk_idx)
                    .values(done_at=utcnow()))
    recount_done(session, video_id=video_id)


def recount_done(session: Session, *, video_id: str) -> None:
    """Progress is derived from the chunks, so a retried or resumed chunk never counts twice.
    A chunk counts once all its planned work is in: with Qwen3-VL planned (the video's
    notes do not say it was skipped), that includes its captions, which workers write in a
    later, slower stage than the chunk's CPU signals."""
    video = session.get(Video, video_id)
    stmt = select(func.count()).select_from(Chunk).where(Chunk.video_id == video_id,
                                                         Chunk.done_at.is_not(None))
    if video is not None and types.VISUAL_SKIPPED not in video.notes:
        captioned = select(ChunkRun.chunk_idx).where(ChunkRun.video_id == video_id,
                                                     ChunkRun.signal == types.VISUAL)
        stmt = stmt.where(Chunk.idx.in_(captioned))
    session.execute(update(Video).where(Video.id == video_id)
                    .values(chunks_done=session.scalar(stmt)))


def get_segments(session: Session, *, video_id: str, start_ms: int | None = None,
                 end_ms: int | None = None, kinds: Sequence[str] | None = None
                 ) -> Sequence[Segment]:
    """Segments overlapping [start_ms, end_ms), in time order."""
    stmt = select(Segment).where(Segment.video_id == video_id)
    if start_ms is not None:
        stmt = stmt.where(Segment.end_ms > start_ms)
    if end_ms is not None:
        stmt = stmt.where(Segment.start_ms < end_ms)
    if kinds:
        stmt = stmt.where(Segment.kind.in_(list(kinds)))
    return session.scalars(stmt.order_by(Segment.start_ms, Segment.end_ms, Segment.kind,
                                         Segment.id)).all()


def get_summaries(session: Session, *, video_id: str) -> Sequence[Summary]:
    return session.scalars(select(Summary).where(Summary.video_id == video_id)
                           .order_by(Summary.kind, Summary.idx)).all()

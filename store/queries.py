"""Plain SQLAlchemy 2.0 queries with keyword-only arguments. The caller owns the transaction."""

from collections.abc import Sequence
from datetime import datetime

import numpy as np
from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.orm import Session

from core import types
from core.errors import AmbiguousId, NotFound
from store.schema import (PROCESSING, QUEUED, Chunk, ChunkRun, Segment, Shot, Summary, Video,
                          utcnow)

# Under every driver's parameter limit, for IN lists built from a page of ids.
_IN_BATCH = 900
# The shortest id prefix accepted (16^4 ids: unique in a library of hundreds), and how many
# candidates an ambiguous one names.
MIN_PREFIX, _SHOWN = 4, 10


def get_video(session: Session, video_id: str, *, tenant: str | None = None) -> Video:
    video = session.get(Video, video_id)
    if video is None or (tenant is not None and video.tenant != tenant):
        raise NotFound(f"no video with id {video_id}")
    return video


def resolve_video(session: Session, ref: str, *, tenant: str) -> Video:
    """The tenant's video whose id is `ref` or starts with it (at least MIN_PREFIX
    characters): what a person types. Another tenant's video is not there (NotFound, never a
    hint); a prefix that several share is AmbiguousId, naming them."""
    video = session.get(Video, ref)
    if video is not None and video.tenant == tenant:
        return video
    if len(ref) >= MIN_PREFIX:
        # substr, not LIKE: '_' is a wildcard there and SQLite's LIKE ignores case.
        found = session.scalars(select(Video).where(
            Video.tenant == tenant, func.substr(Video.id, 1, len(ref)) == ref)
            .order_by(Video.created_at).limit(_SHOWN + 1)).all()
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(f"{v.id} ({v.filename})" for v in found[:_SHOWN])
            more = " and more" if len(found) > _SHOWN else ""
            raise AmbiguousId(f"id prefix {ref} matches several videos: {names}{more}; "
                              "give more characters")
    hint = f" (an id prefix needs at least {MIN_PREFIX} characters)" \
        if len(ref) < MIN_PREFIX else ""
    raise NotFound(f"no video with id {ref}{hint}")


def find_video(session: Session, *, video_id: str) -> Video | None:
    return session.get(Video, video_id)


def find_video_by_sha256(session: Session, *, sha256: str, tenant: str) -> Video | None:
    return session.scalars(select(Video).where(Video.sha256 == sha256, Video.tenant == tenant)
                           .order_by(Video.created_at)).first()


def list_videos(session: Session, *, tenant: str | None = None,
                after: tuple[datetime, str] | None = None, limit: int | None = None,
                active: bool = False) -> Sequence[Video]:
    """Videos in (created_at, id) order: oldest first, and after the `after` key when
    given (a page cursor that rows added meanwhile cannot shift); `active`: only those
    not done yet (queued, indexing or interrupted)."""
    stmt = select(Video).order_by(Video.created_at, Video.id)
    if tenant is not None:
        stmt = stmt.where(Video.tenant == tenant)
    if active:
        stmt = stmt.where(Video.status.in_([QUEUED, PROCESSING]))
    if after is not None:
        stmt = stmt.where(tuple_(Video.created_at, Video.id) > tuple_(*after))
    return session.scalars(stmt.limit(limit)).all()


def video_status(session: Session, *, video_id: str) -> str | None:
    """The video's status, or None once it is deleted."""
    video = session.get(Video, video_id)
    return video.status if video is not None else None


def active_videos(session: Session) -> Sequence[Video]:
    """Videos queued or in progress, oldest first."""
    return session.scalars(select(Video).where(Video.status.in_([QUEUED, PROCESSING]))
                           .order_by(Video.created_at)).all()


def count_by_status(session: Session) -> dict[str, int]:
    return dict(session.execute(select(Video.status, func.count())
                                .group_by(Video.status)).all())


def filenames(session: Session, *, video_ids: set[str]) -> dict[str, str]:
    ids = sorted(video_ids)
    out: dict[str, str] = {}
    for i in range(0, len(ids), _IN_BATCH):
        out.update(session.execute(select(Video.id, Video.filename)
                                   .where(Video.id.in_(ids[i:i + _IN_BATCH]))).all())
    return out


def signal_counts(session: Session, *, video_ids: list[str]) -> dict[str, list[dict]]:
    """Per video: each signal and model with the number of chunks it has done; one query
    for a whole listing."""
    out: dict[str, list[dict]] = {v: [] for v in video_ids}
    for i in range(0, len(video_ids), _IN_BATCH):
        rows = session.execute(
            select(ChunkRun.video_id, ChunkRun.signal, ChunkRun.model_id, func.count())
            .where(ChunkRun.video_id.in_(video_ids[i:i + _IN_BATCH]))
            .group_by(ChunkRun.video_id, ChunkRun.signal, ChunkRun.model_id)
            .order_by(ChunkRun.signal, ChunkRun.model_id))
        for video_id, sig, model, n in rows:
            out[video_id].append({"signal": sig, "model": model, "chunks": n})
    return out


def get_chunks(session: Session, *, video_id: str) -> Sequence[Chunk]:
    return session.scalars(select(Chunk).where(Chunk.video_id == video_id)
                           .order_by(Chunk.idx)).all()


def finished_runs(session: Session, *, video_id: str, chunk_idx: int) -> set[tuple[str, str]]:
    rows = session.execute(select(ChunkRun.signal, ChunkRun.model_id)
                           .where(ChunkRun.video_id == video_id,
                                  ChunkRun.chunk_idx == chunk_idx))
    return {(r.signal, r.model_id) for r in rows}


def captioned_chunks(session: Session, *, video_id: str) -> set[int]:
    """Chunks with a Qwen3-VL run of any model: switching checkpoints is an explicit
    re-index."""
    return set(session.scalars(select(ChunkRun.chunk_idx).where(
        ChunkRun.video_id == video_id, ChunkRun.signal == types.VISUAL)))


def replace_unit(session: Session, *, video_id: str, chunk_idx: int, signal: str, model_id: str,
                 segments: Sequence[types.Segment], embeddings: np.ndarray | None,
                 embed_model: str | None, kind: str | None = None) -> None:
    """Write one (chunk, signal, model) unit: replace its segments and mark it finished, in
    the caller's transaction, so a task that runs twice leaves the same rows. `kind`: the
    kind of the signal's segments when it is not the signal's name (visual embeddings are
    kind visual, beside captions, told apart by their model)."""
    session.execute(delete(Segment).where(Segment.video_id == video_id,
                                          Segment.chunk_idx == chunk_idx,
                                          Segment.kind == (kind or signal),
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
    A chunk counts once all its planned work is in: with captions in the video's plan, that
    includes them, which workers write in a later, slower stage than the chunk's CPU
    signals. Seconds indexed are the counted chunks' spans (at least: see set_progress).
    The row is locked: chunks of one video finish in parallel on workers."""
    video = _locked_video(session, video_id)
    if video is None:
        return
    spans = _counted_spans(session, video)
    video.chunks_done = len(spans)
    video.progress_ms = max(video.progress_ms or 0,
                            min(video.duration_ms or 0, sum(spans.values())))


def _locked_video(session: Session, video_id: str) -> Video | None:
    return session.get(Video, video_id, with_for_update=True, populate_existing=True)


def _counted_spans(session: Session, video: Video) -> dict[int, int]:
    """The length (ms) of each chunk that counts as done, by index."""
    stmt = select(Chunk.idx, Chunk.end_ms - Chunk.start_ms).where(
        Chunk.video_id == video.id, Chunk.done_at.is_not(None))
    if video.captions:
        captioned = select(ChunkRun.chunk_idx).where(ChunkRun.video_id == video.id,
                                                     ChunkRun.signal == types.VISUAL)
        stmt = stmt.where(Chunk.idx.in_(captioned))
    return dict(session.execute(stmt).all())


def set_progress(session: Session, *, video_id: str, stage: str | None,
                 chunk_idx: int | None = None, fraction: float = 0.0) -> Video | None:
    """Record the stage that runs now and, inside a chunk, the fraction of its units done,
    as seconds of video: the counted chunks plus that part of this one. Never goes back
    (chunks of one video may run in parallel on workers: the row is locked so that two of
    them cannot interleave their read and write); a new plan starts it over."""
    video = _locked_video(session, video_id)
    if video is None:
        return None
    spans = _counted_spans(session, video)
    done = sum(spans.values())
    if chunk_idx is not None and chunk_idx not in spans:
        chunk = session.get(Chunk, (video_id, chunk_idx))
        done += round((chunk.end_ms - chunk.start_ms) * fraction) if chunk else 0
    video.progress_ms = max(video.progress_ms or 0, min(video.duration_ms or 0, done))
    video.stage = stage
    return video


def get_segments(session: Session, *, video_id: str, start_ms: int | None = None,
                 end_ms: int | None = None, kinds: Sequence[str] | None = None,
                 after: tuple[int, int, str, int] | None = None, limit: int | None = None
                 ) -> Sequence[Segment]:
    """Segments overlapping [start_ms, end_ms), in time order: (start_ms, end_ms, kind, id),
    after the `after` key of that order when given (a page cursor)."""
    stmt = select(Segment).where(Segment.video_id == video_id)
    if after is not None:
        stmt = stmt.where(tuple_(Segment.start_ms, Segment.end_ms, Segment.kind, Segment.id)
                          > tuple_(*after))
    if start_ms is not None:
        stmt = stmt.where(Segment.end_ms > start_ms)
    if end_ms is not None:
        stmt = stmt.where(Segment.start_ms < end_ms)
    if kinds:
        stmt = stmt.where(Segment.kind.in_(list(kinds)))
    return session.scalars(stmt.order_by(Segment.start_ms, Segment.end_ms, Segment.kind,
                                         Segment.id).limit(limit)).all()


def get_summaries(session: Session, *, video_id: str) -> Sequence[Summary]:
    return session.scalars(select(Summary).where(Summary.video_id == video_id)
                           .order_by(Summary.kind, Summary.idx)).all()


def dispatch_window(session: Session, video: Video, *, window: int) -> list[int]:
    """Chunks to send now so that at most `window` of the video's unfinished chunks are out,
    in index order; records them as sent. Lock the video row first (chunks finishing
    together must not both send the same next chunk)."""
    chunks = get_chunks(session, video_id=video.id)
    not_done = [c.idx for c in chunks if c.done_at is None]
    if len(not_done) == len(chunks):
        video.chunks_sent = 0                # nothing finished: a new plan starts over
    out = sum(1 for i in not_done if i < video.chunks_sent)
    new = [i for i in not_done if i >= video.chunks_sent][:max(0, window - out)]
    if new:
        video.chunks_sent = new[-1] + 1
    return new


def drop_plan(session: Session, *, video_id: str) -> None:
    """Every chunk of a video and what its units wrote (segments, shots, finished runs)."""
    for table in (Segment, Shot, ChunkRun, Chunk):
        session.execute(delete(table).where(table.video_id == video_id))
    session.flush()

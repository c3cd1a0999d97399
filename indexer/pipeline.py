"""The indexing pipeline as plain functions over ids: add -> plan -> index_chunk (each chunk,
in any order, any number of times) -> finalize. The CLI runs them in-process; Celery tasks
call the same functions. Every write is keyed so that running a step twice changes nothing."""

import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from contextvars import copy_context
from pathlib import Path

from sqlalchemy.exc import IntegrityError

from core.config import Settings
from core.errors import BadVideo, ChronoscopeError
from indexer import damage
from indexer import signals
from indexer.plan import ChunkSpan, plan_chunks
from indexer.probe import check_file, probe
from store import leases, queries
from store.db import session_scope
from store.schema import FAILED, PROCESSING, QUEUED, READY, Chunk, Video, utcnow

log = logging.getLogger(__name__)
# (ms of video indexed, duration ms, stage): what a progress bar shows
Progress = Callable[[int, int, str | None], None]
# Chunks of one video indexed side by side in-process at most: each holds its decoded frames.
MAX_LANES = 4
DECODE, FINALIZE = "decode", "finalize"      # the stages around the signals' own


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def add_video(settings: Settings, path: Path, *, tenant: str = "default",
              filename: str | None = None, sha256: str | None = None) -> str:
    """Register a file to index and return its id. The same content indexed again by the same
    tenant returns the existing video (a failed one is queued again). `sha256`: the file's
    digest when the caller computed it already (an upload, hashed as it streamed in)."""
    path = Path(path).resolve()
    check_file(path)
    digest = sha256 or file_sha256(path)
    try:
        with session_scope(settings) as s:
            existing = queries.find_video_by_sha256(s, sha256=digest, tenant=tenant)
            if existing is None:
                video = Video(id=uuid.uuid4().hex, tenant=tenant, filename=filename or path.name,
                              path=str(path), sha256=digest, size_bytes=path.stat().st_size,
                              status=QUEUED, notes=[])
                s.add(video)
                return video.id
            if existing.status == FAILED:
                existing.status, existing.error = QUEUED, None
            return existing.id
    except IntegrityError:
        # The same content added at the same moment by another process: theirs is the one.
        with session_scope(settings) as s:
            return queries.find_video_by_sha256(s, sha256=digest, tenant=tenant).id


def claim(settings: Settings, video_id: str) -> None:
    """Make this process the video's in-process runner (leases.Busy if another live one is),
    beating while the process lives, so a run that dies leaves it resumable."""
    with session_scope(settings) as s:
        leases.claim(s, queries.get_video(s, video_id), lease_s=settings.worker.lease_s)
    leases.keep_alive(settings)


def release(settings: Settings, video_id: str) -> None:
    """Drop this process's claim once the video is ready or failed."""
    with session_scope(settings) as s:
        leases.release(s, video_id=video_id)


def fail(settings: Settings, video_id: str, reason: str) -> None:
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        video.status, video.error, video.stage = FAILED, reason, None


def plan(settings: Settings, video_id: str) -> int:
    """Probe the file and store its chunk plan; returns the number of chunks. A video whose
    file cannot be used is marked failed with the reason, and BadVideo is raised."""
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        path, video.stage, video.started_at = video.path, DECODE, utcnow()
    try:
        info = probe(Path(path), settings.decode)
        spans = plan_chunks(info.duration_ms, length_ms=round(settings.chunk.length_s * 1000),
                            max_chunks=settings.decode.max_chunks)
    except BadVideo as e:
        fail(settings, video_id, str(e))
        raise
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        video.duration_ms, video.width, video.height = info.duration_ms, info.width, info.height
        video.fps, video.video_codec, video.has_audio = info.fps, info.video_codec, info.has_audio
        video.container = info.container     # what the media route serves it as
        video.status, video.error = PROCESSING, None
        # Damage found by finished chunks stays said: they are not decoded again.
        damaged = [n for n in video.notes or [] if n.startswith(damage.PREFIX)]
        video.notes = signals.skipped_notes(settings, info) + list(info.notes) + damaged
        video.captions = bool(settings.qwen.model)     # the plan's one record of it
        have = {c.idx: c for c in queries.get_chunks(s, video_id=video_id)}
        if [(c.idx, c.start_ms, c.end_ms) for c in have.values()] != \
           [(c.idx, c.start_ms, c.end_ms) for c in spans]:
            video.notes = video.notes[:len(video.notes) - len(damaged)]
            # The plan changed (new chunk length): old units no longer line up, start over.
            queries.drop_plan(s, video_id=video_id)
            video.progress_ms = 0
            s.add_all(Chunk(video_id=video_id, idx=c.idx, start_ms=c.start_ms, end_ms=c.end_ms)
                      for c in spans)
        video.chunks_total = len(spans)
        s.flush()
        queries.recount_done(s, video_id=video_id)
        video.run_from_ms = video.progress_ms       # the ETA's start: what was done before
    return len(spans)


# long: the units side by side, each stored with its progress, skip and deletion check
def index_chunk(settings: Settings, video_id: str, idx: int,
                on_progress: Progress | None = None) -> int:
    """Run every enabled signal over one chunk, skipping the units already finished with the
    same model; returns the number of units computed. Progress is stored as the units go
    (the frames decoded, then each unit stored), in seconds with the stage waited on, so even
    a one-chunk video moves."""
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        chunk = s.get(Chunk, (video_id, idx))
        if chunk is None:
            raise ChronoscopeError(f"video {video_id} has no chunk {idx}; plan it first")
        span = ChunkSpan(idx, chunk.start_ms, chunk.end_ms)
        done = queries.finished_runs(s, video_id=video_id, chunk_idx=idx)
        path, duration_ms, has_audio = Path(video.path), video.duration_ms, video.has_audio
    computed = 0
    enabled = signals.enabled(settings, has_audio=has_audio)
    todo = {sig: model for sig in enabled
            if (sig, model := signals.model_id(settings, sig)) not in done}
    waiting = list(todo)        # in the order they are stored: the one waited on first

    def decoded() -> None:      # on a signal's thread: the frames are in, the signals run
        if waiting:
            _progress(settings, video_id, signals.stage_of(waiting[0]), on_progress,
                      chunk_idx=idx, fraction=enabled.index(waiting[0]) / len(enabled))
    reads_frames = any(signals.reads_frames(sig) for sig in todo)
    context = signals.ChunkContext(settings, video_id, path, span, duration_ms, has_audio,
                                   on_decoded=decoded if reads_frames else None)
    results = signals.produce_each(list(todo), context)
    # closing: a deletion or a failed store stops the signals' threads now, not at GC
    with damage.recording() as seen, closing(results):
        if waiting:
            _progress(settings, video_id, DECODE if reads_frames else
                      signals.stage_of(waiting[0]), on_progress, chunk_idx=idx)
        for signal, (segments, vectors, embed_model) in results:
            model_id = todo[signal]
            _still_there(settings, video_id)     # deleted meanwhile: store nothing more
            with session_scope(settings) as s:
                queries.replace_unit(s, video_id=video_id, chunk_idx=idx, signal=signal,
                                     model_id=model_id, segments=segments, embeddings=vectors,
                                     embed_model=embed_model, kind=signals.kind_of(signal))
            computed += 1
            waiting.remove(signal)
            if waiting:
                decoded()
    note = damage.note(seen, span.start_ms, span.end_ms)
    with session_scope(settings) as s:
        if note:      # locked: chunks of one video finish in parallel
            video = s.get(Video, video_id, with_for_update=True)
            if note not in video.notes:
                video.notes = [*video.notes, note]
        queries.mark_chunk_done(s, video_id=video_id, chunk_idx=idx)
    return computed


def _progress(settings: Settings, video_id: str, stage: str | None,
              on_progress: Progress | None = None, **where) -> None:
    """Store the stage and seconds done (queries.set_progress) and tell the caller."""
    with session_scope(settings) as s:
        video = queries.set_progress(s, video_id=video_id, stage=stage, **where)
        shown = (video.progress_ms, video.duration_ms or 0, stage) if video else None
    if on_progress and shown:
        on_progress(*shown)


def _still_there(settings: Settings, video_id: str) -> None:
    """NotFound once the video is deleted: its running work stops at the next unit."""
    with session_scope(settings) as s:
        queries.get_video(s, video_id)


def finalize(settings: Settings, video_id: str, on_progress: Progress | None = None) -> None:
    """Chapters and summary, vectors in step with the database, a browser-playable preview
    if the file needs one, status ready."""
    from indexer import chapters, index_sync, preview   # only needed at the end
    _progress(settings, video_id, FINALIZE, on_progress)
    chapters.build_summary(settings, video_id)
    index_sync.sync(settings)
    preview.make(settings, video_id)
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        video.status, video.error, video.stage = READY, None, None
        video.progress_ms = video.duration_ms or 0


def index_video(settings: Settings, video_id: str,
                on_progress: Progress | None = None) -> None:
    """The whole pipeline in this process (claim it first to make a death resumable). A
    user-facing failure marks the video failed and is raised; chunks already finished are
    kept, so a later run resumes after them."""
    try:
        _index_chunks(settings, video_id, plan(settings, video_id), on_progress)
        finalize(settings, video_id, on_progress)
    except BadVideo:
        raise
    except ChronoscopeError as e:
        fail(settings, video_id, str(e))
        raise
    except Exception as e:
        # The reason goes to the video; the traceback only to a debug log.
        log.error("indexing %s failed: %s", video_id, e,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        fail(settings, video_id, f"internal error: {type(e).__name__}: {e}")
        raise
    finally:
        release(settings, video_id)      # only once ready or failed: a stopped run stays claimed


def _index_chunks(settings: Settings, video_id: str, total: int,
                  on_progress: Progress | None) -> None:
    """Every chunk, one per core side by side: on one chunk speech keeps only 1.7 of 2 cores
    busy, and two transcriptions of one thread each take 24 % less time than one after the
    other (bench/RESULTS.md, "Chunks side by side"). With Qwen3-VL captions (one model on
    one GPU), one chunk at a time. The first failure, in chunk order, is raised."""
    lanes = 1 if settings.qwen.model else min(total, len(os.sched_getaffinity(0)), MAX_LANES)
    if lanes <= 1:
        for idx in range(total):
            index_chunk(settings, video_id, idx, on_progress)
        return
    run = settings.model_copy(update={"speech": settings.speech.model_copy(
        update={"parallel": lanes})})
    with ThreadPoolExecutor(lanes, thread_name_prefix="chunk") as pool:
        futures = [pool.submit(copy_context().run, index_chunk, run, video_id, idx, on_progress)
                   for idx in range(total)]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.cancel()


def delete_video(settings: Settings, video_id: str, *, tenant: str | None = None) -> None:
    """Rows (segments, chunks, summaries by cascade), vectors, the preview, the thumbnails,
    and the stored file when chronoscope owns it (an upload in its media directory; never a
    user's own file)."""
    from indexer import index_sync, preview, thumbs
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id, tenant=tenant)
        path = Path(video.path)
        s.delete(video)
    index_sync.sync(settings)
    preview.delete(settings.media_dir, video_id)
    thumbs.delete(settings.media_dir, video_id)
    media = settings.media_dir.resolve()
    if path.is_relative_to(media):
        path.unlink(missing_ok=True)


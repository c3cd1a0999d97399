"""The pipeline end to end on real files and both databases: idempotent units, resume after
a crash without redoing finished chunks, and no duplicates."""

import shutil
import threading
import time

import numpy as np
import pytest

from core.types import SCREEN_TEXT, SPEECH
from indexer import pipeline, signals
from store import queries
from store.db import session_scope
from store.schema import READY, ChunkRun


def rows(settings, video_id):
    with session_scope(settings) as s:
        return [(r.chunk_idx, r.kind, r.start_ms, r.end_ms, r.text, r.model_id)
                for r in queries.get_segments(s, video_id=video_id)]


@pytest.fixture
def clip(media, tmp_path):
    path = tmp_path / "clip.mp4"
    shutil.copy(media / "his_girl_friday_6s.mp4", path)
    return path


def small_chunks(settings):
    settings.chunk.length_s, settings.chunk.overlap_s = 2.0, 1.0
    return settings


def test_index_stores_timed_embedded_segments(settings, clip):
    small_chunks(settings)
    vid = pipeline.add_video(settings, clip)
    pipeline.index_video(settings, vid)
    with session_scope(settings) as s:
        video = queries.get_video(s, vid)
        assert video.status == READY and video.chunks_done == video.chunks_total == 4
        assert 6000 <= video.duration_ms <= 6400
        assert any("visual captions skipped" in n and "CHRONOSCOPE_QWEN__MODEL" in n
                   for n in video.notes)
        segs = queries.get_segments(s, video_id=vid)
        kinds = {r.kind for r in segs}
        assert SPEECH in kinds
        for r in segs:
            assert 0 <= r.start_ms <= r.end_ms <= video.duration_ms + 1000
            vec = np.frombuffer(r.embedding, dtype=np.float32)
            assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-3
            # a chunk owns the segments that start inside it
            assert r.chunk_idx == min(r.start_ms // 2000, 3)
    # the same content again is the same video
    assert pipeline.add_video(settings, clip) == vid


def test_chunk_that_runs_twice_leaves_the_same_rows(settings, clip):
    small_chunks(settings)
    vid = pipeline.add_video(settings, clip)
    pipeline.index_video(settings, vid)
    before = rows(settings, vid)
    # force chunk 1 to run again from scratch: drop its finished marks, keep its rows
    with session_scope(settings) as s:
        for run in s.query(ChunkRun).filter_by(video_id=vid, chunk_idx=1):
            s.delete(run)
    assert pipeline.index_chunk(settings, vid, 1) >= 1
    assert rows(settings, vid) == before
    assert len(set(before)) == len(before)


def test_crash_mid_video_resumes_without_redoing_finished_chunks(settings, clip, monkeypatch):
    small_chunks(settings)
    reference = pipeline.add_video(settings, clip)
    pipeline.index_video(settings, reference)
    expected = [r[1:] for r in rows(settings, reference)]
    thumbs = settings.media_dir / "thumbs" / reference
    assert any(thumbs.glob("*.jpg"))
    pipeline.delete_video(settings, reference)
    assert not thumbs.exists()                  # what was in the video goes with it

    vid = pipeline.add_video(settings, clip)
    calls = []
    real_run = signals.run

    def crashing_run(signal, ctx):
        calls.append((ctx.span.idx, signal))
        if ctx.span.idx == 2:
            raise RuntimeError("worker killed")
        return real_run(signal, ctx)

    monkeypatch.setattr(signals, "run", crashing_run)
    with pytest.raises(RuntimeError):
        pipeline.index_video(settings, vid)
    with session_scope(settings) as s:
        spans = {c.idx: c.end_ms - c.start_ms for c in queries.get_chunks(s, video_id=vid)
                 if c.done_at}
        assert queries.get_video(s, vid).chunks_done == len(spans)
    finished = set(spans)
    # 0 and 1 (side by side) before 2; 3, beside 2, may have finished too
    assert {0, 1} <= finished and 2 not in finished, finished

    calls.clear()
    monkeypatch.setattr(signals, "run", lambda signal, ctx: (calls.append((ctx.span.idx, signal)),
                                                             real_run(signal, ctx))[1])
    pipeline.index_video(settings, vid)
    assert {idx for idx, _ in calls} == {0, 1, 2, 3} - finished     # none redone
    assert [r[1:] for r in rows(settings, vid)] == expected
    with session_scope(settings) as s:                 # the second run's ETA started there
        assert queries.get_video(s, vid).run_from_ms == sum(spans.values())


def test_a_resumed_runs_eta_counts_its_own_pace_only():
    from datetime import datetime, timedelta, timezone

    from store.schema import PROCESSING, Video
    from store.serialize import eta_s
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    video = Video(status=PROCESSING, duration_ms=600_000, progress_ms=400_000,
                  run_from_ms=300_000, started_at=now - timedelta(seconds=50))
    assert eta_s(video, now) == 100.0       # 100 s of video in 50 s; 200 s left
    video.run_from_ms = 0                   # a first run: all of it at this pace
    assert eta_s(video, now) == 25.0
    video.progress_ms = video.run_from_ms   # nothing done yet by this run: unknown
    assert eta_s(video, now) is None


def test_speech_and_screen_text_of_a_chunk_run_side_by_side(sqlite_settings, clip, monkeypatch):
    """Both start at once on their own threads (their models release the GIL) and both are
    stored."""
    spans, real_run = {}, signals.run

    def timed_run(signal, ctx):
        start = time.perf_counter()
        try:
            return real_run(signal, ctx)
        finally:
            spans[signal] = (start, time.perf_counter(), threading.current_thread().name)

    monkeypatch.setattr(signals, "run", timed_run)
    vid = pipeline.add_video(sqlite_settings, clip)
    pipeline.index_video(sqlite_settings, vid)
    (a0, a1, a_thread), (b0, b1, b_thread) = spans[SPEECH], spans[SCREEN_TEXT]
    assert a0 < b1 and b0 < a1 and a_thread != b_thread, spans
    with session_scope(sqlite_settings) as s:
        assert {r.signal for r in s.query(ChunkRun).filter_by(video_id=vid)} >= {SPEECH,
                                                                                 SCREEN_TEXT}
    assert any(r[1] == SPEECH for r in rows(sqlite_settings, vid))


def test_screen_text_is_owned_by_the_chunk_it_starts_in(sqlite_settings, media):
    """A chunk owns the readings that start in it and follows them past its end while they
    stay on screen (at most one chunk length): no reading is cut in two at a boundary."""
    s = sqlite_settings
    s.chunk.length_s, s.speech.enabled = 20.0, False
    vid = pipeline.add_video(s, media / "timer_text_61s.mp4")
    pipeline.index_video(s, vid)
    with session_scope(s) as sess:
        segs = queries.get_segments(sess, video_id=vid, kinds=[SCREEN_TEXT])
        assert segs, "the timer video shows text"
        for r in segs:
            assert r.chunk_idx * 20000 <= r.start_ms < (r.chunk_idx + 1) * 20000
            assert r.start_ms < r.end_ms <= (r.chunk_idx + 2) * 20000
        texts = [r.text for r in segs]
        assert len(texts) == len(set(texts)), "a reading crossing a boundary is one segment"


def test_visual_captions_with_a_configured_qwen3_vl(sqlite_settings, clip, tmp_path):
    """The real transformers path on a tiny random Qwen3-VL whose generation is scripted:
    visual segments land in absolute time inside their chunks, and the note is gone."""
    from qwen_tiny import build_tiny, variant
    answer = '[{"start": 1, "end": "0:03", "caption": "a woman walks into the newsroom"}]'
    model_dir = variant(build_tiny(tmp_path / "dense"), tmp_path / "scripted", answer=answer)
    s = sqlite_settings
    s.chunk.length_s, s.chunk.overlap_s = 3.0, 0.0
    s.speech.enabled = s.ocr.enabled = False
    s.qwen.model, s.qwen.frame_side, s.qwen.max_new_tokens = str(model_dir), 64, 48
    vid = pipeline.add_video(s, clip)
    pipeline.index_video(s, vid)
    with session_scope(s) as sess:
        video = queries.get_video(sess, vid)
        assert not any("visual captions skipped" in n for n in video.notes)
        segs = queries.get_segments(sess, video_id=vid, kinds=["visual"])
    # chunk 0 [0, 3 s) holds the event 1-3 s; chunk 1 [3, 6 s) clamps nothing into it, so
    # the answer (outside that window) is dropped there, or clamped to its edge
    assert segs and segs[0].start_ms == 1000 and segs[0].end_ms == 3000
    assert segs[0].text == "a woman walks into the newsroom"
    assert segs[0].model_id.startswith("scripted@")
    for r in segs:
        assert r.chunk_idx * 3000 <= r.start_ms <= r.end_ms <= (r.chunk_idx + 1) * 3000


def test_progress_waits_for_captions_written_in_a_later_stage(sqlite_settings, clip, tmp_path):
    """Workers run a chunk's CPU signals and its Qwen3-VL captions as two tasks: a chunk
    counts as done (progress, ETA) only once its captions are in too."""
    from qwen_tiny import build_tiny, variant
    from workers.flow import cpu_settings, gpu_settings
    model_dir = variant(build_tiny(tmp_path / "dense"), tmp_path / "scripted",
                        answer='[{"start": 0, "end": 2, "caption": "a newsroom"}]')
    s = sqlite_settings
    s.chunk.length_s, s.chunk.overlap_s = 3.0, 0.0
    s.qwen.model, s.qwen.frame_side, s.qwen.max_new_tokens = str(model_dir), 64, 32
    vid = pipeline.add_video(s, clip)
    n = pipeline.plan(s, vid)
    assert n >= 2

    def done():
        with session_scope(s) as sess:
            return queries.get_video(sess, vid).chunks_done
    for idx in range(n):
        pipeline.index_chunk(cpu_settings(s), vid, idx)
    assert done() == 0                      # speech and screen text in, captions to come
    for idx in range(n):
        pipeline.index_chunk(gpu_settings(s), vid, idx)
        assert done() == idx + 1
    # without a checkpoint the CPU signals are the whole of a chunk's work
    s.qwen.model = ""
    other = pipeline.add_video(s, small_copy(clip, tmp_path))
    pipeline.plan(s, other)
    pipeline.index_chunk(s, other, 0)
    with session_scope(s) as sess:
        assert queries.get_video(sess, other).chunks_done == 1


def small_copy(clip, tmp_path):
    """The clip with one byte appended: other content, so a new video (same pictures)."""
    path = tmp_path / "other.mp4"
    path.write_bytes(clip.read_bytes() + b"\0")
    return path


def _add(settings, path, barrier, out):
    from store import db
    db._engines.clear()       # never share a parent's connections
    find = queries.find_video_by_sha256
    first = [True]

    def find_then_wait(session, **kw):
        # Every process looks first and finds nothing; then all of them insert.
        found = find(session, **kw)
        if first[0]:
            first[0] = False
            barrier.wait()
        return found
    queries.find_video_by_sha256 = find_then_wait
    out.put(pipeline.add_video(settings, path))


def test_same_content_added_at_once_is_one_video(settings, clip):
    import multiprocessing
    with session_scope(settings):
        pass                  # migrated before the processes start
    # Fresh processes: by now this one holds model threads (CTranslate2's workers), and a
    # fork of a threaded process can inherit a lock that one of them held.
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_add, args=(settings, clip, barrier, out)) for _ in range(4)]
    for p in procs:
        p.start()
    ids = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert len(set(ids)) == 1
    with session_scope(settings) as s:
        assert [v.id for v in queries.list_videos(s)] == ids[:1]
    # another tenant's copy of the same content is its own video
    assert pipeline.add_video(settings, clip, tenant="other") != ids[0]


def test_frames_are_decoded_at_the_size_the_running_signals_need(sqlite_settings, media):
    """Screen text wants large frames; a captions-only stage (a GPU worker) decodes at the
    caption size instead of carrying the OCR size for nothing."""
    from indexer.plan import ChunkSpan
    from workers.flow import cpu_settings, gpu_settings
    s = sqlite_settings
    s.qwen.model, s.qwen.frame_side, s.ocr.max_side = "some/checkpoint", 160, 640
    path = media / "timer_text_61s.mp4"       # 1280 x 720

    def side(settings):
        ctx = signals.ChunkContext(settings, "v", path, ChunkSpan(0, 0, 2000), 61_000, False)
        return max(ctx.frames()[0].image.shape[:2])
    assert side(s) == 640
    assert side(cpu_settings(s)) == 640
    assert side(gpu_settings(s)) == 160


def test_a_one_chunk_video_moves_through_its_stages(sqlite_settings, clip):
    """Progress is stored per unit of work, in seconds of video with the stage, so a short
    one-chunk file moves before it is done; the video JSON shows it with an ETA."""
    from store.serialize import video_json
    s = sqlite_settings
    vid = pipeline.add_video(s, clip)
    seen = []

    def record(done_ms, total_ms, stage):
        with session_scope(s) as sess:
            seen.append((done_ms, total_ms, stage, video_json(queries.get_video(sess, vid))))
    pipeline.index_video(s, vid, on_progress=record)
    stages = [stage for _, _, stage, _ in seen]
    assert stages == ["decode", "speech", "text", "visual", "finalize"]
    done = [ms for ms, _, _, _ in seen]
    total = seen[0][1]
    assert 6000 <= total <= 6400 and done == sorted(done)
    assert 0 < done[2] < done[3] < total        # inside the one chunk, per signal
    for ms, _, stage, shown in seen:            # what the database says at that moment
        assert shown["stage"] == stage and shown["progress_s"] == ms / 1000
        assert shown["progress"] == round(100 * ms / total, 1)
        assert (shown["eta_s"] is not None) == (ms > 0)   # from the first unit done on
        assert (shown["eta_s"] == 0) == (ms == total)
    with session_scope(s) as sess:
        final = video_json(queries.get_video(sess, vid))
    assert final["stage"] is None and final["eta_s"] is None
    assert final["progress"] == 100.0 and final["progress_s"] == final["duration"]

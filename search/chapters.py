"""A video's summary and chapters as users read them (written by `indexer.chapters`)."""

from core.config import Settings
from core.times import seconds
from search import thumbnails
from store import queries
from store import shots as shot_rows
from store.db import session_scope


def get_summary(settings: Settings, video_id: str, *, tenant: str | None = None) -> dict:
    """{video_id, summary, model, chapters: [{start, end, title, summary, thumbnail}]},
    times in seconds with millisecond precision; chapters empty until the video is
    finalized. A chapter's thumbnail is the URL of the keyframe it opens on
    (`search.thumbnails.chapter_ms`), null when the video has no keyframes."""
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id, tenant=tenant)
        rows = queries.get_summaries(s, video_id=video_id)
        shots = shot_rows.get_shots(s, video_id=video_id)
        duration = video.duration_ms
    summary = next((r for r in rows if r.kind == "summary"), None)
    chapters = sorted((r for r in rows if r.kind == "chapter"), key=lambda r: r.idx)
    return {"video_id": video_id,
            "duration": seconds(duration),
            "summary": summary.text if summary else None,
            "model": summary.model_id if summary else None,
            "chapters": [{"start": seconds(r.start_ms), "end": seconds(r.end_ms),
                          "title": r.title, "summary": r.text,
                          "thumbnail": thumbnails.url(
                              video_id, thumbnails.chapter_ms(shots, r.start_ms, r.end_ms))}
                         for r in chapters]}

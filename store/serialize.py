"""Rows as JSON, the one shape the CLI, the HTTP API and webhooks all show. Times are
seconds with millisecond precision."""

from core.times import seconds
from store.leases import shown_status
from store.schema import Segment, Video


def video_json(v: Video) -> dict:
    return {"id": v.id, "filename": v.filename, "status": shown_status(v),
            "duration": seconds(v.duration_ms), "error": v.error, "notes": list(v.notes or []),
            "progress": round(100 * v.chunks_done / v.chunks_total, 1) if v.chunks_total else 0.0,
            "chunks_done": v.chunks_done, "chunks_total": v.chunks_total,
            "width": v.width, "height": v.height, "has_audio": v.has_audio,
            "created_at": v.created_at.isoformat() if v.created_at else None}


def segment_json(seg: Segment) -> dict:
    return {"id": seg.id, "start": seconds(seg.start_ms), "end": seconds(seg.end_ms),
            "kind": seg.kind, "text": seg.text, "model": seg.model_id}

"""Rows as JSON, the one shape the CLI, the HTTP API and webhooks all show. Times are
seconds with millisecond precision."""

from datetime import datetime, timezone

from core.times import seconds
from store.leases import shown_status
from store.schema import PROCESSING, READY, Segment, Video


def video_json(v: Video, now: datetime | None = None) -> dict:
    done_ms = v.duration_ms if v.status == READY else (v.progress_ms or 0)
    status = shown_status(v)
    running = status == PROCESSING         # not an interrupted run's last stage
    return {"id": v.id, "tenant": v.tenant, "filename": v.filename, "status": status,
            "duration": seconds(v.duration_ms), "error": v.error, "notes": list(v.notes or []),
            "progress": round(100 * done_ms / v.duration_ms, 1) if v.duration_ms else 0.0,
            "progress_s": seconds(done_ms or 0), "stage": v.stage if running else None,
            "eta_s": eta_s(v, now or datetime.now(timezone.utc)) if running else None,
            "chunks_done": v.chunks_done, "chunks_total": v.chunks_total,
            "width": v.width, "height": v.height, "has_audio": v.has_audio,
            "created_at": v.created_at.isoformat() if v.created_at else None}


def eta_s(v: Video, now: datetime) -> float | None:
    """Seconds until done at this run's pace (seconds of video indexed per second since its
    plan began; a resumed run does not count what was done before it); known from its first
    unit of work on, None before and once it is over."""
    done_ms = (v.progress_ms or 0) - (v.run_from_ms or 0)
    if v.status != PROCESSING or done_ms <= 0 or not v.duration_ms or not v.started_at:
        return None
    started = v.started_at if v.started_at.tzinfo else v.started_at.replace(tzinfo=timezone.utc)
    elapsed = max(0.0, (now - started).total_seconds())
    return round(elapsed / done_ms * max(0, v.duration_ms - v.progress_ms), 1)


def segment_json(seg: Segment) -> dict:
    return {"id": seg.id, "start": seconds(seg.start_ms), "end": seconds(seg.end_ms),
            "kind": seg.kind, "text": seg.text, "model": seg.model_id}

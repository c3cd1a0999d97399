"""A video's webhook row: where to announce ready/failed, and what was sent."""

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from store.schema import Tenant, Video, Webhook, utcnow


def set_webhook(session: Session, *, video_id: str, url: str) -> None:
    hook = session.get(Webhook, video_id)
    if hook is None:
        session.add(Webhook(video_id=video_id, url=url))
    else:
        hook.url = url


def has_webhook(session: Session, *, video_id: str) -> bool:
    return session.get(Webhook, video_id) is not None


def claim_event(session: Session, *, video_id: str, status: str) -> bool:
    """Atomically mark `status` as announced; False when it already was (or no webhook)."""
    return bool(session.execute(update(Webhook).where(
        Webhook.video_id == video_id,
        or_(Webhook.notified_status.is_(None), Webhook.notified_status != status))
        .values(notified_status=status)).rowcount)


def delivery_target(session: Session, *, video_id: str
                    ) -> tuple[Webhook, Video, Tenant] | None:
    """The webhook, its video and the video's tenant (for the signing secret), or None."""
    hook = session.get(Webhook, video_id)
    video = session.get(Video, video_id)
    tenant = session.get(Tenant, video.tenant) if video is not None else None
    if hook is None or video is None or tenant is None:
        return None
    return hook, video, tenant


def record_delivery(session: Session, *, video_id: str, error: str | None) -> None:
    hook = session.get(Webhook, video_id)
    if hook is not None:
        hook.last_error = error
        if error is None:
            hook.delivered_at = utcnow()

"""Webhooks on ready/failed, signed with HMAC-SHA256.

The request carries `Chronoscope-Signature: t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256(tenant's webhook secret, f"{t}.{body}"): the timestamp inside the MAC lets a
receiver refuse replays (see `verify`). The body is JSON: {"id", "event", "created",
"video"}; `id` is stable per (video, status), so a receiver can drop a duplicate.
"""

import hashlib
import hmac
import json
import logging
import time

from core.config import Settings
from core.errors import BadInput, TransientError
from store import webhooks as rows
from store.db import session_scope
from store.serialize import video_json
from workers import egress

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Chronoscope-Signature"
INLINE_ATTEMPTS = 3


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_s: int = 300,
           now: float | None = None) -> bool:
    """What a receiver runs: the MAC matches and the timestamp is recent."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    ts = parts.get("t", "")
    if not ts.isdigit() or abs((now or time.time()) - int(ts)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, int(ts)), f"t={ts},v1={parts.get('v1', '')}")


def has_webhook(settings: Settings, video_id: str) -> bool:
    with session_scope(settings) as s:
        return rows.has_webhook(s, video_id=video_id)


def _claim(settings: Settings, video_id: str, status: str, first_attempt: bool
           ) -> tuple[str, str, bytes] | None:
    """(url, secret, body) to send, or None when there is nothing to send. The first attempt
    claims the event atomically, so a finalize that ran twice announces once."""
    with session_scope(settings) as s:
        if first_attempt and not rows.claim_event(s, video_id=video_id, status=status):
            return None
        target = rows.delivery_target(s, video_id=video_id)
        if target is None:
            return None
        hook, video, tenant = target
        body = json.dumps({"id": f"{video_id}.{status}", "event": f"video.{status}",
                           "created": int(time.time()), "video": video_json(video)}).encode()
        return hook.url, tenant.webhook_secret, body


def _record(settings: Settings, video_id: str, error: str | None) -> None:
    with session_scope(settings) as s:
        rows.record_delivery(s, video_id=video_id, error=error)


def deliver(settings: Settings, video_id: str, status: str, *, first_attempt: bool = True
            ) -> bool:
    """POST the event. A network error, 408, 429 or 5xx raises TransientError (retry); any
    other answer, and a target that egress refuses (private, metadata), is final. Returns
    whether the receiver accepted it."""
    claim = _claim(settings, video_id, status, first_attempt)
    if claim is None:
        return False
    url, secret, body = claim
    headers = {"Content-Type": "application/json", "User-Agent": "chronoscope-webhook",
               SIGNATURE_HEADER: sign(secret, body, int(time.time()))}
    try:
        # Redirects are not followed: one would turn the POST into a GET elsewhere.
        code = egress.post(url, body, headers, timeout=settings.api.webhook_timeout_s,
                           allow_private=settings.api.webhook_allow_private)
    except BadInput as e:          # checked again at send time: DNS may have changed
        _record(settings, video_id, f"refused: {e}")
        return False
    except OSError as e:      # refused, DNS, timeout
        _record(settings, video_id, f"{type(e).__name__}: {e}")
        raise TransientError(f"webhook {url}: {e}") from e
    if code in (408, 429) or code >= 500:
        _record(settings, video_id, f"HTTP {code}")
        raise TransientError(f"webhook {url}: HTTP {code}")
    ok = 200 <= code < 300
    _record(settings, video_id, None if ok else f"HTTP {code} (not retried)")
    return ok


def deliver_inline(settings: Settings, video_id: str, status: str) -> None:
    """Without a broker: a few attempts with backoff, in the indexing thread."""
    for attempt in range(INLINE_ATTEMPTS):
        try:
            deliver(settings, video_id, status, first_attempt=attempt == 0)
            return
        except TransientError as e:
            log.warning("webhook for %s failed (%s)", video_id, e)
            if attempt + 1 < INLINE_ATTEMPTS:
                time.sleep(2 ** attempt)

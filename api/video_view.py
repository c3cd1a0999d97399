"""A video as the API shows it: the shared JSON plus size, signals and a signed
media URL."""

import time
from datetime import datetime, timezone

from fastapi import Request
from sqlalchemy.orm import Session

from api.media_tokens import media_token, server_secret
from store import queries
from store.schema import Video
from store.serialize import video_json


def videos_out(request: Request, session: Session, videos: list[Video]) -> list[dict]:
    settings, api = request.app.state.settings, request.app.state.api_settings
    expires = int(time.time()) + api.media_url_ttl_s
    secret = server_secret(settings, api)
    signals = queries.signal_counts(session, video_ids=[v.id for v in videos])
    now = datetime.now(timezone.utc)
    return [{**video_json(v, now), "size_bytes": v.size_bytes,
             "signals": signals[v.id],
             "media_url": f"/v1/videos/{v.id}/media?token="
                          f"{media_token(secret, v.id, v.tenant, expires)}"}
            for v in videos]


def video_out(request: Request, session: Session, video: Video) -> dict:
    return videos_out(request, session, [video])[0]

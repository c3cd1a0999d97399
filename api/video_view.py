"""A video as the API shows it: the shared JSON plus size, signals and signed media
URLs: the original (`media_url`) and what a browser can play (`playback_url`: the preview
made at index time when the original cannot play, else the original)."""

import time
from datetime import datetime, timezone

from fastapi import Request
from sqlalchemy.orm import Session

from api.media_tokens import media_token, server_secret
from indexer.preview import preview_path
from store import queries
from store.schema import Video
from store.serialize import video_json


def videos_out(request: Request, session: Session, videos: list[Video]) -> list[dict]:
    settings, api = request.app.state.settings, request.app.state.api_settings
    expires = int(time.time()) + api.media_url_ttl_s
    secret = server_secret(settings, api)
    signals = queries.signal_counts(session, video_ids=[v.id for v in videos])
    now = datetime.now(timezone.utc)
    out = []
    for v in videos:
        token = media_token(secret, v.id, v.tenant, expires)
        media_url = f"/v1/videos/{v.id}/media?token={token}"
        playback = f"/v1/videos/{v.id}/playback?token={token}" \
            if preview_path(settings.media_dir, v.id).is_file() else media_url
        out.append({**video_json(v, now), "size_bytes": v.size_bytes,
                    "signals": signals[v.id], "media_url": media_url, "playback_url": playback})
    return out


def video_out(request: Request, session: Session, video: Video) -> dict:
    return videos_out(request, session, [video])[0]

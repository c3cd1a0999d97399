"""Signed media URLs. An HTML5 <video> cannot send an Authorization header, so the API hands
out media URLs that carry a short-lived HMAC token instead of the key (which would then leak
into logs)."""

import hashlib
import hmac
import os
import secrets
import time
from functools import lru_cache
from pathlib import Path

from core.config import ApiSettings, Settings


def server_secret(settings: Settings, api: ApiSettings) -> bytes:
    return api.secret.encode() if api.secret else _stored_secret(settings.home.resolve())


@lru_cache
def _stored_secret(home: Path) -> bytes:
    path = home / "api_secret"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)      # first writer wins, so every replica reads the same one
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def media_token(secret: bytes, video_id: str, expires: int) -> str:
    mac = hmac.new(secret, f"{video_id}.{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{expires}.{mac}"


def media_token_ok(secret: bytes, video_id: str, token: str) -> bool:
    expires, _, _mac = token.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(media_token(secret, video_id, int(expires)), token)

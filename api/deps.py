"""Typed FastAPI dependencies: settings, session, tenant (from the API key), "video or 404",
the streamed upload, API keys and media URL tokens."""

import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path as FsPath
from typing import Annotated

import anyio
from fastapi import Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import ClientDisconnect
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.config import ApiSettings, Settings
from core.errors import BadInput
from store import queries
from store.db import session_scope
from store.schema import ApiKey, Tenant, Video


# Tenant names become directory names under media/, so they stay path-safe.
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def hash_key(key: str) -> str:
    # Keys are 256 random bits, so a plain SHA-256 is enough: no salt or slow hash needed.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, *, tenant: str) -> tuple[str, Tenant]:
    """A new API key for the tenant (created if new). The key is returned once, never stored."""
    if not TENANT_NAME.fullmatch(tenant):
        raise BadInput(f"bad tenant name {tenant!r}: use 1-64 of a-z, 0-9, '_' and '-', "
                       "starting with a letter or digit")
    row = session.get(Tenant, tenant)
    if row is None:
        row = Tenant(name=tenant, webhook_secret=secrets.token_hex(32))
        session.add(row)
        session.flush()
    key = "cs_" + secrets.token_urlsafe(32)
    session.add(ApiKey(id=uuid.uuid4().hex, tenant=tenant, key_hash=hash_key(key),
                       prefix=key[:10]))
    return key, row


def tenant_for_key(session: Session, key: str) -> str | None:
    return session.scalar(select(ApiKey.tenant).where(ApiKey.key_hash == hash_key(key),
                                                      ApiKey.revoked_at.is_(None)))


# --- media URLs ----------------------------------------------------------------------------
# An HTML5 <video> cannot send an Authorization header, so the API hands out media URLs that
# carry a short-lived HMAC token instead of the key (which would then leak into logs).

def server_secret(settings: Settings, api: ApiSettings) -> bytes:
    return api.secret.encode() if api.secret else _stored_secret(settings.home.resolve())


@lru_cache
def _stored_secret(home: FsPath) -> bytes:
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


# --- dependencies --------------------------------------------------------------------------

def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_api_settings(request: Request) -> ApiSettings:
    return request.app.state.api_settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
ApiSettingsDep = Annotated[ApiSettings, Depends(get_api_settings)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    """One transaction per request, for reads; writes go through the pipeline's functions."""
    with session_scope(settings) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer API_KEY")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: API_KEY")
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
HeaderKeyDep = Annotated[str | None, Security(_header)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(401, message, headers={"WWW-Authenticate": "Bearer"})


def _presented_key(bearer: HTTPAuthorizationCredentials | None, header: str | None) -> str | None:
    return header or (bearer.credentials if bearer else None)


def get_tenant(settings: SettingsDep, bearer: BearerDep, header: HeaderKeyDep) -> str:
    key = _presented_key(bearer, header)
    if not key:
        raise _unauthorized("an API key is required: send 'Authorization: Bearer KEY' or "
                            "'X-API-Key: KEY' (create one with `chronoscope keys TENANT`)")
    with session_scope(settings) as s:
        tenant = tenant_for_key(s, key)
    if tenant is None:
        raise _unauthorized("unknown or revoked API key")
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
# Ids are hex today; the pattern keeps bytes a database refuses (NUL) out of every query.
VIDEO_ID = r"^[0-9A-Za-z_-]{1,64}$"
VideoIdPath = Annotated[str, Path(pattern=VIDEO_ID, description="video id")]


def get_video(video_id: VideoIdPath, tenant: TenantDep, session: SessionDep) -> Video:
    """The tenant's video or NotFound (404): another tenant's video does not exist for it."""
    return queries.get_video(session, video_id, tenant=tenant)


VideoDep = Annotated[Video, Depends(get_video)]


def get_media_video(video_id: VideoIdPath, settings: SettingsDep, api: ApiSettingsDep,
                    session: SessionDep, bearer: BearerDep, header: HeaderKeyDep,
                    token: Annotated[str | None, Query(max_length=128, description=
                                     "signed token from the video's media_url")] = None
                    ) -> Video:
    """The media endpoint takes an API key like every other, or the signed token that a
    video's `media_url` carries (for players)."""
    if token is not None and media_token_ok(server_secret(settings, api), video_id, token):
        return queries.get_video(session, video_id)
    key = _presented_key(bearer, header)
    if token is not None and not key:
        raise _unauthorized("the media token is invalid or has expired; fetch the video "
                            "again for a fresh media_url")
    return get_video(video_id, get_tenant(settings, bearer, header), session)


MediaVideoDep = Annotated[Video, Depends(get_media_video)]


# --- the streamed upload -------------------------------------------------------------------

FIELD_LIMIT = 8192          # bytes for a non-file form field (webhook_url)
WRITE_BLOCK = 1 << 20       # hash and write in 1 MiB blocks, off the event loop


@dataclass
class Upload:
    path: FsPath                    # a temporary file in the media directory
    filename: str
    size: int = 0
    sha256: str = ""
    fields: dict[str, str] = field(default_factory=dict)


class _Receiver:
    """python-multipart callbacks: the part named 'file' goes to disk, other fields to
    memory (bounded); the caller drains `pending` between network reads."""

    def __init__(self, limit: int):
        self.limit = limit
        self.pending = bytearray()
        self.size = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._headers: dict[bytes, bytes] = {}
        self._name = b""
        self._value = b""
        self._part: str | None = None      # field name of the current part
        self._is_file = False
        self._data = bytearray()

    def on_part_begin(self) -> None:
        self._headers, self._data, self._part, self._is_file = {}, bytearray(), None, False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if b"name" not in options:
            raise _bad_upload("every multipart part needs a Content-Disposition name")
        self._part = options[b"name"].decode("utf-8", "replace")
        if self._part == "file":
            if self.filename is not None:
                raise _bad_upload("send one file per request")
            self._is_file = True
            self.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.size += end - start
            if self.size > self.limit:
                raise HTTPException(413, f"the file is larger than the upload limit of "
                                         f"{self.limit // (1024 * 1024)} MiB")
            self.pending += data[start:end]
        else:
            self._data += data[start:end]
            if len(self._data) > FIELD_LIMIT:
                raise _bad_upload(f"form field {self._part!r} is longer than {FIELD_LIMIT} bytes")

    def on_part_end(self) -> None:
        if not self._is_file and self._part is not None:
            self.fields[self._part] = self._data.decode("utf-8", "replace")


def _bad_upload(message: str) -> HTTPException:
    return HTTPException(422, message)


async def receive_upload(request: Request, settings: SettingsDep, api: ApiSettingsDep,
                         tenant: TenantDep) -> AsyncIterator[Upload]:
    """Stream the multipart body to a temporary file in the media directory, hashing as it
    goes and stopping at the size limit; the endpoint renames the file into place, and
    whatever is left is removed afterwards."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or b"boundary" not in options:
        raise HTTPException(415, "upload the video as multipart/form-data with a 'file' field")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > api.max_upload_bytes + 64 * 1024:
        raise HTTPException(413, f"the file is larger than the upload limit of "
                                 f"{api.max_upload_bytes // (1024 * 1024)} MiB")
    incoming = settings.media_dir / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    path = incoming / f"{uuid.uuid4().hex}.part"
    receiver = _Receiver(api.max_upload_bytes)
    digest = hashlib.sha256()
    parser = MultipartParser(options[b"boundary"], {
        name: getattr(receiver, name) for name in (
            "on_part_begin", "on_part_data", "on_part_end", "on_header_field",
            "on_header_value", "on_header_end", "on_headers_finished")})

    def flush(f) -> None:
        digest.update(receiver.pending)
        f.write(receiver.pending)
        receiver.pending.clear()

    try:
        with open(path, "wb") as f:
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
                    if len(receiver.pending) >= WRITE_BLOCK:
                        await anyio.to_thread.run_sync(flush, f)
                parser.finalize()
            except FormParserError as e:
                raise _bad_upload(f"malformed multipart body: {e}") from None
            except ClientDisconnect:
                raise HTTPException(400, "the upload was interrupted") from None
            await anyio.to_thread.run_sync(flush, f)
        if receiver.filename is None:
            raise _bad_upload("the multipart body has no 'file' field")
        # Only a display name: it never becomes a path, but the database must take it.
        name = "".join(c for c in FsPath(receiver.filename).name if c.isprintable())
        yield Upload(path=path, filename=name[:255] or "upload",
                     size=receiver.size, sha256=digest.hexdigest(), fields=receiver.fields)
    finally:
        path.unlink(missing_ok=True)


UploadDep = Annotated[Upload, Depends(receive_upload)]

"""Typed FastAPI dependencies: settings, session, tenant (from the API key) and "video or
404", for a key or a signed media token."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import StringConstraints
from sqlalchemy.orm import Session

from api.media_tokens import media_token_ok, server_secret
from core.config import ApiSettings, Settings
from store import keys, queries
from store.db import session_scope
from store.schema import Video



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
                            "'X-API-Key: KEY' (create one with `chronoscope keys create TENANT`)")
    with session_scope(settings) as s:
        tenant = keys.tenant_for_key(s, key=key)
    if tenant is None:
        raise _unauthorized("unknown or revoked API key")
    return tenant


TenantDep = Annotated[str, Depends(get_tenant)]
# Ids are hex today; the pattern keeps bytes a database refuses (NUL) out of every query.
VIDEO_ID = r"^[0-9A-Za-z_-]{1,64}$"
VideoIdPath = Annotated[str, Path(pattern=VIDEO_ID, description="video id")]


def get_video(video_id: VideoIdPath, tenant: TenantDep, session: SessionDep) -> Video:
    """The tenant's video, by its id or a unique prefix of it; NotFound (404): another
    tenant's video does not exist for it; an ambiguous prefix is a 422 naming the videos."""
    return queries.resolve_video(session, video_id, tenant=tenant)


VideoDep = Annotated[Video, Depends(get_video)]
VideoIds = Annotated[list[Annotated[str, StringConstraints(pattern=VIDEO_ID)]] | None,
                     Query(description="video ids (or unique prefixes)")]
Like = Annotated[str | None, Query(max_length=100, pattern=r"^[0-9A-Za-z_-]{1,64}@[0-9.]+$",
                                   description="VIDEO_ID@SECONDS: moments that look like it")]


def get_video_filter(tenant: TenantDep, session: SessionDep, video: VideoIds = None
                     ) -> list[str] | None:
    """The `video=` filter of a search as full ids, each resolved like a path's id."""
    return [queries.resolve_video(session, ref, tenant=tenant).id for ref in video] \
        if video else None


def get_like(tenant: TenantDep, session: SessionDep, like: Like = None
             ) -> tuple[str, int] | None:
    """`like=VIDEO@SECONDS` as (full video id, t_ms), the id resolved like a path's id."""
    if like is None:
        return None
    from search import visual
    ref, t_ms = visual.parse_like(like)
    return queries.resolve_video(session, ref, tenant=tenant).id, t_ms


VideoFilterDep = Annotated[list[str] | None, Depends(get_video_filter)]
LikeDep = Annotated[tuple[str, int] | None, Depends(get_like)]


def get_media_video(video_id: VideoIdPath, settings: SettingsDep, api: ApiSettingsDep,
                    bearer: BearerDep, header: HeaderKeyDep,
                    token: Annotated[str | None, Query(max_length=128, description=
                                     "signed token from the video's media_url")] = None
                    ) -> Video:
    """The media endpoint takes an API key like every other, or the signed token that a
    video's `media_url` carries (for players). Its own short session: a download or a clip
    encode must not hold a pooled connection for as long as it runs."""
    with session_scope(settings) as session:
        if token is not None:
            video = queries.find_video(session, video_id=video_id)
            if video is not None and media_token_ok(server_secret(settings, api), video.id,
                                                    video.tenant, token):
                return video
        key = _presented_key(bearer, header)
        if token is not None and not key:
            raise _unauthorized("the media token is invalid or has expired; fetch the video "
                                "again for a fresh media_url")
        return get_video(video_id, get_tenant(settings, bearer, header), session)


MediaVideoDep = Annotated[Video, Depends(get_media_video)]

"""/v1/videos/{id}/media: the uploaded file, seekable; /v1/videos/{id}/thumbnails: the
keyframes' JPEGs."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.errors import ApiError
from api.deps import MediaVideoDep, SessionDep, SettingsDep
from api.media_types import media_headers, media_type
from api.schemas import errors
from core.errors import BadVideo, NotFound
from store.schema import Video

router = APIRouter(tags=["videos"])


def _container(session, video: Video, path: Path) -> str | None:
    """The probed container; rows planned before it was stored get it now, once."""
    if video.container is None:
        from indexer.probe import open_media
        try:
            with open_media(path) as opened:
                video.container = opened.format.name[:64]
        except BadVideo:
            return None
        session.flush()
    return video.container


@router.get("/v1/videos/{video_id}/media", response_class=FileResponse,
            responses={200: {"content": {"video/*": {}}, "description": "the file"},
                       206: {"content": {"video/*": {}}, "description": "a byte range"},
                       **errors(400, 401, 404, 416, 422)})
def media(video: MediaVideoDep, session: SessionDep, request: Request) -> FileResponse:
    """The uploaded file, with range requests so a player can seek. Authorise with a
    key, or with the `token` of the video's media_url (for an HTML5 <video>). Its type
    comes from the probed container, never from the uploaded name."""
    from indexer.probe import check_file
    path = Path(video.path)
    try:
        check_file(path)
    except BadVideo as e:
        raise NotFound(f"the media file of video {video.id} is unusable: "
                       f"{str(e).removeprefix(path.name + ': ')}") from None
    _check_range(request.headers.get("range"), path.stat().st_size)
    mime = media_type(_container(session, video, path), video.video_codec)
    return FileResponse(path, media_type=mime, headers=media_headers(video.filename, mime))


def _check_range(header: str | None, size: int) -> None:
    """Starlette answers a bad Range in plain text: refuse it first, in the API's error
    body."""
    if not header:
        return
    try:
        FileResponse._parse_range_header(header, size)
    except MalformedRangeHeader as e:
        raise ApiError(400, "bad_range", e.content) from None
    except RangeNotSatisfiable:
        raise ApiError(416, "range_not_satisfiable", f"the file has {size} bytes",
                       {"Content-Range": f"bytes */{size}"}) from None


@router.get("/v1/videos/{video_id}/thumbnails/{t_ms}.jpg", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the keyframe"},
                       **errors(401, 404, 422)})
def thumbnail(video: MediaVideoDep, settings: SettingsDep,
              t_ms: Annotated[int, PathParam(ge=0, le=2**31 - 1, description="ms")]
              ) -> FileResponse:
    """A keyframe's thumbnail (320 px JPEG), as a moment's `thumbnail` names it; a key or
    the video's media token authorises it, like the media."""
    from indexer import thumbs
    path = thumbs.thumb_path(settings.media_dir, video.id, t_ms)
    if not path.is_file():
        raise NotFound(f"video {video.id} has no thumbnail at {t_ms} ms")
    return FileResponse(path, media_type="image/jpeg",
                        headers={"X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "private, max-age=86400"})

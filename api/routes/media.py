"""/v1/videos/{id}/media: the uploaded file, seekable; /playback: what a browser can play
(the preview made at index time, or the file); /clip: a moment cut out as an MP4;
/thumbnails: the keyframes' JPEGs."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, StreamingResponse
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable

from api.errors import ApiError
from api.deps import MediaVideoDep, SettingsDep
from api.limits import ClipSlot
from api.media_types import media_headers, media_type
from api.schemas import errors
from core.errors import BadVideo, NotFound
from store.schema import Video

router = APIRouter(tags=["videos"])


def _container(settings, video: Video, path: Path) -> str | None:
    """The probed container; rows planned before it was stored get it now, once."""
    if video.container is None:
        from indexer.probe import open_media
        from store.db import session_scope
        try:
            with open_media(path) as opened:
                video.container = opened.format.name[:64]
        except BadVideo:
            return None
        with session_scope(settings) as s:
            s.get(Video, video.id).container = video.container
    return video.container


@router.get("/v1/videos/{video_id}/media", response_class=FileResponse,
            responses={200: {"content": {"video/*": {}}, "description": "the file"},
                       206: {"content": {"video/*": {}}, "description": "a byte range"},
                       **errors(400, 401, 404, 416, 422)})
def media(video: MediaVideoDep, settings: SettingsDep, request: Request) -> FileResponse:
    """The uploaded file, with range requests so a player can seek. Authorise with a
    key, or with the `token` of the video's media_url (for an HTML5 <video>). Its type
    comes from the probed container, never from the uploaded name."""
    path = _media_file(video)
    _check_range(request.headers.get("range"), path.stat().st_size)
    mime = media_type(_container(settings, video, path), video.video_codec)
    return FileResponse(path, media_type=mime, headers=media_headers(video.filename, mime))


def _media_file(video: Video) -> Path:
    from indexer.probe import check_file
    path = Path(video.path)
    try:
        check_file(path)
    except BadVideo as e:
        raise NotFound(f"the media file of video {video.id} is unusable: "
                       f"{str(e).removeprefix(path.name + ': ')}") from None
    return path


@router.get("/v1/videos/{video_id}/playback", response_class=FileResponse,
            responses={200: {"content": {"video/*": {}}, "description": "the file"},
                       206: {"content": {"video/*": {}}, "description": "a byte range"},
                       **errors(400, 401, 404, 416, 422)})
def playback(video: MediaVideoDep, settings: SettingsDep, request: Request) -> FileResponse:
    """What a browser can play, as the video's `playback_url` names it: the H.264/AAC
    preview made at index time when the original cannot play (AVI, MPEG-4 part 2...),
    otherwise the original itself. Range requests and authorisation as for /media."""
    from indexer.preview import preview_path
    path = preview_path(settings.media_dir, video.id)
    if not path.is_file():
        return media(video, settings, request)
    _check_range(request.headers.get("range"), path.stat().st_size)
    return FileResponse(path, media_type="video/mp4",
                        headers=media_headers(Path(video.filename).stem, "video/mp4"))


Seconds = Annotated[float, Query(description="seconds from the start of the video")]


@router.get("/v1/videos/{video_id}/clip", response_class=StreamingResponse,
            dependencies=[ClipSlot],
            responses={200: {"content": {"video/mp4": {}}, "description": "the clip"},
                       **errors(401, 404, 422, 503)})
def clip(video: MediaVideoDep, settings: SettingsDep, start: Seconds, end: Seconds
         ) -> StreamingResponse:
    """The moment [start, end) as an MP4 download: its first frame is the one shown at
    `start`, its last the one shown just before `end`, the sound cut to the same times.
    Stream-copied when `start` falls on a keyframe (of H.264, HEVC, AV1 or VP9 without
    frame reordering); H.264 without reordering re-encodes only the head up to the next
    keyframe (a smart cut); anything else is re-encoded as H.264/AAC. At most
    `clip.max_length_s` (600 s) long. Headers: `X-Clip-Start` (the first frame's time,
    seconds) and `X-Clip-Mode` (`copy`, `smart` or `encode`). A key or the video's media
    token authorises it."""
    from indexer import clip as clips
    path = _media_file(video)
    (settings.home / "tmp").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="clip-", dir=settings.home / "tmp"))
    try:
        out = clips.cut(path, work / "clip.mp4", start, end, settings, video.duration_ms)
        # Open, then remove: the open file is all that is left, and it goes away when the
        # response ends, finished or not; a big clip is never held in memory.
        f = open(work / "clip.mp4", "rb")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = os.fstat(f.fileno()).st_size
    name = f"{Path(video.filename).stem}_{out.start_s:.3f}-{end:.3f}s"
    headers = {**media_headers(name, "video/mp4", download=True),
               "Content-Length": str(size), "X-Clip-Start": f"{out.start_s:.3f}",
               "X-Clip-Mode": out.mode}
    return StreamingResponse(_chunks(f), media_type="video/mp4", headers=headers)


def _chunks(f, size: int = 1 << 20) -> Iterator[bytes]:
    with f:
        while block := f.read(size):
            yield block


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

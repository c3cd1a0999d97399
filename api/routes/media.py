"""/v1/videos/{id}/media: the uploaded file, seekable, served as what probe found it to be."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import MediaVideoDep, SessionDep
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
                       416: {"description": "range not satisfiable"},
                       **errors(401, 404, 422)})
def media(video: MediaVideoDep, session: SessionDep) -> FileResponse:
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
    mime = media_type(_container(session, video, path), video.video_codec)
    return FileResponse(path, media_type=mime, headers=media_headers(video.filename, mime))

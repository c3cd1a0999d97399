"""/v1/videos/{id}/media: the uploaded file, seekable."""

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from api.deps import MediaVideoDep
from api.schemas import errors
from core.errors import NotFound

router = APIRouter(tags=["videos"])


@router.get("/v1/videos/{video_id}/media", response_class=FileResponse,
            responses={200: {"content": {"video/*": {}}, "description": "the file"},
                       206: {"content": {"video/*": {}}, "description": "a byte range"},
                       416: {"description": "range not satisfiable"},
                       **errors(401, 404, 422)})
def media(video: MediaVideoDep) -> FileResponse:
    """The uploaded file, with range requests so a player can seek. Authorise with a
    key, or with the `token` of the video's media_url (for an HTML5 <video>)."""
    path = Path(video.path)
    if not path.is_file():
        raise NotFound(f"the media file of video {video.id} is gone")
    mime = mimetypes.guess_type(video.filename)[0] or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=mime or "application/octet-stream",
                        content_disposition_type="inline", filename=video.filename)

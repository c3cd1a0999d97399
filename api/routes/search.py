"""/v1/search: moments across the tenant's videos, by words (GET), like a moment (GET with
`like`) or by an uploaded image (POST, multipart)."""

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from api.deps import LikeDep, SessionDep, SettingsDep, TenantDep, VideoFilterDep
from api.limits import SearchSlot
from api.schemas import Kinds, SearchOut, Seconds, errors
from core.errors import BadQuery
from core.times import check_range, to_ms
from store import queries

router = APIRouter(tags=["search"])
MAX_IMAGE_BYTES = 20 << 20


# SearchSlot first: a search waits for its slot before it takes a thread or a connection.
@router.get("/v1/search", response_model=SearchOut, responses=errors(401, 404, 422, 503),
            dependencies=[SearchSlot])
def search(tenant: TenantDep, session: SessionDep, settings: SettingsDep,
           q: Annotated[str | None, Query(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                          description="what to find, in plain words")] = None,
           like: LikeDep = None,
           video: VideoFilterDep = None, start: Seconds = None, end: Seconds = None,
           kind: Kinds = None, k: Annotated[int, Query(ge=1, le=100)] = 10,
           ground: Annotated[bool, Query(description="Qwen3-VL places the exact start and "
                                                     "end of the top moments")] = False) -> dict:
    """Moments that match the query (or look like the moment `like` names) across the
    tenant's videos, or inside the given videos and time range."""
    if q is None and like is None:
        raise BadQuery("give q (words) or like (VIDEO_ID@SECONDS)")
    return _moments(session, settings, tenant, q or "", video, start, end, kind, k,
                    ground=ground, like=like)


@router.post("/v1/search", response_model=SearchOut, responses=errors(400, 401, 404, 422, 503),
             dependencies=[SearchSlot])
def search_by_image(tenant: TenantDep, session: SessionDep, settings: SettingsDep,
                    image: Annotated[UploadFile, File(description="a picture to look for")],
                    video: VideoFilterDep = None, start: Seconds = None,
                    end: Seconds = None, kind: Kinds = None,
                    k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    """Moments that look like the uploaded image (JPEG, PNG, WebP)."""
    from search import visual
    data = image.file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise BadQuery(f"the image is over {MAX_IMAGE_BYTES >> 20} MiB")
    return _moments(session, settings, tenant, "", video, start, end, kind, k,
                    image=visual.read_image(data))


def _moments(session, settings, tenant, q, video, start, end, kind, k, ground=False,
             **example) -> dict:
    from search import query as search_query
    check_range(to_ms(start), to_ms(end))
    found = search_query.search(
        settings, q, video_ids=video, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind,
        k=k, tenant=tenant, **example)
    if ground:
        from indexer.ground import ground as refine
        found = refine(settings, found, q)
    moments = [m.to_json() for m in found]
    ids = {m["video_id"] for m in moments}
    names = queries.filenames(session, video_ids=ids) if ids else {}
    return {"query": q, "moments": [{**m, "filename": names.get(m["video_id"], "")}
                                    for m in moments]}

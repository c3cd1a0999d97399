"""/v1/search: moments across the tenant's videos, by words (GET), like a moment (GET with
`like`) or by an uploaded image (POST, multipart)."""

import hashlib
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile

from api.deps import LikeDep, SessionDep, SettingsDep, TenantDep, VideoFilterDep
from api.limits import SearchSlot
from api.pages import DEFAULT_LIMIT, Limit, PageToken, page_of, read_token, scope_of
from api.schemas import Kinds, SearchOut, Seconds, errors
from core.errors import BadQuery
from core.times import check_range, to_ms
from core.types import MAX_RESULTS
from store import queries

router = APIRouter(tags=["search"])
K = Annotated[int, Query(ge=1, le=MAX_RESULTS, description="how many moments the query's "
                                                         "ranked list holds, over all pages")]
MAX_IMAGE_BYTES = 20 << 20


# SearchSlot first: a search waits for its slot before it takes a thread or a connection.
@router.get("/v1/search", response_model=SearchOut, responses=errors(400, 401, 404, 422, 503),
            dependencies=[SearchSlot])
def search(request: Request, tenant: TenantDep, session: SessionDep, settings: SettingsDep,
           q: Annotated[str | None, Query(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                          description="what to find, in plain words")] = None,
           like: LikeDep = None,
           video: VideoFilterDep = None, start: Seconds = None, end: Seconds = None,
           kind: Kinds = None, k: K = 10, limit: Limit = DEFAULT_LIMIT,
           page_token: PageToken = None,
           ground: Annotated[bool, Query(description="Qwen3-VL places the exact start and "
                                                     "end of the top moments")] = False) -> dict:
    """Moments that match the query (or look like the moment `like` names) across the
    tenant's videos, or inside the given videos and time range: the `k` best, best first,
    `limit` at a time."""
    if q is None and like is None:
        raise BadQuery("give q (words) or like (VIDEO_ID@SECONDS)")
    ask = Ask(q or "", video, start, end, kind, k, limit, page_token, ground)
    return _moments(request, session, settings, tenant, ask, [like], like=like)


@router.post("/v1/search", response_model=SearchOut, responses=errors(400, 401, 404, 422, 503),
             dependencies=[SearchSlot])
def search_by_image(request: Request, tenant: TenantDep, session: SessionDep,
                    settings: SettingsDep,
                    image: Annotated[UploadFile, File(description="a picture to look for")],
                    video: VideoFilterDep = None, start: Seconds = None,
                    end: Seconds = None, kind: Kinds = None, k: K = 10,
                    limit: Limit = DEFAULT_LIMIT, page_token: PageToken = None) -> dict:
    """Moments that look like the uploaded image (JPEG, PNG, WebP): the `k` best, `limit`
    at a time (send the same image with each page's token)."""
    from search import visual
    data = image.file.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise BadQuery(f"the image is over {MAX_IMAGE_BYTES >> 20} MiB")
    ask = Ask("", video, start, end, kind, k, limit, page_token, False)
    return _moments(request, session, settings, tenant, ask,
                    [hashlib.sha256(data).hexdigest()], image=visual.read_image(data))


@dataclass
class Ask:
    """What a search asked for, besides its example (an image or a `like` moment)."""
    q: str
    video: list[str] | None
    start: float | None
    end: float | None
    kind: list[str] | None
    k: int
    limit: int
    page_token: str | None
    ground: bool


def _moments(request, session, settings, tenant, ask: Ask, example_id: list, **example
             ) -> dict:
    """One page of the k best moments. The list is recomputed for every page from the same
    parameters (the token is bound to them), so the pages of one query do not overlap."""
    from search import query as search_query
    check_range(to_ms(ask.start), to_ms(ask.end))
    scope = scope_of(tenant, ask.q, ask.video, ask.start, ask.end, ask.kind, ask.k,
                     ask.ground, example_id)
    position = read_token(request, "search", scope, ask.page_token)
    offset = position[0] if position else 0
    found = search_query.search(
        settings, ask.q, video_ids=ask.video, start_ms=to_ms(ask.start), end_ms=to_ms(ask.end),
        kinds=ask.kind, k=ask.k, tenant=tenant, **example)
    page, token = page_of(request, "search", scope, found[offset:offset + ask.limit + 1],
                          ask.limit, lambda _: [offset + ask.limit])
    if ask.ground and offset == 0:     # the top moments are on the first page
        from indexer.ground import ground as refine
        page = refine(settings, page, ask.q)
    moments = [m.to_json() for m in page]
    ids = {m["video_id"] for m in moments}
    names = queries.filenames(session, video_ids=ids) if ids else {}
    return {"query": ask.q, "moments": [{**m, "filename": names.get(m["video_id"], "")}
                                        for m in moments], "next_page_token": token}

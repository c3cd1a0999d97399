"""/v1/search: moments across the tenant's videos."""

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import StringConstraints

from api.deps import VIDEO_ID, SessionDep, SettingsDep, TenantDep
from api.schemas import Kinds, SearchOut, Seconds, errors
from core.times import check_range, to_ms
from store import queries

router = APIRouter(tags=["search"])
VideoIds = Annotated[list[Annotated[str, StringConstraints(pattern=VIDEO_ID)]] | None,
                     Query(description="video ids")]


@router.get("/v1/search", response_model=SearchOut, responses=errors(401, 422))
def search(tenant: TenantDep, session: SessionDep, settings: SettingsDep,
           q: Annotated[str, Query(min_length=1, max_length=1000, pattern=r"^[^\x00]*$",
                                   description="what to find, in plain words")],
           video: VideoIds = None, start: Seconds = None, end: Seconds = None,
           kind: Kinds = None, k: Annotated[int, Query(ge=1, le=100)] = 10) -> dict:
    """Moments that match the query across the tenant's videos, or inside the given
    videos and time range."""
    from search import query as search_query
    check_range(to_ms(start), to_ms(end))
    moments = [m.to_json() for m in search_query.search(
        settings, q, video_ids=video, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind,
        k=k, tenant=tenant)]
    ids = {m["video_id"] for m in moments}
    names = queries.filenames(session, video_ids=ids) if ids else {}
    return {"query": q, "moments": [{**m, "filename": names.get(m["video_id"], "")}
                                    for m in moments]}

"""Search from the command line: by words, by an image, like a moment; and rebuilding the
vector index it reads."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (JsonOpt, KindOpt, TenantOpt, check_kinds, check_window, die, emit,
                            fetch, local_only, tenant_of, app)
from api.cli.output import moment_lines
from core.config import get_settings
from core.errors import BadInput, ModelUnavailable, NotFound
from core.times import to_ms
from core.types import MAX_RESULTS


@app.command("reindex-vectors")
def reindex_vectors() -> None:
    """Rebuild the FAISS indexes (every vector space) from the database."""
    local_only("reindex-vectors")
    from indexer import index_sync
    count = index_sync.rebuild(get_settings())
    typer.echo(f"rebuilt the vector index: {count} segments")


@app.command()
def search(query: Annotated[str, typer.Argument(help="what to find, in plain words")] = "",
           image: Annotated[Path | None, typer.Option(help="find moments that look like "
                                                      "this picture")] = None,
           like: Annotated[str | None, typer.Option(help="VIDEO_ID@SECONDS: moments that "
                                                    "look like that one")] = None,
           video: Annotated[list[str] | None, typer.Option(
               "--video", help="video id (or a unique prefix)")] = None,
           start: Annotated[float | None, typer.Option(help="seconds")] = None,
           end: Annotated[float | None, typer.Option(help="seconds")] = None,
           kind: KindOpt = None,
           k: Annotated[int, typer.Option(
               "-k", min=1, max=MAX_RESULTS, help="number of moments")] = 10,
           ground: Annotated[bool, typer.Option(help="ask Qwen3-VL for the exact start and "
                                                "end of the top moments")] = False,
           tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Find moments in natural language, by an image, or like another moment."""
    check_window(start, end)
    check_kinds(kind)
    if ground and (image is not None or like):
        die("--ground refines a search by words: it cannot be used with --image or --like", 2)

    def local() -> list[dict]:
        from search import query as q
        from search import visual
        who = tenant_of(tenant)
        video_ids, example = _resolve(video, like, who)
        if image is not None:
            example["image"] = visual.read_image(_read(image))
        moments = q.search(get_settings(), query, video_ids=video_ids, start_ms=to_ms(start),
                           end_ms=to_ms(end), kinds=kind, k=k, tenant=who, **example)
        if ground:
            from indexer.ground import ground as refine
            moments = refine(get_settings(), moments, query)
        return [m.to_json() for m in moments]
    try:
        rows = fetch(local, lambda c: list(c.iter_search(
            query or None, like=like, image=_read(image) if image else None, videos=video,
            start=start, end=end, kinds=kind, k=k, ground=ground, page_size=MAX_RESULTS)))
    except BadInput as e:
        die(str(e), 2)
    except (NotFound, ModelUnavailable) as e:
        die(str(e))
    emit(rows, as_json, moment_lines(rows))


def _resolve(video: list[str] | None, like: str | None, tenant: str) -> tuple[list | None,
                                                                           dict]:
    """--video ids and the --like video as full ids of the tenant's videos (prefixes
    resolved; NotFound or AmbiguousId otherwise)."""
    from search import visual
    from store import queries
    from store.db import session_scope
    with session_scope(get_settings()) as s:
        ids = [queries.resolve_video(s, ref, tenant=tenant).id for ref in video] \
            if video else None
        if not like:
            return ids, {}
        ref, t_ms = visual.parse_like(like)
        return ids, {"like": (queries.resolve_video(s, ref, tenant=tenant).id, t_ms)}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}", 2)

"""Reading and managing a tenant's library: status, list, segments, captions, summary,
delete. Every id may be a unique prefix (store.queries.resolve_video)."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (JsonOpt, KindOpt, TenantOpt, check_kinds, check_window, die, emit,
                            fetch, load_video, local_only, target, tenant_of,
                            user_errors, app)
from api.cli.output import span
from core.config import get_settings
from core.times import to_ms
from core.types import MAX_RESULTS


@app.command()
def status(video_id: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Status and progress of one video (its id or a unique prefix of it)."""
    with user_errors():
        v = fetch(lambda: load_video(video_id, tenant_of(tenant)),
                  lambda c: c.get_video(video_id))
    eta = f"  eta {v['eta_s']:.0f} s" if v["eta_s"] is not None else ""
    human = (f"{v['id']}  {v['status']}  {v['progress']}% ({v['progress_s']:.0f} of "
             f"{v['duration'] or 0:.0f} s{', ' + v['stage'] if v['stage'] else ''}){eta}  "
             f"{v['filename']}"
             + (f"\n  error: {v['error']}" if v["error"] else "")
             + "".join(f"\n  note: {n}" for n in v["notes"]))
    emit(v, as_json, human)


@app.command("list")
def list_(tenant: TenantOpt = None,
          every: Annotated[bool, typer.Option("--all", help="every tenant's videos (on this "
                                                             "machine)")] = False,
          active: Annotated[bool, typer.Option("--active", help="only videos not done yet: "
                                               "queued, indexing or interrupted")] = False,
          as_json: JsonOpt = False) -> None:
    """The tenant's videos (--all: every tenant's), oldest first, with their tenant."""
    if every:
        local_only("list --all")

    def local() -> list[dict]:
        from store import queries
        from store.db import session_scope
        from store.serialize import video_json
        with session_scope(get_settings()) as s:
            return [video_json(v) for v in queries.list_videos(
                s, tenant=None if every else tenant_of(tenant), active=active)]
    videos = fetch(local, lambda c: list(c.iter_videos(page_size=MAX_RESULTS, active=active)))
    human = "\n".join(f"{v['id']}  {v['tenant']:<12} {v['status']:<11} "
                      f"{v['duration'] or 0:>9.3f} s  {v['filename']}" for v in videos) \
        or (f"no {'active ' if active else ''}videos" if every or target["server"] else
            f"no {'active ' if active else ''}videos in tenant {tenant_of(tenant)}")
    emit(videos, as_json, human)


@app.command()
def segments(video_id: str,
             start: Annotated[float | None, typer.Option(help="seconds")] = None,
             end: Annotated[float | None, typer.Option(help="seconds")] = None,
             kind: KindOpt = None, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Segments of a video that overlap [start, end)."""
    check_window(start, end)
    check_kinds(kind)

    def local() -> list[dict]:
        from store import queries
        from store.db import session_scope
        from store.serialize import segment_json
        with session_scope(get_settings()) as s:
            video = queries.resolve_video(s, video_id, tenant=tenant_of(tenant))
            return [segment_json(r) for r in queries.get_segments(
                s, video_id=video.id, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind)]
    with user_errors():
        rows = fetch(local, lambda c: list(c.iter_segments(
            video_id, start=start, end=end, kinds=kind, page_size=MAX_RESULTS)))
    human = "\n".join(f"{r['start']:>10.3f} {r['end']:>10.3f}  {r['kind']:<11} {r['text']}"
                      for r in rows) or "no segments"
    emit(rows, as_json, human)


@app.command()
def export(video_id: str,
           fmt: Annotated[str, typer.Option("--format", help="vtt, srt or json")] = "vtt",
           output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
           kind: KindOpt = None, tenant: TenantOpt = None) -> None:
    """Captions as WebVTT, SRT or JSON."""
    if fmt not in ("vtt", "srt", "json"):
        die(f"unknown format {fmt!r}: use vtt, srt or json", 2)
    check_kinds(kind)

    def local() -> str:
        from api.captions import render
        from store import queries
        from store.db import session_scope
        with session_scope(get_settings()) as s:
            video = queries.resolve_video(s, video_id, tenant=tenant_of(tenant))
            return render(fmt, video, queries.get_segments(s, video_id=video.id, kinds=kind))
    with user_errors():
        text = fetch(local, lambda c: c.captions(video_id, fmt, kinds=kind))
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text)


@app.command()
def delete(video_id: str, tenant: TenantOpt = None) -> None:
    """Delete a video: its rows, its vectors, and its file if it was uploaded."""
    def local() -> str:
        from indexer import pipeline
        who = tenant_of(tenant)
        full = load_video(video_id, who)["id"]
        pipeline.delete_video(get_settings(), full, tenant=who)
        return full

    def over_http(client) -> str:
        full = client.get_video(video_id)["id"]
        client.delete_video(full)
        return full
    with user_errors():
        full = fetch(local, over_http)
    typer.echo(f"deleted {full}")


@app.command()
def summary(video_id: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """A video's summary and chapters."""
    def local() -> dict:
        from search import chapters
        who = tenant_of(tenant)
        return chapters.get_summary(get_settings(), load_video(video_id, who)["id"],
                                    tenant=who)
    with user_errors():
        data = fetch(local, lambda c: c.summary(video_id))
    lines = [data.get("summary") or ""]
    lines += [f"{span(c)}  {c['title']}"
              for c in data.get("chapters", [])]
    emit(data, as_json, "\n".join(lines).strip())

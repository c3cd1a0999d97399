"""Reading and managing a tenant's library: status, list, segments, captions, summary,
delete. Every id may be a unique prefix (store.queries.resolve_video)."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (JsonOpt, KindOpt, TenantOpt, check_kinds, check_window, die, emit,
                            load_video, span, tenant_of, user_errors, app)
from core.config import get_settings
from core.times import to_ms


@app.command()
def status(video_id: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Status and progress of one video (its id or a unique prefix of it)."""
    with user_errors():
        v = load_video(video_id, tenant_of(tenant))
    eta = f"  eta {v['eta_s']:.0f} s" if v["eta_s"] is not None else ""
    human = (f"{v['id']}  {v['status']}  {v['progress']}% ({v['progress_s']:.0f} of "
             f"{v['duration'] or 0:.0f} s{', ' + v['stage'] if v['stage'] else ''}){eta}  "
             f"{v['filename']}"
             + (f"\n  error: {v['error']}" if v["error"] else "")
             + "".join(f"\n  note: {n}" for n in v["notes"]))
    emit(v, as_json, human)


@app.command("list")
def list_(tenant: TenantOpt = None,
          every: Annotated[bool, typer.Option("--all", help="every tenant's videos")] = False,
          as_json: JsonOpt = False) -> None:
    """The tenant's videos (--all: every tenant's), oldest first, with their tenant."""
    from store import queries
    from store.db import session_scope
    from store.serialize import video_json
    who = None if every else tenant_of(tenant)
    with session_scope(get_settings()) as s:
        videos = [video_json(v) for v in queries.list_videos(s, tenant=who)]
    human = "\n".join(f"{v['id']}  {v['tenant']:<12} {v['status']:<11} "
                      f"{v['duration'] or 0:>9.3f} s  {v['filename']}" for v in videos) \
        or f"no videos{'' if every else f' in tenant {who}'}"
    emit(videos, as_json, human)


@app.command()
def segments(video_id: str,
             start: Annotated[float | None, typer.Option(help="seconds")] = None,
             end: Annotated[float | None, typer.Option(help="seconds")] = None,
             kind: KindOpt = None, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Segments of a video that overlap [start, end)."""
    from store.serialize import segment_json
    from store import queries
    from store.db import session_scope
    check_window(start, end)
    check_kinds(kind)
    with user_errors(), session_scope(get_settings()) as s:
        video = queries.resolve_video(s, video_id, tenant=tenant_of(tenant))
        rows = [segment_json(r) for r in queries.get_segments(
            s, video_id=video.id, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind)]
    human = "\n".join(f"{r['start']:>10.3f} {r['end']:>10.3f}  {r['kind']:<11} {r['text']}"
                      for r in rows) or "no segments"
    emit(rows, as_json, human)


@app.command()
def export(video_id: str,
           fmt: Annotated[str, typer.Option("--format", help="vtt, srt or json")] = "vtt",
           output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
           kind: KindOpt = None, tenant: TenantOpt = None) -> None:
    """Captions as WebVTT, SRT or JSON."""
    from api.captions import render
    from store import queries
    from store.db import session_scope
    if fmt not in ("vtt", "srt", "json"):
        die(f"unknown format {fmt!r}: use vtt, srt or json", 2)
    check_kinds(kind)
    with user_errors(), session_scope(get_settings()) as s:
        video = queries.resolve_video(s, video_id, tenant=tenant_of(tenant))
        text = render(fmt, video, queries.get_segments(s, video_id=video.id, kinds=kind))
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text)


@app.command()
def delete(video_id: str, tenant: TenantOpt = None) -> None:
    """Delete a video: its rows, its vectors, and its file if it was uploaded."""
    from indexer import pipeline
    who = tenant_of(tenant)
    with user_errors():
        full = load_video(video_id, who)["id"]
        pipeline.delete_video(get_settings(), full, tenant=who)
    typer.echo(f"deleted {full}")


@app.command()
def summary(video_id: str, tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """A video's summary and chapters."""
    from search import chapters
    who = tenant_of(tenant)
    with user_errors():
        data = chapters.get_summary(get_settings(), load_video(video_id, who)["id"],
                                    tenant=who)
    lines = [data.get("summary") or ""]
    lines += [f"{span(c)}  {c['title']}"
              for c in data.get("chapters", [])]
    emit(data, as_json, "\n".join(lines).strip())

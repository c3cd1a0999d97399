"""Reading and managing the library: status, list, segments, captions, summary, delete,
API keys."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (JsonOpt, KindOpt, check_kinds, check_window, die, emit,
                            load_video, span, app)
from core.config import get_settings
from core.errors import BadInput, NotFound
from core.times import to_ms


@app.command()
def status(video_id: str, as_json: JsonOpt = False) -> None:
    """Status and progress of one video."""
    try:
        v = load_video(video_id)
    except NotFound as e:
        die(str(e))
    human = (f"{v['id']}  {v['status']}  {v['progress']}%  {v['filename']}"
             + (f"\n  error: {v['error']}" if v["error"] else "")
             + "".join(f"\n  note: {n}" for n in v["notes"]))
    emit(v, as_json, human)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every video, oldest first."""
    from store import queries
    from store.db import session_scope
    from store.serialize import video_json
    with session_scope(get_settings()) as s:
        videos = [video_json(v) for v in queries.list_videos(s)]
    human = "\n".join(f"{v['id']}  {v['status']:<10} {v['duration'] or 0:>9.3f} s  "
                      f"{v['filename']}" for v in videos) or "no videos"
    emit(videos, as_json, human)


@app.command()
def segments(video_id: str,
             start: Annotated[float | None, typer.Option(help="seconds")] = None,
             end: Annotated[float | None, typer.Option(help="seconds")] = None,
             kind: KindOpt = None, as_json: JsonOpt = False) -> None:
    """Segments of a video that overlap [start, end)."""
    from store.serialize import segment_json
    from store import queries
    from store.db import session_scope
    check_window(start, end)
    check_kinds(kind)
    try:
        with session_scope(get_settings()) as s:
            queries.get_video(s, video_id)
            rows = [segment_json(r) for r in queries.get_segments(
                s, video_id=video_id, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind)]
    except NotFound as e:
        die(str(e))
    human = "\n".join(f"{r['start']:>10.3f} {r['end']:>10.3f}  {r['kind']:<11} {r['text']}"
                      for r in rows) or "no segments"
    emit(rows, as_json, human)


@app.command()
def export(video_id: str,
           fmt: Annotated[str, typer.Option("--format", help="vtt, srt or json")] = "vtt",
           output: Annotated[Path | None, typer.Option("-o", "--output")] = None,
           kind: KindOpt = None) -> None:
    """Captions as WebVTT, SRT or JSON."""
    from api.captions import render
    from store import queries
    from store.db import session_scope
    if fmt not in ("vtt", "srt", "json"):
        die(f"unknown format {fmt!r}: use vtt, srt or json", 2)
    check_kinds(kind)
    try:
        with session_scope(get_settings()) as s:
            video = queries.get_video(s, video_id)
            text = render(fmt, video, queries.get_segments(s, video_id=video_id, kinds=kind))
    except NotFound as e:
        die(str(e))
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text)


@app.command()
def delete(video_id: str) -> None:
    """Delete a video: its rows, its vectors, and its file if it was uploaded."""
    from indexer import pipeline
    try:
        pipeline.delete_video(get_settings(), video_id)
    except NotFound as e:
        die(str(e))
    typer.echo(f"deleted {video_id}")


@app.command()
def summary(video_id: str, as_json: JsonOpt = False) -> None:
    """A video's summary and chapters."""
    from search import chapters
    try:
        data = chapters.get_summary(get_settings(), video_id)
    except NotFound as e:
        die(str(e))
    lines = [data.get("summary") or ""]
    lines += [f"{span(c)}  {c['title']}"
              for c in data.get("chapters", [])]
    emit(data, as_json, "\n".join(lines).strip())


@app.command()
def keys(tenant: Annotated[str, typer.Argument(help="tenant name: a-z, 0-9, '_', '-'")],
         as_json: JsonOpt = False) -> None:
    """Create an API key for a tenant (the tenant too, if new). The key is shown only once."""
    from store.db import session_scope
    from store.keys import create_key
    try:
        with session_scope(get_settings()) as s:
            key, row = create_key(s, tenant=tenant)
            secret = row.webhook_secret
    except BadInput as e:
        die(str(e), 2)
    emit({"tenant": tenant, "key": key, "webhook_secret": secret}, as_json,
          f"tenant:         {tenant}\napi key:        {key}\n"
          f"webhook secret: {secret}\n(the key is not stored; keep it now)")


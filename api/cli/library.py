"""Reading and managing the library: status, list, segments, captions, summary, delete,
API keys."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import (JsonOpt, KindOpt, check_kinds, check_window, die, emit, fetch,
                            load_video, local_only, span, app)
from core.config import get_settings
from core.errors import BadInput, NotFound
from core.times import to_ms
from core.types import MAX_RESULTS


@app.command()
def status(video_id: str, as_json: JsonOpt = False) -> None:
    """Status and progress of one video."""
    try:
        v = fetch(lambda: load_video(video_id), lambda c: c.get_video(video_id))
    except NotFound as e:
        die(str(e))
    human = (f"{v['id']}  {v['status']}  {v['progress']}%  {v['filename']}"
             + (f"\n  error: {v['error']}" if v["error"] else "")
             + "".join(f"\n  note: {n}" for n in v["notes"]))
    emit(v, as_json, human)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every video, oldest first."""
    def local() -> list[dict]:
        from store import queries
        from store.db import session_scope
        from store.serialize import video_json
        with session_scope(get_settings()) as s:
            return [video_json(v) for v in queries.list_videos(s)]
    videos = fetch(local, lambda c: list(c.iter_videos(page_size=MAX_RESULTS)))
    human = "\n".join(f"{v['id']}  {v['status']:<10} {v['duration'] or 0:>9.3f} s  "
                      f"{v['filename']}" for v in videos) or "no videos"
    emit(videos, as_json, human)


@app.command()
def segments(video_id: str,
             start: Annotated[float | None, typer.Option(help="seconds")] = None,
             end: Annotated[float | None, typer.Option(help="seconds")] = None,
             kind: KindOpt = None, as_json: JsonOpt = False) -> None:
    """Segments of a video that overlap [start, end)."""
    check_window(start, end)
    check_kinds(kind)

    def local() -> list[dict]:
        from store.serialize import segment_json
        from store import queries
        from store.db import session_scope
        with session_scope(get_settings()) as s:
            queries.get_video(s, video_id)
            return [segment_json(r) for r in queries.get_segments(
                s, video_id=video_id, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind)]
    try:
        rows = fetch(local, lambda c: list(c.iter_segments(
            video_id, start=start, end=end, kinds=kind, page_size=MAX_RESULTS)))
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
    if fmt not in ("vtt", "srt", "json"):
        die(f"unknown format {fmt!r}: use vtt, srt or json", 2)
    check_kinds(kind)

    def local() -> str:
        from api.captions import render
        from store import queries
        from store.db import session_scope
        with session_scope(get_settings()) as s:
            video = queries.get_video(s, video_id)
            return render(fmt, video, queries.get_segments(s, video_id=video_id, kinds=kind))
    try:
        text = fetch(local, lambda c: c.captions(video_id, fmt, kinds=kind))
    except NotFound as e:
        die(str(e))
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        typer.echo(text)


@app.command()
def delete(video_id: str) -> None:
    """Delete a video: its rows, its vectors, and its file if it was uploaded."""
    def local() -> None:
        from indexer import pipeline
        pipeline.delete_video(get_settings(), video_id)
    try:
        fetch(local, lambda c: c.delete_video(video_id))
    except NotFound as e:
        die(str(e))
    typer.echo(f"deleted {video_id}")


@app.command()
def summary(video_id: str, as_json: JsonOpt = False) -> None:
    """A video's summary and chapters."""
    def local() -> dict:
        from search import chapters
        return chapters.get_summary(get_settings(), video_id)
    try:
        data = fetch(local, lambda c: c.summary(video_id))
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
    local_only("keys")
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


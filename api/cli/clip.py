"""Cutting a moment out of a video: `chronoscope clip ID START END -o FILE`."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOpt, TenantOpt, app, die, emit, fetch, tenant_of, user_errors
from core.config import get_settings


HOW = {"copy": "stream copy", "smart": "head re-encoded up to the next keyframe, the rest "
       "copied", "encode": "re-encoded"}


@app.command()
def clip(video_id: str,
         start: Annotated[float, typer.Argument(help="seconds")],
         end: Annotated[float, typer.Argument(help="seconds")],
         output: Annotated[Path, typer.Option("-o", "--output", help="the MP4 to write")],
         tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Cut [START, END) seconds out of a video as an MP4, frame-accurate (stream-copied when
    START falls on a keyframe, otherwise re-encoded)."""
    def local() -> dict:
        from indexer import clip as clips
        from store import queries
        from store.db import session_scope
        settings, who = get_settings(), tenant_of(tenant)
        with session_scope(settings) as s:
            video = queries.resolve_video(s, video_id, tenant=who)
            path, duration_ms = Path(video.path), video.duration_ms
        out = clips.cut(path, output, start, end, settings, duration_ms)
        return {"start": out.start_s, "end": out.end_s, "mode": out.mode}

    def over_http(client) -> dict:
        got = client.clip(video_id, start, end, output)
        return {"start": got["start"], "end": end, "mode": got["mode"]}
    if not output.parent.is_dir():
        die(f"no folder {output.parent} to write {output.name} in", 2)
    with user_errors():         # no such video; bad bounds or an ambiguous id prefix
        out = {"output": str(output), **fetch(local, over_http)}
    emit(out, as_json, f"wrote {output}: {out['start']:.3f}-{out['end']:.3f} s "
                       f"({HOW.get(out['mode'], out['mode'])})")

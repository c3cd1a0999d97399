"""Cutting a moment out of a video: `chronoscope clip ID START END -o FILE`."""

from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOpt, TenantOpt, app, die, emit, tenant_of
from core.config import get_settings
from core.errors import BadInput, BadQuery, NotFound


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
    from indexer import clip as clips
    from store import queries
    from store.db import session_scope
    settings, who = get_settings(), tenant_of(tenant)
    try:
        with session_scope(settings) as s:
            video = queries.resolve_video(s, video_id, tenant=who)
            path, duration_ms = Path(video.path), video.duration_ms
        out = clips.cut(path, output, start, end, settings, duration_ms)
    except BadQuery as e:
        die(str(e), 2)
    except (NotFound, BadInput) as e:
        die(str(e))
    emit({"output": str(output), "start": out.start_s, "end": out.end_s, "mode": out.mode},
         as_json, f"wrote {output}: {out.start_s:.3f}-{out.end_s:.3f} s ({HOW[out.mode]})")

"""Indexing from the command line: index files, resume interrupted runs."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOpt, die, load_video, app
from core.config import get_settings
from core.errors import ChronoscopeError, NotFound


@app.command()
def index(paths: Annotated[list[Path], typer.Argument(help="video files")],
          as_json: JsonOpt = False) -> None:
    """Index video files and wait until they are done (a file whose run was interrupted
    resumes where it stopped)."""
    from indexer import pipeline
    settings = get_settings()
    results, failed = _run_all([(path.name, lambda p=path: pipeline.add_video(settings, p))
                                for path in paths], as_json)
    if as_json:
        typer.echo(json.dumps(results if len(results) != 1 else results[0], indent=2))
    if failed:
        raise typer.Exit(1)


@app.command()
def resume(video_ids: Annotated[list[str] | None, typer.Argument(
               help="video ids; none = every interrupted video")] = None,
           as_json: JsonOpt = False) -> None:
    """Finish videos whose indexing run died, from where it stopped."""
    from store import leases, queries
    from store.db import session_scope
    from store.schema import READY
    settings = get_settings()
    try:
        with session_scope(settings) as s:
            videos = [queries.get_video(s, i) for i in video_ids] if video_ids else \
                leases.interrupted_videos(s, lease_s=settings.worker.lease_s)
            ready = [v.id for v in videos if v.status == READY]    # nothing left to do
    except NotFound as e:
        die(str(e))
    results, failed = _run_all([(v.filename, lambda v=v: v.id) for v in videos
                                if v.id not in ready], as_json)
    results += [load_video(i) for i in ready]
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    else:
        for r in results[len(results) - len(ready):]:
            typer.echo(f"{r['id']}  already ready  {r['filename']}")
        if not videos:
            typer.echo("nothing to resume")
    if failed:
        raise typer.Exit(1)


def _run_all(runs: list, as_json: bool) -> tuple[list[dict], int]:
    """Run each (name, get the video id) to the end in this process, claimed so that a death
    leaves it resumable; a failure of one does not stop the others. Human lines go out as
    each ends; the results and the failure count are returned."""
    from indexer import pipeline
    settings = get_settings()
    results, failed = [], 0
    for name, get_id in runs:
        video_id = None
        try:
            video_id = get_id()
            pipeline.claim(settings, video_id)
            bar = _progress_bar(name, quiet=as_json)
            pipeline.index_video(settings, video_id, on_progress=bar)
            if bar:
                bar.close()
            results.append(load_video(video_id))
        except ChronoscopeError as e:
            failed += 1
            entry = load_video(video_id) if video_id else {
                "id": None, "filename": name, "status": "failed", "duration": None,
                "error": str(e)}
            entry["error"] = entry["error"] or str(e)   # not run: owned by a live process
            results.append(entry)
            if not as_json:
                typer.echo(f"error: {name}: {entry['error']}", err=True)
        except Exception as e:   # an internal error on one file must not stop the others
            failed += 1
            results.append(load_video(video_id) if video_id else {
                "id": None, "filename": name, "status": "failed", "duration": None,
                "error": f"internal error: {e}"})
            if not as_json:
                typer.echo(f"error: {name}: internal error: {e}", err=True)
    if not as_json:
        for r in results:
            if r["status"] == "ready":
                typer.echo(f"{r['id']}  ready   {r['duration']:>9.3f} s  {r['filename']}")
                for note in r.get("notes") or []:
                    typer.echo(f"    note: {note}")
    return results, failed


class _Bar:
    """Seconds of video indexed, with the stage; tqdm's rate gives the ETA from the first
    unit of work on."""
    def __init__(self, name: str):
        from tqdm import tqdm
        self._bar = tqdm(total=None, desc=name, unit="s", file=sys.stderr, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                    "[{elapsed}<{remaining}] {postfix}")

    def __call__(self, done_ms: int, total_ms: int, stage: str | None) -> None:
        self._bar.total = total_ms / 1000
        self._bar.n = done_ms / 1000
        self._bar.set_postfix_str(stage or "", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(name: str, *, quiet: bool):
    return None if quiet or not sys.stderr.isatty() else _Bar(name)


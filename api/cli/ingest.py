"""Indexing from the command line: index files, resume interrupted runs."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOpt, die, load_video, local_only, remote, app
from core.config import get_settings
from core.errors import ChronoscopeError, NotFound


@app.command()
def index(paths: Annotated[list[Path], typer.Argument(help="video files")],
          as_json: JsonOpt = False) -> None:
    """Index video files and wait until they are done (a file whose run was interrupted
    resumes where it stopped)."""
    client = remote()
    if client is not None:
        with client:
            results, failed = _upload_all(client, paths, as_json)
    else:
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
    local_only("resume")
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
        _report(results)
    return results, failed


def _report(results: list[dict]) -> None:
    for r in results:
        if r["status"] == "ready":
            typer.echo(f"{r['id']}  ready   {r['duration']:>9.3f} s  {r['filename']}")
            for note in r.get("notes") or []:
                typer.echo(f"    note: {note}")


def _upload_all(client, paths: list[Path], as_json: bool) -> tuple[list[dict], int]:
    """--server: upload each file (a progress bar on a terminal) and wait until the server
    has indexed it; a failure of one does not stop the others."""
    import httpx

    from client import ApiError, IndexingFailed
    results, failed = [], 0
    for path in paths:
        bar = _progress_bar(path.name, quiet=as_json, unit="B")
        try:
            video = client.upload(path, on_progress=bar)
            if bar:
                bar.close()
            results.append(client.wait_until_ready(video["id"], timeout=7 * 24 * 3600))
        except (ApiError, IndexingFailed, OSError, httpx.HTTPError) as e:
            failed += 1
            entry = e.video if isinstance(e, IndexingFailed) else {
                "id": None, "filename": path.name, "status": "failed", "duration": None,
                "error": e.message if isinstance(e, ApiError) else str(e)}
            results.append(entry)
            if not as_json:
                typer.echo(f"error: {path.name}: {entry['error']}", err=True)
    if not as_json:
        _report(results)
    return results, failed


class _Bar:
    """tqdm as a progress callback (done, total): chunks indexed, or bytes uploaded."""

    def __init__(self, name: str, unit: str = "chunk"):
        from tqdm import tqdm
        self._bar = tqdm(total=None, desc=name, unit=unit, file=sys.stderr, leave=False,
                         unit_scale=unit == "B")

    def __call__(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(name: str, *, quiet: bool, unit: str = "chunk"):
    return None if quiet or not sys.stderr.isatty() else _Bar(name, unit)


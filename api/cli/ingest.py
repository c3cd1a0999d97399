"""Indexing from the command line: index files, folders (recursively) and globs; resume
interrupted runs. One result line per file as it ends; a progress bar in seconds of video."""

import glob
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from api.cli.common import JsonOpt, TenantOpt, load_video, local_only, remote, tenant_of, user_errors, app
from core.config import get_settings
from core.errors import ChronoscopeError

# What a folder's walk picks up: containers PyAV reads that hold video. A file named
# explicitly is tried whatever its name.
VIDEO_SUFFIXES = frozenset(
    ".mp4 .m4v .mov .mkv .webm .avi .mpg .mpeg .ts .mts .m2ts .wmv .flv .3gp .ogv .mxf "
    ".vob .divx .asf".split())
_GLOB = set("*?[")


@app.command()
def index(paths: Annotated[list[str], typer.Argument(
              help="video files, folders (every video file inside, recursively) or globs "
                   "such as 'talks/**/*.mp4'")],
          tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Index videos and wait until they are done. Content this tenant already indexed is
    skipped; a file whose run was interrupted resumes where it stopped. With --server, each
    file is uploaded and indexed there."""
    files = [f for typed in paths for f in expand(typed)]
    client = remote()
    if client is not None:
        with client:
            results, failed = _each(files, lambda shown, path: _upload_one(
                client, shown, path, as_json), as_json)
    else:
        from indexer import pipeline
        settings, who = get_settings(), tenant_of(tenant)
        results, failed = _each(files, lambda shown, path: _run_one(
            shown, lambda: pipeline.add_video(settings, path, tenant=who), who, as_json), as_json)
    if as_json:
        typer.echo(json.dumps(results if len(results) != 1 else results[0], indent=2))
    if failed:
        raise typer.Exit(1)


def expand(typed: str) -> list[tuple[str, Path]]:
    """(the path as the user would type it, the path) of each file an argument names: a file
    as given, a folder's video files in name order, a glob's matches (folders among them
    walked too). A name that matches nothing comes back as given, to fail as not found."""
    path = Path(typed)
    if path.is_dir():
        return [(str(f), f) for f in sorted(path.rglob("*"))
                if f.suffix.lower() in VIDEO_SUFFIXES and f.is_file()]
    if not path.exists() and _GLOB & set(typed):
        matches = sorted(glob.glob(typed, recursive=True))
        return [f for m in matches for f in expand(m)] or [(typed, path)]
    return [(typed, path)]


@app.command()
def resume(video_ids: Annotated[list[str] | None, typer.Argument(
               help="video ids or unique prefixes; none = every interrupted video")] = None,
           tenant: TenantOpt = None, as_json: JsonOpt = False) -> None:
    """Finish videos whose indexing run died, from where it stopped."""
    local_only("resume")
    from store import leases, queries
    from store.db import session_scope
    settings, who = get_settings(), tenant_of(tenant)
    with user_errors(), session_scope(settings) as s:
        videos = [queries.resolve_video(s, i, tenant=who) for i in video_ids] if video_ids \
            else [v for v in leases.interrupted_videos(s, lease_s=settings.worker.lease_s)
                  if v.tenant == who]
        todo = [(v.filename, v.id) for v in videos]
    results, failed = _each(todo, lambda shown, video_id: _run_one(
        shown, lambda: video_id, who, as_json), as_json)
    if as_json:
        typer.echo(json.dumps(results, indent=2))
    elif not videos:
        typer.echo("nothing to resume")
    if failed:
        raise typer.Exit(1)


def _each(items: list[tuple[str, object]], one, as_json: bool) -> tuple[list[dict], int]:
    """`one(shown, item)` for each (name shown, item), in turn: a failure of one does not
    stop the others, and a line goes out as each ends. The results and the failure count."""
    results, failed = [], 0
    for shown, item in items:
        entry = one(shown, item)
        results.append(entry)
        failed += entry["status"] != "ready"
        if not as_json:
            _say(shown, entry)
    return results, failed


def _run_one(shown: str, get_id, tenant: str, as_json: bool) -> dict:
    """Index one video to the end in this process, claimed so that a death leaves it
    resumable; one already ready is skipped."""
    from indexer import pipeline
    settings = get_settings()
    video_id = None
    try:
        video_id = get_id()
        before = load_video(video_id, tenant)
        if before["status"] == "ready":
            return {**before, "path": shown, "skipped": "already indexed"}
        pipeline.claim(settings, video_id)
        bar = _progress_bar(shown, quiet=as_json)
        try:
            pipeline.index_video(settings, video_id, on_progress=bar)
        finally:
            if bar:
                bar.close()
        return {**load_video(video_id, tenant), "path": shown}
    except Exception as e:   # one file's failure, even an internal error, stops no other
        reason = str(e) if isinstance(e, ChronoscopeError) else f"internal error: {e}"
        entry = load_video(video_id, tenant) if video_id else {
            "id": None, "filename": Path(shown).name, "status": "failed", "duration": None,
            "error": reason}
        entry["error"] = entry["error"] or reason   # not run: owned by a live process
        return {**entry, "path": shown}


def _say(shown: str, r: dict) -> None:
    """The result line of one file: ready (or skipped) on stdout, an error on stderr, named
    by the path as typed and without the file name the reason repeats."""
    if r.get("skipped"):
        typer.echo(f"{r['id']}  {r['skipped']}  {shown}")
    elif r["status"] == "ready":
        typer.echo(f"{r['id']}  ready  {r['duration']:>9.3f} s  {shown}")
        for note in r.get("notes") or []:
            typer.echo(f"    note: {note}")
    else:
        reason = r["error"].removeprefix(f"{Path(shown).name}: ")
        typer.echo(f"error: {shown}: {reason}", err=True)


class _Bar:
    """Seconds of video indexed, with the stage (or, for an upload, bytes sent); tqdm's rate
    gives the ETA from the first unit of work on."""
    def __init__(self, name: str, unit: str):
        from tqdm import tqdm
        self._scale = 1000 if unit == "s" else 1      # seconds arrive as milliseconds
        shown = "{n:.0f}/{total:.0f} s" if unit == "s" else "{n_fmt}/{total_fmt}"
        self._bar = tqdm(total=None, desc=name, unit=unit, unit_scale=unit == "B",
                         file=sys.stderr, leave=False,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| " + shown +
                                    " [{elapsed}<{remaining}] {postfix}")

    def __call__(self, done: int, total: int, stage: str | None = None) -> None:
        self._bar.total = total / self._scale
        self._bar.n = done / self._scale
        self._bar.set_postfix_str(stage or "", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(name: str, *, quiet: bool, unit: str = "s"):
    return None if quiet or not sys.stderr.isatty() else _Bar(name, unit)


def _upload_one(client, shown: str, path: Path, as_json: bool) -> dict:
    """--server: upload one file (bytes sent on a terminal), then follow the server's
    indexing of it in seconds of video until it is ready or failed."""
    import httpx

    from client import ApiError, IndexingFailed
    sent = bar = None
    try:
        sent = _progress_bar(f"{shown} (upload)", quiet=as_json, unit="B")
        video = client.upload(path, on_progress=sent)
        if sent:
            sent.close()
        if video["status"] == "ready":       # the server has this content already
            return {**video, "path": shown, "skipped": "already indexed"}
        bar = _progress_bar(shown, quiet=as_json)
        follow = bar and (lambda v: bar(round(v["progress_s"] * 1000),
                                        round((v["duration"] or 0) * 1000), v["stage"]))
        return {**client.wait_until_ready(video["id"], timeout=7 * 24 * 3600,
                                          on_progress=follow), "path": shown}
    except (ApiError, IndexingFailed, OSError, httpx.HTTPError) as e:
        entry = e.video if isinstance(e, IndexingFailed) else {
            "id": None, "filename": path.name, "status": "failed", "duration": None,
            "error": e.message if isinstance(e, ApiError) else str(e)}
        return {**entry, "path": shown}
    finally:
        for shown_bar in (sent, bar):      # closing twice is harmless
            if shown_bar:
                shown_bar.close()

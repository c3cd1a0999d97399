"""The `chronoscope` command line. With --json a command prints only JSON on stdout; errors
go to stderr as one line and the exit code is non-zero, never a traceback. Each command
imports what it needs (a search must not pay for torch or for the models of
indexing: tests/test_cli_fast.py)."""

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from core.config import get_settings
from core.errors import BadInput, BadQuery, ChronoscopeError, ModelUnavailable, NotFound
from core.times import check_range, clock, to_ms

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Make hours-long video searchable to the second.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print only JSON")]


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("faster_whisper", "alembic", "sentence_transformers", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _die(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _emit(obj, as_json: bool, human: str) -> None:
    typer.echo(json.dumps(obj, indent=2) if as_json else human)


def _load_video(video_id: str) -> dict:
    from store import queries
    from store.db import session_scope
    from store.serialize import video_json
    with session_scope(get_settings()) as s:
        return video_json(queries.get_video(s, video_id))


@app.callback()
def main() -> None:
    _quiet_libraries()


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
        _die(str(e))
    results, failed = _run_all([(v.filename, lambda v=v: v.id) for v in videos
                                if v.id not in ready], as_json)
    results += [_load_video(i) for i in ready]
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
            results.append(_load_video(video_id))
        except ChronoscopeError as e:
            failed += 1
            entry = _load_video(video_id) if video_id else {
                "id": None, "filename": name, "status": "failed", "duration": None,
                "error": str(e)}
            entry["error"] = entry["error"] or str(e)   # not run: owned by a live process
            results.append(entry)
            if not as_json:
                typer.echo(f"error: {name}: {entry['error']}", err=True)
        except Exception as e:   # an internal error on one file must not stop the others
            failed += 1
            results.append(_load_video(video_id) if video_id else {
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
    def __init__(self, name: str):
        from tqdm import tqdm
        self._bar = tqdm(total=None, desc=name, unit="chunk", file=sys.stderr, leave=False)

    def __call__(self, done: int, total: int) -> None:
        self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def _progress_bar(name: str, *, quiet: bool):
    return None if quiet or not sys.stderr.isatty() else _Bar(name)


@app.command()
def status(video_id: str, as_json: JsonOpt = False) -> None:
    """Status and progress of one video."""
    try:
        v = _load_video(video_id)
    except NotFound as e:
        _die(str(e))
    human = (f"{v['id']}  {v['status']}  {v['progress']}%  {v['filename']}"
             + (f"\n  error: {v['error']}" if v["error"] else "")
             + "".join(f"\n  note: {n}" for n in v["notes"]))
    _emit(v, as_json, human)


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
    _emit(videos, as_json, human)


def _check_range(start: float | None, end: float | None) -> None:
    try:
        check_range(to_ms(start), to_ms(end))
    except BadQuery as e:
        _die(str(e), 2)


KindOpt = Annotated[list[str] | None, typer.Option("--kind", help="speech, screen_text, visual")]


def _check_kinds(kinds: list[str] | None) -> None:
    from core.types import KINDS
    for k in kinds or []:
        if k not in KINDS:
            _die(f"unknown kind {k!r}: use one of {', '.join(KINDS)}", 2)


@app.command()
def segments(video_id: str,
             start: Annotated[float | None, typer.Option(help="seconds")] = None,
             end: Annotated[float | None, typer.Option(help="seconds")] = None,
             kind: KindOpt = None, as_json: JsonOpt = False) -> None:
    """Segments of a video that overlap [start, end)."""
    from store.serialize import segment_json
    from store import queries
    from store.db import session_scope
    _check_range(start, end)
    _check_kinds(kind)
    try:
        with session_scope(get_settings()) as s:
            queries.get_video(s, video_id)
            rows = [segment_json(r) for r in queries.get_segments(
                s, video_id=video_id, start_ms=to_ms(start), end_ms=to_ms(end), kinds=kind)]
    except NotFound as e:
        _die(str(e))
    human = "\n".join(f"{r['start']:>10.3f} {r['end']:>10.3f}  {r['kind']:<11} {r['text']}"
                      for r in rows) or "no segments"
    _emit(rows, as_json, human)


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
        _die(f"unknown format {fmt!r}: use vtt, srt or json", 2)
    _check_kinds(kind)
    try:
        with session_scope(get_settings()) as s:
            video = queries.get_video(s, video_id)
            text = render(fmt, video, queries.get_segments(s, video_id=video_id, kinds=kind))
    except NotFound as e:
        _die(str(e))
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
        _die(str(e))
    typer.echo(f"deleted {video_id}")


@app.command("reindex-vectors")
def reindex_vectors() -> None:
    """Rebuild the FAISS indexes (every vector space) from the database."""
    from indexer import index_sync
    count = index_sync.rebuild(get_settings())
    typer.echo(f"rebuilt the vector index: {count} segments")


@app.command()
def search(query: Annotated[str, typer.Argument(help="what to find, in plain words")] = "",
           image: Annotated[Path | None, typer.Option(help="find moments that look like "
                                                      "this picture")] = None,
           like: Annotated[str | None, typer.Option(help="VIDEO_ID@SECONDS: moments that "
                                                    "look like that one")] = None,
           video: Annotated[list[str] | None, typer.Option("--video", help="video id")] = None,
           start: Annotated[float | None, typer.Option(help="seconds")] = None,
           end: Annotated[float | None, typer.Option(help="seconds")] = None,
           kind: KindOpt = None,
           k: Annotated[int, typer.Option("-k", help="number of moments")] = 10,
           ground: Annotated[bool, typer.Option(help="ask Qwen3-VL for the exact start and "
                                                "end of the top moments")] = False,
           as_json: JsonOpt = False) -> None:
    """Find moments in natural language, by an image, or like another moment."""
    from search import query as q
    from search import visual
    _check_range(start, end)
    _check_kinds(kind)
    try:
        example = {"like": visual.parse_like(like)} if like else {}
        if image is not None:
            example["image"] = visual.read_image(_read(image))
        moments = q.search(get_settings(), query, video_ids=video, start_ms=to_ms(start),
                           end_ms=to_ms(end), kinds=kind, k=k, **example)
        if ground:
            from indexer.ground import ground as refine
            moments = refine(get_settings(), moments, query)
    except BadInput as e:
        _die(str(e), 2)
    except (NotFound, ModelUnavailable) as e:
        _die(str(e))
    rows = [m.to_json() for m in moments]
    human = "\n".join(
        f"{r['score']:.2f}{' (weak)' if r.get('weak') else ''}  {r['video_id'][:8]}  "
        f"{_span(r)}  [{','.join(r['kinds'])}]  {r['text'][:100]}"
        for r in rows) or "no matches"
    _emit(rows, as_json, human)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        _die(f"cannot read {path}: {e.strerror}", 2)


def _span(row: dict) -> str:
    """A moment's or a chapter's [start, end], from its JSON seconds."""
    return f"{clock(to_ms(row['start']), frac_sep='.')}-{clock(to_ms(row['end']), frac_sep='.')}"


@app.command()
def summary(video_id: str, as_json: JsonOpt = False) -> None:
    """A video's summary and chapters."""
    from search import chapters
    try:
        data = chapters.get_summary(get_settings(), video_id)
    except NotFound as e:
        _die(str(e))
    lines = [data.get("summary") or ""]
    lines += [f"{_span(c)}  {c['title']}"
              for c in data.get("chapters", [])]
    _emit(data, as_json, "\n".join(lines).strip())


@app.command()
def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000,
          workers: Annotated[int, typer.Option(help="server processes (needs a broker when "
                                                    "more than 1)")] = 1) -> None:
    """Serve the HTTP API and the web page (migrates the database first)."""
    import uvicorn
    if workers > 1 and not get_settings().broker_url:
        _die("several server processes need a broker (CHRONOSCOPE_BROKER_URL): without one "
             "each process would index the same uploads itself", 2)
    uvicorn.run("api.http:create_app", factory=True, host=host, port=port, workers=workers,
                proxy_headers=True, log_level="info")


@app.command()
def worker(queues: Annotated[str, typer.Option(help="comma-separated: cpu (decode, speech, "
                                                    "OCR), gpu (Qwen3-VL)")] = "cpu,gpu",
           concurrency: Annotated[int, typer.Option(help="worker processes; each loads its "
                                                         "own models")] = 1,
           loglevel: Annotated[str, typer.Option(help="celery log level")] = "info") -> None:
    """Run a Celery worker over the configured broker."""
    from workers.names import CPU, GPU, QUEUES
    names = [q.strip() for q in queues.split(",") if q.strip()]
    if not get_settings().broker_url:
        _die("no broker configured: set CHRONOSCOPE_BROKER_URL (e.g. redis://127.0.0.1:6379/0); "
             "without one, `chronoscope index` runs the same tasks in-process", 2)
    if not names or any(q not in QUEUES for q in names):
        _die(f"unknown queue in {queues!r}: use {CPU}, {GPU} or both", 2)
    logging.getLogger().setLevel(loglevel.upper())
    from workers.celery_app import run_worker   # loads the Celery app: only for a worker
    run_worker(names, concurrency=concurrency, loglevel=loglevel)


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
        _die(str(e), 2)
    _emit({"tenant": tenant, "key": key, "webhook_secret": secret}, as_json,
          f"tenant:         {tenant}\napi key:        {key}\n"
          f"webhook secret: {secret}\n(the key is not stored; keep it now)")


if __name__ == "__main__":
    app()

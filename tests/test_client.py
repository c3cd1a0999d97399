"""The Python SDK (client/) and the CLI's --server against a live `chronoscope serve` with a
real Celery worker over Redis, on Postgres: upload with progress, wait, search, paginate
through more than one page, media and clip download, errors, delete."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from client import ApiError, Client
from core.config import Settings, get_settings
from web.live import make_key, scratch_database, wait_for

ROOT = Path(__file__).resolve().parent.parent
BROKER = "redis://127.0.0.1:6379/8"
CLIP = "his_girl_friday_6s.mp4"
# What this process's libraries set on import, which a worker must not inherit (see
# tests/test_workers.py).
LIBRARY_ENV = {"OMP_THREAD_LIMIT", "KMP_INIT_AT_FORK", "KMP_DUPLICATE_LIB_OK"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "api.cli", *args], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture(scope="module")
def server(pg_template, tmp_path_factory):
    """`chronoscope serve` and `chronoscope worker` as processes; yields (base URL, key)."""
    tmp = tmp_path_factory.mktemp("sdk")
    broker = redis.Redis.from_url(BROKER)
    broker.flushdb()
    with scratch_database(pg_template) as url:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CHRONOSCOPE_") and k not in LIBRARY_ENV}
        env.update(CHRONOSCOPE_HOME=str(tmp / "home"), CHRONOSCOPE_DATABASE_URL=url,
                   CHRONOSCOPE_BROKER_URL=BROKER, CHRONOSCOPE_CHUNK__LENGTH_S="6",
                   CHRONOSCOPE_CHUNK__OVERLAP_S="1", HF_HUB_OFFLINE="1")
        port = _free_port()
        procs = [_start(["serve", "--port", str(port)], env, tmp / "serve.log"),
                 _start(["worker", "--queues", "cpu"], env, tmp / "worker.log")]
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _up(base), timeout=120, what="chronoscope serve")
            key, _ = make_key(Settings(home=tmp / "home", database_url=url), "sdk")
            yield base, key
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
            for log in ("serve.log", "worker.log"):
                sys.stderr.write(f"--- {log} (tail) ---\n"
                                 + (tmp / log).read_text(errors="replace")[-2000:])
    broker.flushdb()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def ready(server, media):
    """The clip uploaded through the SDK (with progress) and indexed by the worker."""
    base, key = server
    seen = []
    with Client(base, key) as cs:
        video = cs.upload(media / CLIP, on_progress=lambda done, total: seen.append(
            (done, total)))
        size = (media / CLIP).stat().st_size
        assert seen and seen[-1] == (size, size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen)
        assert video["status"] in ("queued", "processing", "ready")
        polls = []
        done = cs.wait_until_ready(video["id"], timeout=240, poll_s=0.5,
                                   on_progress=polls.append)
    assert done["status"] == "ready" and polls[-1]["status"] == "ready"
    assert done["chunks_done"] == done["chunks_total"] == 2
    return done


def test_search_pages_through_more_moments_than_one_page(server, ready):
    with Client(*server) as cs:
        said = max(cs.iter_segments(ready["id"], kinds=["speech"], page_size=1),
                   key=lambda s: len(s["text"]))
        one_page = cs.search(said["text"], k=6)
        assert one_page["next_page_token"] is None and len(one_page["moments"]) >= 2
        first = cs.search(said["text"], k=6, limit=1)
        assert len(first["moments"]) == 1 and first["next_page_token"]
        walked = list(cs.iter_search(said["text"], k=6, page_size=1))
        assert walked == one_page["moments"]
        top = walked[0]
        assert top["video_id"] == ready["id"] and said["text"] in [
            s["text"] for s in top["segments"]]
        assert cs.thumbnail(top["thumbnail"])[:2] == b"\xff\xd8"      # a JPEG
        segments = list(cs.iter_segments(ready["id"], page_size=1))
        assert segments == cs.segments(ready["id"])["segments"] and len(segments) > 1


def test_library_reads_and_errors(server, ready, media, tmp_path):
    with Client(*server) as cs:
        other = tmp_path / "other.mp4"
        other.write_bytes((media / CLIP).read_bytes() + b"\0")      # another video
        second = cs.upload(other)["id"]
        first_page = cs.list_videos(limit=1)
        assert [v["id"] for v in first_page["videos"]] == [ready["id"]]
        assert first_page["next_page_token"]
        assert [v["id"] for v in cs.iter_videos(page_size=1)] == [ready["id"], second]
        cs.delete_video(second)
        assert [v["id"] for v in cs.iter_videos()] == [ready["id"]]
        assert cs.list_videos(active=True)["videos"] == []            # it is done
        assert cs.summary(ready["id"])["chapters"]
        assert cs.captions(ready["id"], "vtt").startswith("WEBVTT")
        dest = cs.download_media(ready["id"], tmp_path / "copy.mp4")
        assert dest.read_bytes() == (media / CLIP).read_bytes()
        with pytest.raises(ApiError) as missing:
            cs.get_video("0000000000000000")
        assert missing.value.status == 404 and missing.value.code == "not_found"
        with pytest.raises(ApiError) as bad:
            cs.list_videos(page_token="not-a-token")
        assert bad.value.code == "invalid_page_token"
        with pytest.raises(ApiError) as over:
            cs.search("x", k=1001)
        assert over.value.code == "validation_error"
    with Client(server[0], "cs_wrong") as stranger, pytest.raises(ApiError) as denied:
        stranger.list_videos()
    assert denied.value.code == "unauthorized"


def test_clip_download(server, ready, tmp_path):
    import av
    with Client(*server) as cs:
        got = cs.clip(ready["id"], 1.0, 3.0, tmp_path / "clip.mp4")
    assert got["mode"] in ("copy", "smart", "encode") and 0.9 <= got["start"] <= 1.0
    with av.open(str(got["path"])) as container:
        assert 1.5 <= float(container.duration / av.time_base) <= 2.6
    out = tmp_path / "cli.mp4"
    done = cli(server, "clip", ready["id"], "1", "3", "-o", str(out), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["mode"] == got["mode"] and out.stat().st_size > 1000


def cli(server, *args: str, key: str | None = None):
    get_settings.cache_clear()          # the key comes from the environment, through it
    try:
        from api.cli.commands import app
        return CliRunner().invoke(app, ["--server", server[0], *args],
                                  env={"CHRONOSCOPE_API_KEY": server[1] if key is None else key})
    finally:
        get_settings.cache_clear()


def test_cli_works_on_a_server(server, ready, media):
    vid = ready["id"]
    indexed = cli(server, "index", str(media / CLIP), "--json")     # same content: at once
    assert indexed.exit_code == 0, indexed.output
    assert json.loads(indexed.stdout)["id"] == vid
    assert json.loads(indexed.stdout)["skipped"] == "already indexed"       # as locally
    listed = json.loads(cli(server, "list", "--json").stdout)
    assert [v["id"] for v in listed] == [vid]                   # a plain list, as locally
    assert cli(server, "list", "--active").stdout == "no active videos\n"
    assert json.loads(cli(server, "status", vid, "--json").stdout)["status"] == "ready"
    segments = json.loads(cli(server, "segments", vid, "--json").stdout)
    assert segments and isinstance(segments, list)
    found = json.loads(cli(server, "search", segments[-1]["text"], "-k", "3", "--json").stdout)
    assert found and found[0]["video_id"] == vid
    assert json.loads(cli(server, "summary", vid, "--json").stdout)["chapters"]
    assert cli(server, "export", vid, "--format", "srt").stdout.startswith("1\n")
    missing = cli(server, "status", "0000000000000000")
    assert missing.exit_code == 1 and "no video" in missing.output
    assert cli(server, "keys", "someone").exit_code == 2         # local only
    other = cli(server, "list", "--tenant", "other")             # the key decides the tenant
    assert other.exit_code == 2 and "API key decides" in other.output
    assert cli(server, "list", "--all").exit_code == 2
    no_key = cli(server, "list", key="")
    assert no_key.exit_code == 2 and "CHRONOSCOPE_API_KEY" in no_key.output


# `chronoscope ARGS` in a fresh process; on stderr at the end, the heavy modules it loaded.
LANE = """
import sys
from api.cli.lane import main
sys.argv[0] = "chronoscope"
try:
    main()
finally:
    print("loaded:", [m for m in ("typer", "httpx", "pydantic", "sqlalchemy", "numpy")
                      if m in sys.modules], file=sys.stderr)
"""


def test_search_lane_prints_what_the_whole_command_line_prints(server, ready):
    """A plain search through a server takes the quick lane: no Typer, httpx, pydantic,
    SQLAlchemy or numpy loaded; the same output and exit code as the whole command line
    (through the SDK), errors included."""
    with Client(*server) as cs:
        said = cs.segments(ready["id"], kinds=["speech"])["segments"][-1]["text"]

    def lane(*args: str, key: str = server[1]):
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")},
               "CHRONOSCOPE_SERVER": server[0], "CHRONOSCOPE_API_KEY": key}
        return subprocess.run([sys.executable, "-c", LANE, *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    cases = [["search", said, "-k", "3", "--json"], ["search", said],
             ["search", said, "--kind", "speech", "--start", "0", "--end", "5.5", "-k2"],
             ["search", said, "--video", ready["id"][:6], "--json"],
             ["search", "zebras on the moon at midnight"],
             ["search", said, "--video", "ffff0000"]]                   # no such video: 404
    for args in cases:
        quick, whole = lane(*args), cli(server, *args)
        assert "loaded: []" in quick.stderr, (args, quick.stderr)
        assert (quick.returncode, quick.stdout) == (whole.exit_code, whole.stdout), args
        assert quick.stderr.startswith(whole.stderr), (args, quick.stderr)
    assert json.loads(lane(*cases[0]).stdout)[0]["video_id"] == ready["id"]
    revoked = lane("search", said, key="cs_not_a_key")
    assert revoked.returncode == 1 and revoked.stderr.startswith("error: ")
    assert revoked.stderr.startswith(cli(server, "search", said, key="cs_not_a_key").stderr)
    gone = subprocess.run([sys.executable, "-c", LANE, "--server", f"http://127.0.0.1:"
                           f"{_free_port()}", "search", said], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "CHRONOSCOPE_API_KEY": "k"})
    assert gone.returncode == 1 and "error: cannot reach http://127.0.0.1:" in gone.stderr
    refused = lane("search", said, "--start", "nan")    # the whole command line's message
    assert refused.returncode == 2 and "times must be numbers of seconds" in refused.stderr


def test_delete_through_the_sdk(server, ready):
    with Client(*server) as cs:
        words = cs.segments(ready["id"], kinds=["speech"])["segments"][-1]["text"]
        cs.delete_video(ready["id"])
        with pytest.raises(ApiError) as gone:
            cs.get_video(ready["id"])
        assert gone.value.code == "not_found"
        assert cs.search(words)["moments"] == [] and cs.list_videos()["videos"] == []


def test_sdk_types_name_every_field_the_api_documents():
    """client/types.py repeats the response shapes (the SDK imports nothing of the server):
    this keeps the two from drifting apart."""
    from api.http import create_app
    import client.types as sdk
    documented = create_app(Settings()).openapi()["components"]["schemas"]
    pairs = {"VideoOut": sdk.Video, "SegmentOut": sdk.Segment, "MomentOut": sdk.Moment,
             "MomentSegmentOut": sdk.MomentSegment, "SummaryOut": sdk.Summary,
             "ChapterOut": sdk.Chapter, "VideoPage": sdk.VideoPage,
             "SegmentPage": sdk.SegmentPage, "SearchOut": sdk.SearchPage,
             "HealthOut": sdk.Health, "SignalOut": sdk.Signal}
    for name, typed in pairs.items():
        assert set(typed.__annotations__) == set(documented[name]["properties"]), name

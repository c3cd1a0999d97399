"""A CLI run that dies leaves its video resumable: `status` says interrupted, and `resume` or
the next `index` of the same file finish it with the rows an uninterrupted run makes. Real
processes, killed with SIGKILL after their first chunk; a real sample."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from indexer import pipeline
from store import leases, queries
from store.db import session_scope
from store.schema import PROCESSING, QUEUED, utcnow

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "api.cli"]
SAMPLE = "timer_text_61s.mp4"
# Five chunks of on-screen text, each a few seconds of OCR: time to kill after the first.
LIGHT = {"CHRONOSCOPE_CHUNK__LENGTH_S": "15", "CHRONOSCOPE_DECODE__FPS": "0.5",
         "CHRONOSCOPE_OCR__MAX_SIDE": "640", "CHRONOSCOPE_SPEECH__ENABLED": "false"}


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(LIGHT, CHRONOSCOPE_HOME=str(home), HF_HUB_OFFLINE="1")
    return env


def cli(home: Path, *args, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], cwd=ROOT, env=_env(home), capture_output=True,
                          text=True, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def rows(home: Path, video_id: str) -> list[tuple]:
    segs = json.loads(cli(home, "segments", video_id, "--json").stdout)
    return [(s["kind"], s["start"], s["end"], s["text"]) for s in segs]


def _chunks_done(home: Path) -> int:
    db = home / "chronoscope.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as c:
            return c.execute("SELECT count(*) FROM chunks WHERE done_at IS NOT NULL").fetchone()[0]
    except sqlite3.OperationalError:       # not migrated yet, or busy: ask again
        return 0


def index_and_kill(home: Path, path: Path) -> None:
    """Start `index`, SIGKILL it once its first chunk is in, before the last."""
    proc = subprocess.Popen([*CLI, "index", str(path)], cwd=ROOT, env=_env(home),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while _chunks_done(home) < 1:
            assert proc.poll() is None, "index ended before its first chunk was seen"
            assert time.monotonic() < deadline, "no chunk finished in time"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert _chunks_done(home) < 5, "killed too late: every chunk was done"


@pytest.fixture(scope="module")
def baseline(media, tmp_path_factory) -> list[tuple]:
    home = tmp_path_factory.mktemp("whole") / "home"
    video = json.loads(cli(home, "index", str(media / SAMPLE), "--json").stdout)
    assert video["status"] == "ready" and video["chunks_total"] == 5
    out = rows(home, video["id"])
    assert out and all(r[0] == "screen_text" for r in out)
    return out


def _only_video(home: Path) -> dict:
    videos = json.loads(cli(home, "list", "--json").stdout)
    assert len(videos) == 1, videos
    return videos[0]


def test_killed_run_is_interrupted_and_resume_finishes_it(media, tmp_path, baseline):
    home = tmp_path / "home"
    index_and_kill(home, media / SAMPLE)
    video = _only_video(home)
    assert video["status"] == "interrupted"
    status = json.loads(cli(home, "status", video["id"], "--json").stdout)
    assert status["status"] == "interrupted" and 1 <= status["chunks_done"] < 5
    assert f"{video['id']}  interrupted" in cli(home, "status", video["id"]).stdout

    resumed = json.loads(cli(home, "resume", "--json").stdout)
    assert [(v["id"], v["status"]) for v in resumed] == [(video["id"], "ready")]
    assert rows(home, video["id"]) == baseline
    assert cli(home, "resume").stdout.strip() == "nothing to resume"


def test_index_again_after_a_kill_resumes(media, tmp_path, baseline):
    home = tmp_path / "home"
    index_and_kill(home, media / SAMPLE)
    first = _only_video(home)
    again = json.loads(cli(home, "index", str(media / SAMPLE), "--json").stdout)
    assert again["id"] == first["id"] and again["status"] == "ready"
    assert _only_video(home)["id"] == first["id"]          # no second video
    assert rows(home, first["id"]) == baseline             # no duplicate segments


# --- the rule, on both databases -------------------------------------------------------


def _owned_by(settings, video_id: str, owner: str, beat_s_ago: float = 0) -> None:
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        video.status, video.owner = PROCESSING, owner
        video.heartbeat_at = utcnow() - timedelta(seconds=beat_s_ago)


def _shown(settings, video_id: str) -> str:
    with session_scope(settings) as s:
        return leases.shown_status(queries.get_video(s, video_id),
                                   lease_s=settings.worker.lease_s)


def test_live_owner_is_not_taken_over_and_dead_one_is(settings, media, tmp_path):
    video_id = pipeline.add_video(settings, media / "his_girl_friday_6s.mp4")
    assert _shown(settings, video_id) == QUEUED          # no owner (a broker run): as stored
    other = subprocess.Popen(["sleep", "60"])
    try:
        ticks = open(f"/proc/{other.pid}/stat").read().rsplit(")", 1)[1].split()[19]
        _owned_by(settings, video_id, f"{socket.gethostname()}:{other.pid}:{ticks}")
        assert _shown(settings, video_id) == PROCESSING
        with pytest.raises(leases.Busy, match="another process"), session_scope(settings) as s:
            leases.claim(s, queries.get_video(s, video_id), lease_s=settings.worker.lease_s)
        # the same pid with another start time is another process: the owner is gone
        _owned_by(settings, video_id, f"{socket.gethostname()}:{other.pid}:1")
        assert _shown(settings, video_id) == leases.INTERRUPTED
    finally:
        other.kill()
        other.wait()
    _owned_by(settings, video_id, f"{socket.gethostname()}:{other.pid}:{ticks}")
    assert _shown(settings, video_id) == leases.INTERRUPTED
    # another host's run: alive while it beats, interrupted after the lease
    elsewhere = f"host-{uuid.uuid4().hex[:6]}:1:1"
    _owned_by(settings, video_id, elsewhere, beat_s_ago=1)
    assert _shown(settings, video_id) == PROCESSING
    _owned_by(settings, video_id, elsewhere, beat_s_ago=settings.worker.lease_s + 1)
    assert _shown(settings, video_id) == leases.INTERRUPTED
    with session_scope(settings) as s:        # the dead run's video is taken over
        leases.claim(s, queries.get_video(s, video_id), lease_s=settings.worker.lease_s)
    with session_scope(settings) as s:
        assert queries.get_video(s, video_id).owner == leases.ME
        assert leases.interrupted_videos(s, lease_s=settings.worker.lease_s) == []

"""The service with real Celery worker processes over the local Redis (db 5) and Postgres:
upload over HTTP, indexed by a worker, found by search over HTTP; a worker SIGKILLed with a
chunk in flight and a Redis restart during indexing both end with exactly the segments of an
uninterrupted run; a permanent error fails the video with its reason."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select
from typer.testing import CliRunner

from store.schema import Webhook
from core.config import ApiSettings
from api.http import create_app
from core.config import Settings
from core.errors import BadVideo, TransientError
from indexer import pipeline
from store import queries
from store.db import session_scope
from store.schema import FAILED, PROCESSING, READY, Chunk, ChunkRun, Video, utcnow
from web.live import WebhookReceiver, make_key, scratch_database, serve, wait_for
from workers import flow

ROOT = Path(__file__).resolve().parent.parent
CLIP = "his_girl_friday_6s.mp4"
BROKER = "redis://127.0.0.1:6379/5"
# .ci/run's own command line, so a restarted Redis is the one CI started.
REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port",
               "6379", "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
               "--logfile", "/var/log/redis/ci.log"]


LIBRARY_ENV = {"OMP_THREAD_LIMIT", "KMP_INIT_AT_FORK", "KMP_DUPLICATE_LIB_OK"}


class Cluster:
    def __init__(self, settings: Settings, base: str, home: Path, tmp: Path):
        self.settings, self.base, self.tmp = settings, base, tmp
        # Not what this process's libraries set on import for themselves: model/ocr.py's
        # OMP_THREAD_LIMIT=1, inherited by a worker before its first Whisper run, leaves
        # faster-whisper hearing nothing (and 15x slower); sklearn's KMP_* likewise.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("CHRONOSCOPE_") and k not in LIBRARY_ENV}
        self.env.update({
            "CHRONOSCOPE_HOME": str(home), "CHRONOSCOPE_DATABASE_URL": settings.database_url,
            "CHRONOSCOPE_BROKER_URL": BROKER, "CHRONOSCOPE_CHUNK__LENGTH_S": "2",
            "CHRONOSCOPE_CHUNK__OVERLAP_S": "1", "HF_HUB_OFFLINE": "1",
            "CHRONOSCOPE_WORKER__RECONCILE_INTERVAL_S": "2",
            "CHRONOSCOPE_WORKER__RECONCILE_MIN_AGE_S": "1",
            "CHRONOSCOPE_API__WEBHOOK_ALLOW_PRIVATE": "1"})      # receivers are on loopback
        self.workers: list[tuple[subprocess.Popen, Path]] = []
        self.redis = redis.Redis.from_url(BROKER)

    def start_worker(self) -> tuple[subprocess.Popen, Path]:
        log = self.tmp / f"worker{len(self.workers)}.log"
        with open(log, "wb") as out:
            # Its own session, so a SIGKILL to the group takes the pool processes too, as a
            # machine that dies would.
            proc = subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "--queues", "cpu"],
                                    cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.workers.append((proc, log))
        return proc, log

    def kill(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=30)

    def client(self, tenant: str) -> httpx.Client:
        key, _ = make_key(self.settings, tenant)
        return httpx.Client(base_url=self.base, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})

    def video(self, video_id: str) -> Video:
        with session_scope(self.settings) as s:
            return queries.get_video(s, video_id)

    def segments(self, video_id: str) -> list[tuple]:
        with session_scope(self.settings) as s:
            return [(r.chunk_idx, r.kind, r.start_ms, r.end_ms, r.text, r.model_id)
                    for r in queries.get_segments(s, video_id=video_id)]

    def wait_done(self, video_id: str, timeout: float = 150) -> Video:
        wait_for(lambda: self.video(video_id).status in (READY, FAILED), timeout=timeout,
                 what=f"video {video_id} to be indexed", interval=0.5)
        return self.video(video_id)


def upload(client: httpx.Client, media: Path, **data) -> str:
    with open(media / CLIP, "rb") as f:
        r = client.post("/v1/videos", files={"file": (CLIP, f, "video/mp4")}, data=data)
    assert r.status_code == 202, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def cluster(pg_template, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("workers")
    home = tmp / "home"
    r = redis.Redis.from_url(BROKER)
    r.flushdb()
    with scratch_database(pg_template) as url:
        settings = Settings(home=home, database_url=url, broker_url=BROKER)
        with serve(create_app(settings, ApiSettings(webhook_hosts="127.0.0.1,localhost"))) as base:
            cluster = Cluster(settings, base, home, tmp)
            cluster.start_worker()
            try:
                yield cluster
            finally:
                for proc, log in cluster.workers:
                    cluster.kill(proc, signal.SIGTERM)
                    sys.stderr.write(f"--- {log.name} (tail) ---\n"
                                     + log.read_text(errors="replace")[-3000:])
    r.flushdb()


@pytest.fixture(scope="module")
def reference(cluster, media):
    """A video indexed by a worker without interruption: what every recovery must match."""
    client = cluster.client("ref")
    vid = upload(client, media)
    seen = []          # progress as the API shows it while the workers index (seconds, stage)
    wait_for(lambda: seen.append(client.get(f"/v1/videos/{vid}").json()) or
             seen[-1]["status"] in ("ready", "failed"), timeout=150, what="the reference",
             interval=0.05)
    video = cluster.wait_done(vid)
    assert video.status == READY, video.error
    moving = [v for v in seen if 0 < v["progress_s"] < video.duration_ms / 1000]
    assert moving and all(v["stage"] and v["eta_s"] is not None for v in moving), seen
    assert [v["progress_s"] for v in seen] == sorted(v["progress_s"] for v in seen)
    segments = cluster.segments(vid)
    assert segments and any(kind == "speech" for _, kind, *_ in segments)
    return vid, segments


def assert_same_segments(got: list[tuple], expected: list[tuple]) -> None:
    assert not [row for row, n in Counter(got).items() if n > 1], "duplicate segments"
    assert got == expected


def test_upload_is_indexed_by_a_worker_and_found_over_http(cluster, reference):
    vid, _ = reference
    client = cluster.client("ref")
    v = client.get(f"/v1/videos/{vid}").json()
    assert v["status"] == "ready" and v["progress"] == 100.0 and v["chunks_total"] == 4
    said = max((s for s in client.get(f"/v1/videos/{vid}/segments", params={"kind": "speech"})
                .json()["segments"]), key=lambda s: len(s["text"]))
    top = client.get("/v1/search", params={"q": said["text"]}).json()["moments"][0]
    assert top["video_id"] == vid and said["text"] in [s["text"] for s in top["segments"]]
    assert httpx.get(f"{cluster.base}/healthz").json()["broker"] == "ok"
    metrics = httpx.get(f"{cluster.base}/metrics").text
    assert 'chronoscope_queue_length{queue="cpu"}' in metrics


def test_worker_killed_mid_video_is_finished_by_a_new_one(cluster, reference, media):
    vid = upload(cluster.client("kill"), media)
    worker, _ = next((p, log) for p, log in cluster.workers if p.poll() is None)

    def chunk_in_flight() -> bool:
        # A unit of some chunk is written but the video is not done: the worker is inside it.
        with session_scope(cluster.settings) as s:
            v = s.get(Video, vid)
            runs = s.scalar(select(func.count()).select_from(ChunkRun)
                            .where(ChunkRun.video_id == vid))
            return v.status == PROCESSING and runs > 0 and v.chunks_done < v.chunks_total

    wait_for(chunk_in_flight, timeout=120, what="a chunk in flight", interval=0.02)
    cluster.kill(worker)
    killed = cluster.video(vid)
    assert killed.status == PROCESSING and killed.chunks_done < killed.chunks_total

    _, log = cluster.start_worker()
    video = cluster.wait_done(vid)
    assert video.status == READY, video.error
    assert video.chunks_done == video.chunks_total == 4
    assert_same_segments(cluster.segments(vid), reference[1])
    # Finished through reconcile, long before Redis's one-hour visibility timeout.
    assert "reconcile: sent again" in log.read_text()


def redis_up() -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"],
                          capture_output=True).stdout.strip() == b"PONG"


def restart_redis() -> None:
    """Down and up again in a fraction of a second: other suites may share this Redis."""
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], check=False,
                   capture_output=True, timeout=10)
    subprocess.run(REDIS_START, check=True, timeout=10)
    wait_for(redis_up, timeout=10, what="Redis to come back", interval=0.05)


def test_redis_restart_during_indexing_loses_no_job(cluster, reference, media):
    _, log = next((p, log) for p, log in cluster.workers if p.poll() is None)
    resent_before = log.read_text().count("reconcile: sent again")
    vid = upload(cluster.client("restart"), media)
    # Restart while chunk messages wait in the queue: they die with Redis.
    wait_for(lambda: cluster.redis.llen("cpu") > 0 and cluster.video(vid).status == PROCESSING,
             timeout=60, what="queued chunks", interval=0.02)
    try:
        restart_redis()
    finally:
        if not redis_up():                                  # never leave Redis down
            subprocess.run(REDIS_START, capture_output=True)
    video = cluster.wait_done(vid)
    assert video.status == READY, video.error
    assert_same_segments(cluster.segments(vid), reference[1])
    assert log.read_text().count("reconcile: sent again") > resent_before


def test_permanent_error_fails_the_video_with_its_reason(cluster, media, tmp_path):
    # A file that vanished after it was accepted: BadVideo in plan, never retried.
    receiver = WebhookReceiver()
    try:
        make_key(cluster.settings, "perm")
        path = tmp_path / "gone.mp4"
        shutil.copy(media / CLIP, path)
        vid = pipeline.add_video(cluster.settings, path, tenant="perm")
        with session_scope(cluster.settings) as s:
            s.add(Webhook(video_id=vid, url=receiver.url))
        path.unlink()
        from workers.broker import producer
        assert flow.send(producer(BROKER), flow.Unit(flow.PLAN, vid))
        video = cluster.wait_done(vid, timeout=60)
        assert video.status == FAILED and "gone.mp4" in video.error and "not found" in video.error
        wait_for(lambda: receiver.events(), timeout=30, what="the failed webhook")
        assert receiver.events()[0]["event"] == "video.failed"
    finally:
        receiver.close()


def test_caption_units_go_to_the_gpu_queue(sqlite_settings, tmp_path, media):
    """With Qwen3-VL configured, a chunk's CPU signals are followed by its captions on the
    gpu queue, so each pool is sized on its own (no GPU worker needed to see the routing)."""
    from workers.broker import producer
    broker = "redis://127.0.0.1:6379/6"
    r = redis.Redis.from_url(broker)
    r.flushdb()
    s = sqlite_settings
    s.qwen.model = "Qwen/Qwen3-VL-2B-Instruct"
    shutil.copy(media / CLIP, tmp_path / CLIP)
    vid = pipeline.add_video(s, tmp_path / CLIP)
    with session_scope(s) as sess:
        v = queries.get_video(sess, vid)
        v.status, v.chunks_total, v.captions = PROCESSING, 2, True   # as plan leaves it
        v.chunks_sent = 2                                             # and advance
        sess.add_all([Chunk(video_id=vid, idx=0, start_ms=0, end_ms=3000, done_at=utcnow()),
                      Chunk(video_id=vid, idx=1, start_ms=3000, end_ms=6000)])
    try:
        app = producer(broker)
        flow.after_chunk(s, app, vid, 0, captioned=False)
        assert r.llen("gpu") == 1 and r.llen("cpu") == 0
        assert flow.queued_units(app) == {flow.Unit(flow.CAPTION, vid, 0)}
        with session_scope(s) as sess:
            todo = flow.remaining(sess, queries.get_video(sess, vid))
        assert todo == [flow.Unit(flow.CHUNK, vid, 1), flow.Unit(flow.CAPTION, vid, 0)]
        assert flow.cpu_settings(s).qwen.model == "" and s.qwen.model
        assert not flow.gpu_settings(s).speech.enabled and not flow.gpu_settings(s).ocr.enabled
    finally:
        r.flushdb()


def test_retry_policy_is_in_the_decorators():
    from workers import tasks
    for task in (tasks.plan, tasks.index_chunk, tasks.caption_chunk, tasks.finalize):
        assert task.acks_late and task.reject_on_worker_lost
        # Database and broker errors reach a task as TransientError (store.db, workers.broker).
        assert TransientError in task.autoretry_for
        assert not any(issubclass(BadVideo, e) for e in task.autoretry_for)
        assert task.retry_backoff and task.retry_jitter and task.max_retries
    route = tasks.app.amqp.router.route
    assert route({}, tasks.caption_chunk.name)["queue"].name == "gpu"
    for task in (tasks.plan, tasks.index_chunk, tasks.finalize, tasks.notify):
        assert route({}, task.name)["queue"].name == "cpu"


def test_worker_command_needs_a_broker(monkeypatch):
    from api.cli.commands import app
    from core.config import get_settings
    monkeypatch.delenv("CHRONOSCOPE_BROKER_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["worker"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "CHRONOSCOPE_BROKER_URL" in result.output


def test_compose_file_describes_the_service():
    """Structure checked with PyYAML everywhere; `docker compose config` (or Debian's
    docker-compose) validates it against the Compose schema where a client is installed."""
    import yaml
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"postgres", "redis", "migrate", "api", "worker-cpu", "worker-gpu", "flower"} \
        <= set(services)
    for name in ("api", "worker-cpu", "worker-gpu"):
        svc = services[name]
        assert svc["build"] == "." and svc["environment"]["CHRONOSCOPE_BROKER_URL"]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert "data:/data" in svc["volumes"]       # uploads and FAISS shared by all
    assert services["worker-cpu"]["command"][:4] == ["chronoscope", "worker", "--queues", "cpu"]
    assert services["worker-gpu"]["command"][:4] == ["chronoscope", "worker", "--queues", "gpu"]
    device = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["api"]["command"][:2] == ["chronoscope", "serve"]
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    # Safe by default: a plain `up` needs no GPU, and nothing has a default password.
    assert services["worker-gpu"]["profiles"] == ["gpu"]
    assert all("profiles" not in s for n, s in services.items() if n != "worker-gpu")
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == \
        "${FLOWER_USER:-admin}:${FLOWER_PASSWORD:?set FLOWER_PASSWORD}"
    assert not any("auth" in arg for arg in services["flower"]["command"])   # not in `ps`
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "POSTGRES_PASSWORD:-" not in text and "${POSTGRES_PASSWORD:?" in text
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "tesseract-ocr" in dockerfile and 'CMD ["chronoscope", "serve"' in dockerfile
    for cli in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cli[0]) and subprocess.run(cli + ["version"], capture_output=True
                                                   ).returncode == 0:
            config = cli + ["-f", str(ROOT / "docker-compose.yml"), "config", "-q"]
            bare = {k: v for k, v in os.environ.items()
                    if k not in ("POSTGRES_PASSWORD", "FLOWER_PASSWORD")}
            refused = subprocess.run(config, capture_output=True, text=True, cwd=ROOT, env=bare)
            assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
            done = subprocess.run(config, capture_output=True, text=True, cwd=ROOT, env={
                **bare, "POSTGRES_PASSWORD": "p", "FLOWER_PASSWORD": "f"})
            assert done.returncode == 0, done.stderr
            return
    if os.environ.get("CI"):
        pytest.fail("no Compose client to validate docker-compose.yml: run tests/web/setup.sh")


def test_another_tenants_short_video_finishes_while_a_long_one_runs_and_delete_stops_it(
        cluster, reference, media):
    """A window of chunks per video on the broker: tenant B's 6 s clip does not wait behind
    tenant A's 31 chunks. DELETE of A then stops its work: nothing more is sent, what was
    queued drains as no-ops."""
    long_clip = "timer_text_61s.mp4"
    alpha, beta = cluster.client("long"), cluster.client("short")
    with open(media / long_clip, "rb") as f:
        r = alpha.post("/v1/videos", files={"file": (long_clip, f, "video/mp4")})
    assert r.status_code == 202, r.text
    long_id = r.json()["id"]
    wait_for(lambda: cluster.video(long_id).chunks_done >= 1, timeout=120,
             what="the long video's first chunk", interval=0.2)
    short_id = upload(beta, media)
    assert cluster.wait_done(short_id).status == READY
    long_video = cluster.video(long_id)
    assert long_video.status == PROCESSING and long_video.chunks_total == 31
    assert long_video.chunks_done < long_video.chunks_total - 10
    app = flow.broker.producer(BROKER)
    window = cluster.settings.worker.chunk_window
    assert len({u for u in flow.queued_units(app) if u.video_id == long_id}) <= window

    logged = {log: log.stat().st_size for _, log in cluster.workers}
    assert alpha.delete(f"/v1/videos/{long_id}").status_code == 204

    def drained() -> bool:
        return not {u for u in flow.queued_units(app) | flow.worker_units(app)
                    if u.video_id == long_id}
    wait_for(drained, timeout=60, what="the deleted video's tasks to drain", interval=0.5)
    time.sleep(4)                              # two reconcile intervals: still nothing
    assert drained()
    for log, size in logged.items():           # chunks cut short end quietly, no traceback
        assert b"Traceback" not in log.read_bytes()[size:], log.name

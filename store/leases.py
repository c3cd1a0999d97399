"""Who indexes a video in-process (the CLI, an embedded server) and whether that run is still
alive. A run claims the video with its owner name "host:pid:start" and beats `heartbeat_at`
while it works; readers show a queued or processing video as interrupted once its owner died
(its pid is gone on this host) or stopped beating for a lease. Nothing here writes a status:
the next run that claims the video finishes it. Celery workers never claim (owner stays NULL):
reconcile recovers their videos."""

import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from core.config import Settings, get_settings
from core.errors import ChronoscopeError
from store.db import session_scope
from store.schema import PROCESSING, QUEUED, Video, utcnow

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"      # shown, never stored
_ACTIVE = (QUEUED, PROCESSING)


class Busy(ChronoscopeError):
    """Another live process is indexing the video."""


def _start_ticks(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), which tells a pid reused by a new
    process from the one that claimed; None when the pid is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _this_process() -> str:
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or 0}"


ME = _this_process()


def owner_alive(owner: str) -> bool:
    """False only when the owner certainly died: its pid is gone from this host, or now names
    another process. Another host's process is judged by its heartbeat alone."""
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return True
    pid, start = parts[1], parts[2]
    if not os.path.isdir("/proc/self"):         # no procfs: a signal 0 tells existence
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return True
    ticks = _start_ticks(int(pid))
    return ticks is not None and (start == "0" or ticks == start)


def is_interrupted(video: Video, *, lease_s: float, now: datetime | None = None) -> bool:
    if video.status not in _ACTIVE or not video.owner:
        return False
    beat = video.heartbeat_at
    if beat is None:
        return True
    if beat.tzinfo is None:                      # SQLite gives naive UTC
        beat = beat.replace(tzinfo=timezone.utc)
    age = ((now or utcnow()) - beat).total_seconds()
    return age > lease_s or not owner_alive(video.owner)


def shown_status(video: Video, *, lease_s: float | None = None) -> str:
    """The status a reader shows: the stored one, or interrupted."""
    lease = get_settings().worker.lease_s if lease_s is None else lease_s
    return INTERRUPTED if is_interrupted(video, lease_s=lease) else video.status


def interrupted_videos(session: Session, *, lease_s: float) -> list[Video]:
    """Every video whose in-process run died, oldest first."""
    now = utcnow()
    return [v for v in session.scalars(select(Video).where(Video.status.in_(_ACTIVE),
                                                           Video.owner.is_not(None))
                                       .order_by(Video.created_at))
            if is_interrupted(v, lease_s=lease_s, now=now)]


def claim(session: Session, video: Video, *, lease_s: float) -> None:
    """Make this process the video's owner, unless another live process owns it (Busy). The
    swap is conditional on the owner seen, so two runs claiming at once cannot both win."""
    seen = video.owner
    if seen and seen != ME and video.status in _ACTIVE \
            and not is_interrupted(video, lease_s=lease_s):
        raise Busy(f"video {video.id} is being indexed by another process ({seen}); "
                   f"wait for it, or stop that process and run `chronoscope resume {video.id}`")
    owner_is = Video.owner.is_(None) if seen is None else Video.owner == seen
    done = session.execute(update(Video).where(Video.id == video.id, or_(owner_is,
                                                                        Video.owner == ME))
                           .values(owner=ME, heartbeat_at=utcnow())
                           .execution_options(synchronize_session=False))
    if done.rowcount != 1:
        raise Busy(f"video {video.id} was just claimed by another process")


def release(session: Session, *, video_id: str) -> None:
    """Forget the owner once the video is no longer active (ready or failed); an active one
    keeps it, so a run stopped by Ctrl-C still shows as interrupted."""
    session.execute(update(Video).where(Video.id == video_id, Video.owner == ME,
                                        Video.status.not_in(_ACTIVE))
                    .values(owner=None, heartbeat_at=None)
                    .execution_options(synchronize_session=False))


def beat(session: Session) -> int:
    """Refresh every active video this process owns."""
    return session.execute(update(Video).where(Video.owner == ME, Video.status.in_(_ACTIVE))
                           .values(heartbeat_at=utcnow())
                           .execution_options(synchronize_session=False)).rowcount


_beating: set[str] = set()
_beating_lock = threading.Lock()


def keep_alive(settings: Settings) -> None:
    """Start, once per process and database, a thread that beats every few seconds (a
    quarter of the lease) for as long as the process lives."""
    with _beating_lock:
        if settings.db_url in _beating:
            return
        _beating.add(settings.db_url)
    threading.Thread(target=_beat_loop, args=(settings,), daemon=True,
                     name="chronoscope-heartbeat").start()


def _beat_loop(settings: Settings) -> None:
    interval = max(0.5, settings.worker.lease_s / 4)
    while True:
        time.sleep(interval)
        try:
            with session_scope(settings) as s:
                beat(s)
        except Exception as e:        # a database hiccup: the next beat tries again
            log.warning("heartbeat failed: %s", e)

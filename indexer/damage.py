"""Where a file's data could not be decoded, for a note the user reads.

Decoding conceals damage and goes on, so a partly corrupt video is still indexed from what
decoded; what was lost is recorded here while a chunk runs (`recording`), as the times of the
packets that failed and the frames that came out corrupt, and said in the video's notes.
A set of (stream, ms) keys: signals that decode the same stretch twice count it once.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from core.times import clock

VIDEO, AUDIO = "video", "audio"
# Every damage note starts so; a re-plan keeps these notes (the chunks they came from are
# not decoded again).
PREFIX = "damaged data:"
# Damage this close together is one stretch in the note.
JOIN_MS = 5000

_current: ContextVar[set | None] = ContextVar("chronoscope_damage", default=None)


@contextmanager
def recording() -> Iterator[set]:
    """Collect the damage decode meets inside the block (in this thread or task)."""
    seen: set = set()
    token = _current.set(seen)
    try:
        yield seen
    finally:
        _current.reset(token)


def record(stream: str, t_ms: float | None) -> None:
    seen = _current.get()
    if seen is not None:
        seen.add((stream, None if t_ms is None else max(0, round(t_ms))))


def note(seen: set, start_ms: int, end_ms: int) -> str | None:
    """'damaged data: 3 video packets could not be decoded between 0:12 and 0:15 ...' for
    the damage inside [start_ms, end_ms) (a chunk's own span: its overlap is another's)."""
    parts = []
    for stream in (VIDEO, AUDIO):
        times = sorted(t for s, t in seen if s == stream and t is not None
                       and start_ms <= t < end_ms)
        unplaced = sum(1 for s, t in seen if s == stream and t is None)
        if unplaced and start_ms == 0:
            parts.append(f"{unplaced} unreadable stretches of {stream} data")
        if times:
            parts.append(f"{len(times)} {stream} packets or frames could not be decoded "
                         + ", ".join(_ranges(times)))
    if not parts:
        return None
    return (f"{PREFIX} " + "; ".join(parts)
            + "; the video is indexed from what decoded, these moments may be missing")


def _ranges(times: list[int]) -> list[str]:
    runs = [[times[0], times[0]]]
    for t in times[1:]:
        if t - runs[-1][1] > JOIN_MS:
            runs.append([t, t])
        else:
            runs[-1][1] = t
    return [f"at {clock(a)}" if clock(a) == clock(b) else f"between {clock(a)} and {clock(b)}"
            for a, b in runs]

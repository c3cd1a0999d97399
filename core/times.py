"""Times as people and players read them. Inside chronoscope every time is integer
milliseconds from the start of the video; these are the only conversions to and from it."""

import math

from core.errors import BadQuery

MAX_MS = 2**31 - 1      # the latest time there is: times are int32 ms (the vector index's)


def seconds(ms: int | None) -> float | None:
    """Times in JSON: seconds with millisecond precision."""
    return None if ms is None else round(ms / 1000, 3)


def to_ms(s: float | None) -> int | None:
    """Seconds a person or a client gave, as ms ("nan", "inf" and 1e300 parse as floats)."""
    if s is None:
        return None
    if not (math.isfinite(s) and abs(s) * 1000 <= MAX_MS):
        raise BadQuery(f"times must be numbers of seconds up to {MAX_MS // 1000}, not {s}")
    return round(s * 1000)


def clock(ms: int, *, hours: bool = False, pad_hours: bool = False,
          frac_sep: str | None = None) -> str:
    """`M:SS` (`H:MM:SS` past an hour or with hours=True), `HH:...` with pad_hours, and
    `.mmm` (or `,mmm` for SRT) with frac_sep."""
    h, rem = divmod(max(int(ms), 0), 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, milli = divmod(rem, 1000)
    if hours or pad_hours or h:
        out = f"{h:02d}:{m:02d}:{s:02d}" if pad_hours else f"{h}:{m:02d}:{s:02d}"
    else:
        out = f"{m}:{s:02d}"
    return out + f"{frac_sep}{milli:03d}" if frac_sep else out


def check_range(start_ms: int | None, end_ms: int | None) -> None:
    """The one rule for a time range a user asks for: both bounds optional, never negative,
    start before end."""
    if (start_ms is not None and start_ms < 0) or (end_ms is not None and end_ms < 0):
        raise BadQuery("times must be >= 0")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise BadQuery(f"the time range is empty: start {start_ms / 1000} s is not before "
                       f"end {end_ms / 1000} s")

"""A moment cut out of a video as an MP4, frame-accurate.

The clip's first frame is the one shown at START (pts <= START < next pts), its last the
one shown just before END; the sound is cut to the same times. The clip's time 0 is the
first frame's own time, so picture and sound stay together. When that first frame is a
keyframe of a codec MP4 holds and the stream has no frame reordering, the picture is
stream-copied; for H.264 without reordering whose next keyframe is an IDR picture, only
the head up to that keyframe is re-encoded and the rest copied (indexer/smartcut.py);
otherwise the whole clip is re-encoded (H.264).
"""

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from core.config import Settings
from core.errors import BadQuery
from core.times import MAX_MS
from indexer import smartcut, transcode
from indexer.demux import packets, seek
from indexer.probe import open_video, origin_s, probe


@dataclass(frozen=True)
class Clip:
    start_s: float        # the first frame's time in the video
    end_s: float
    mode: str             # copy, smart (head re-encoded, the rest copied) or encode


def check_bounds(start: float, end: float, duration_ms: int | None, max_length_s: float
                 ) -> None:
    """BadQuery (a clear message) for bounds that cannot make a clip; times count in
    milliseconds, as everywhere in chronoscope."""
    if not (math.isfinite(start) and math.isfinite(end)):
        raise BadQuery("start and end must be finite numbers of seconds")
    if start < 0 or end < 0:
        raise BadQuery("start and end must be >= 0 seconds")
    last = (duration_ms if duration_ms is not None else MAX_MS) / 1000
    for name, t in (("start", start), ("end", end)):
        if t > last + 0.0005 or (name == "start" and t >= last):
            raise BadQuery(f"{name} {t} s is beyond the end of the video ({last} s)")
    if round(end * 1000) <= round(start * 1000):
        raise BadQuery(f"the clip is empty: end {end} s is not after start {start} s")
    if end - start > max_length_s:
        raise BadQuery(f"the clip is {end - start:g} s long; at most {max_length_s:g} s can "
                       "be cut at once (CHRONOSCOPE_CLIP__MAX_LENGTH_S)")


def cut(path: Path, dest: Path, start: float, end: float, settings: Settings,
        duration_ms: int | None) -> Clip:
    """Write the clip [start, end) seconds of `path` to `dest` (an MP4). `duration_ms`: the
    video's, as planned (None: not yet, the file is probed)."""
    check_bounds(start, end, duration_ms, settings.clip.max_length_s)
    if duration_ms is None:
        duration_ms = probe(path, settings.decode).duration_ms
        check_bounds(start, end, duration_ms, settings.clip.max_length_s)
    span = locate(path, Fraction(round(start * 1000), 1000), Fraction(round(end * 1000), 1000))
    container, stream = open_video(path)
    with container:
        how = transcode.mode(stream, span)
        first_s = span.zero_s - origin_s(container)
    transcode.write_mp4(path, dest, span, transcode.Encoding(None, settings.clip.preset,
                                                              settings.clip.crf), how=how)
    return Clip(start_s=round(float(first_s), 3), end_s=end, mode=how)


def locate(path: Path, start: Fraction, end: Fraction) -> transcode.Cut:
    """The cut for [start, end) seconds of the video: its first frame (the one shown at
    start, found from the packets' pts without decoding) and a seek that reaches it."""
    container, stream = open_video(path)
    with container:
        origin = origin_s(container)
        tb = stream.time_base
        at = origin + start
        seen: list[tuple[int, bool]] = []
        seek_pts = None
        for seek_pts in (int(at / tb), None):
            seek(container, seek_pts if seek_pts is not None else 0, stream)
            seen, after = _packets_around(container, stream, at, origin + end)
            # The seek must land at or before the wanted frame, or it was passed over.
            if seek_pts is None or (seen and seen[0][0] * tb <= at):
                break
        if not seen:
            raise BadQuery(f"no picture at {float(start)} s: the video has none there")
        shown = [p for p in seen if p[0] * tb <= at]
        first, keyframe = max(shown) if shown else min(seen)
        return transcode.Cut(zero_s=first * tb, first_pts=first, end_s=origin + end,
                             seek_pts=seek_pts, keyframe=keyframe,
                             next_key_pts=after[0] if after else None,
                             next_key_idr=bool(after) and after[1])


def _packets_around(container, stream, at: Fraction, end: Fraction
                    ) -> tuple[list[tuple[int, bool]], tuple[int, bool] | None]:
    """(pts, keyframe) of the packets from here to the first keyframe after `at`, sorted
    (every frame that can be on screen at `at` is among them), and that keyframe's (pts,
    is an IDR picture) if there is one before `end`. The scan stops a second past `end`
    (beyond any reordering): a file with rare keyframes is not read to its end."""
    tb = stream.time_base
    stats = {"read_errors": 0}
    seen = []
    for packet in packets(container, stream, stats):
        if packet.pts is None or packet.size == 0:
            continue
        if packet.is_keyframe and packet.pts * tb > at and seen:
            idr = stream.codec_context.name == "h264" and smartcut.is_idr(bytes(packet))
            return sorted(seen), (packet.pts, idr)
        if packet.pts * tb > max(at, end) + 1 and seen:
            break
        seen.append((packet.pts, bool(packet.is_keyframe)))
    return sorted(seen), None

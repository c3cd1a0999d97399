"""The time a file's packets really cover: what a video's indexable span is made of.

A duration field, a timestamp and a packet's duration are numbers anyone can write, so none
of them alone decides how much work a file makes. Every packet of the picture and sound is
read (demuxing only, no decoding: seconds even for hours) and the seconds they cover are
marked on a bounded timeline (the duration limit plus the longest gap allowed). The
indexable span is the first covered stretch: it ends where no packet of any stream comes for
longer than `max_gap_s`. What lies past such a gap, or past the timeline, is left out with
a note; a span longer than the limits is refused, naming the setting.
"""

from array import array
from dataclasses import dataclass
from fractions import Fraction

import av

from core.config import DecodeSettings
from core.errors import BadVideo
from core.times import clock


@dataclass(frozen=True)
class Span:
    cut_s: float | None     # the span ends before this time (relative to the origin), None
                            # when no packet has a time at all (a raw stream)
    data_end_s: float       # where the latest packet of the file ends, inside or not
    video_packets: int      # in the whole file
    audio_packets: int
    resume_s: float | None = None   # where data starts again after the gap that ends the span
    left_out: int = 0               # packets past that gap (or past the timeline)


def _setting(name: str) -> str:
    return f"CHRONOSCOPE_DECODE__{name.upper()}"


def scan(name: str, container, stream, origin: Fraction, limits: DecodeSettings) -> Span:
    """Mark the seconds covered by the packets of the video and audio streams and find the
    indexable span, or raise BadVideo when a limit is passed."""
    horizon = int(limits.max_duration_s + limits.max_gap_s) + 2
    covered = bytearray(horizon)       # any packet starts or lasts in that second
    pictures = bytearray(horizon)      # a video packet starts in that second
    starts = array("L", [0]) * horizon     # packets starting in that second
    ones = b"\x01" * horizon
    video = audio = outside = 0
    first_outside = data_end = None
    o = float(origin)
    tbs = {s.index: float(s.time_base) for s in container.streams if s.time_base}
    for packet in _packets(container, [stream, *container.streams.audio]):
        if not packet.size:
            continue               # the demuxer's end-of-stream marker
        if packet.stream_index == stream.index:
            video += 1
            if video > limits.max_frames:
                raise BadVideo(f"{name}: the video has more than {limits.max_frames} frames, "
                               f"the limit per upload ({_setting('max_frames')}); cut it "
                               "into parts or raise the limit")
        else:
            audio += 1
        tb = tbs.get(packet.stream_index)
        if packet.pts is None or tb is None:
            continue
        start = packet.pts * tb - o
        length = min((packet.duration or 0) * tb, limits.max_gap_s)
        data_end = start + length if data_end is None else max(data_end, start + length)
        if not -1 <= start < horizon - 1:
            outside += 1
            first_outside = start if first_outside is None else min(first_outside, start)
            continue
        a, b = int(max(start, 0)), min(int(max(start, 0) + length), horizon - 1)
        covered[a:b + 1] = ones[:b + 1 - a]
        starts[a] += 1
        if packet.stream_index == stream.index:
            pictures[a] = 1
    if data_end is None:
        return Span(None, 0.0, video, audio)
    return _span(name, covered, pictures, starts, first_outside, outside, data_end,
                 video, audio, limits)


def _span(name, covered, pictures, starts, first_outside, outside, data_end, video, audio,
          limits) -> Span:
    s0 = covered.find(1)
    if s0 < 0 or s0 >= limits.max_duration_s:
        at = first_outside if s0 < 0 else s0
        raise BadVideo(f"{name}: the file's timestamps start at {clock(_ms(at))}, past the "
                       f"{clock(_ms(limits.max_duration_s))} limit ({_setting('max_duration_s')}"
                       "); the timestamps are broken or hostile: re-encode the video")
    last = s0
    gap = int(limits.max_gap_s)
    while True:
        nxt = covered.find(1, last + 1)
        if nxt < 0 or nxt - last - 1 > gap:
            break
        last = nxt
    if last >= limits.max_duration_s:
        raise BadVideo(f"{name}: the video is longer than the {clock(_ms(limits.max_duration_s))}"
                       f" limit per upload ({_setting('max_duration_s')}); cut it into parts "
                       "or raise the limit")
    if pictures.find(1, s0, last + 1) < 0:
        raise BadVideo(f"{name}: the video stream has no frame inside the {clock(_ms(s0))} to "
                       f"{clock(_ms(last + 1))} that the file's data covers; its timestamps "
                       "are broken: re-encode the video")
    left_out = sum(starts[last + 1:]) + outside
    resume = covered.find(1, last + 1)
    resume = first_outside if resume < 0 else resume
    return Span(float(last + 1), data_end, video, audio, resume, left_out)


def gap_notes(span: Span, end_ms: int, limits: DecodeSettings) -> tuple[str, ...]:
    """What a user should know when part of the file was left out of the span."""
    if not span.left_out:
        return ()
    return (f"the file's timestamps jump from {clock(end_ms)} to "
            f"{clock(_ms(max(span.resume_s, 0)))} with nothing between (a gap over "
            f"{limits.max_gap_s:g} s, {_setting('max_gap_s')}, ends a video): indexed up to "
            f"{clock(end_ms)}, {span.left_out} packets after the gap left out",)


def _ms(s: float) -> int:
    return round(s * 1000)


def _packets(container, streams):
    """Demuxed packets from the start of the file; a damaged stretch ends the scan where it
    stops the demuxer (what lies past it could not be read by decode either)."""
    try:
        container.seek(0)
    except av.error.FFmpegError:
        pass           # a stream that cannot seek: read on from where it is
    try:
        yield from container.demux(streams)
    except av.error.FFmpegError:
        return


def end_of_data(container, stream, origin: Fraction, cut_s: float, max_gap_s: float,
                declared_end: Fraction) -> Fraction | None:
    """Exact end (seconds from the container's zero) of the last video frame or audio
    sample that starts before cut_s, whichever is later: one seek to some way before it and
    the packets of the last seconds."""
    streams = [stream, *container.streams.audio]
    last: dict = {s.index: [] for s in streams}     # the two latest (pts, duration) per stream
    cut = origin + Fraction(cut_s)
    target = min(declared_end, cut) if declared_end > 10 else cut
    try:
        # Some way before the end, so that at least two packets follow (a seek to the very
        # end may land on the last packet alone).
        if target > 10:
            container.seek(int((target - 10) / stream.time_base), stream=stream, backward=True)
        else:
            container.seek(0)
        for packet in container.demux(streams):
            if packet.pts is not None and packet.time_base \
                    and packet.pts * packet.time_base < cut:
                tail = last[packet.stream_index]
                duration = min(packet.duration or 0,
                               int(max_gap_s / packet.time_base))
                last[packet.stream_index] = sorted([*tail, (packet.pts, duration)])[-2:]
    except av.error.FFmpegError:
        pass          # what was read so far is the end
    ends = []
    for s in streams:
        if last[s.index]:
            pts, duration = last[s.index][-1]
            if not duration and len(last[s.index]) == 2:
                duration = pts - last[s.index][0][0]   # MPEG-TS leaves it out: the last gap
            ends.append((pts + duration) * s.time_base)
    return max(ends) if ends else None

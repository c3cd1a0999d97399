"""Streaming decode with exact times: sampled frames (the sound is in indexer.audio).

A frame's time is its own pts * time_base minus the container start, never an index times
a nominal rate, so variable frame rate, B-frames and non-zero start pts come out right.
Nothing is kept beyond a few compressed packets and the current pair of frames, so memory
does not grow with the video's length.
"""

import itertools
import logging
import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.times import MAX_MS
from core.types import Frame
from indexer.damage import VIDEO
from indexer.damage import record as _record
from indexer.demux import SEEK_MARGINS_MS, log_stats, packets, seek
from indexer.probe import frame_time, open_video, origin_s

log = logging.getLogger(__name__)

# Packets held back before decoding, so the packets around each one (in presentation order)
# are known when deciding whether its frame can be the nearest to a target. Far more than
# any codec's reordering depth (H.264 allows 16).
LOOKAHEAD = 32


def sample_frames(path: Path, *, start_ms: int = 0, end_ms: int | None = None,
                  fps: float = 1.0, max_side: int = 448, skip: bool = True
                  ) -> Iterator[Frame]:
    """For each target time on the grid k * (1000 / fps) ms in [start_ms, end_ms), the decoded
    frame whose presentation time is nearest to it, with that frame's own time and pts (not
    the target's). The grid is absolute, so chunks cut at any boundary sample the same
    instants as one pass over the whole video. A frame nearest to several targets (a video
    slower than fps) is yielded once; the frame nearest to the first or last target may lie
    just outside [start_ms, end_ms). A target past the last frame gets it while it is still
    on screen. Images are RGB, upright, longest side at most max_side (never enlarged).

    skip: let the decoder drop non-reference frames (that no other frame is predicted from)
    whose pts shows they cannot be the nearest to any target. The output is the same as with
    skip=False, only faster.
    """
    if fps <= 0 or max_side < 2:
        raise ValueError(f"fps must be > 0 and max_side >= 2 (got {fps}, {max_side})")
    interval = 1000.0 / fps
    first_k = max(0, math.ceil(start_ms / interval - 1e-9))
    if end_ms is not None and first_k * interval >= end_ms:
        return
    container, stream = open_video(path)
    with container:
        yield from _sample(container, stream, interval, first_k, end_ms, max_side, skip)


def _sample(container, stream, interval: float, first_k: int, end_ms: int | None,
            max_side: int, skip: bool) -> Iterator[Frame]:
    origin = origin_s(container)
    stream.codec_context.thread_type = "AUTO"   # frame and slice threads: all cores on one stream

    def wanted(lo: float, hi: float) -> bool:
        """Is there a target t with lo <= t <= hi?"""
        k = first_k if lo == -math.inf else max(first_k, math.ceil(lo / interval - 1e-9))
        t = k * interval
        return t <= hi + 1e-6 and (end_ms is None or t < end_ms)

    stats = {"bad_packets": 0, "read_errors": 0, "corrupt_frames": 0, "no_time": 0,
             "out_of_order_frames": 0, "absurd_times": 0}
    head, frames = _first_timed(container, stream, origin, first_k * interval,
                                wanted if skip else None, stats)
    if head is None:
        return
    try:
        yield from _nearest(itertools.chain((head,), frames), origin, stream, interval,
                            first_k, end_ms, max_side)
    finally:
        frames.close()
        log_stats(container.name, stats)


def _first_timed(container, stream, origin: Fraction, first_target: float, wanted, stats):
    """(first frame, the frames after it) from a seek before first_target; a seek that
    lands late (a sparse or imprecise index) is retried further back."""
    for margin in (*SEEK_MARGINS_MS, None):
        seek_ms = 0.0 if margin is None else first_target - margin
        rewind = margin != SEEK_MARGINS_MS[0]      # a retry: back to the start if need be
        frames = _timed_frames(container, stream, origin, seek_ms, rewind, wanted, stats)
        head = next(frames, None)
        # A seek must land at or before the first target, or the frame nearest to it may
        # have been passed over.
        if head is None or seek_ms <= 0 or head[1] <= first_target:
            return head, frames
        frames.close()
    return None, frames


def _nearest(timed, origin: Fraction, stream, interval: float, k: int, end_ms: int | None,
             max_side: int) -> Iterator[Frame]:
    sizes: dict = {}
    last_out = None
    prev = None            # (frame, t_ms, pts)
    gap = 0.0
    for frame, t, pts in timed:
        while True:
            target = k * interval
            if end_ms is not None and target >= end_ms:
                return
            if t < target:
                break
            # Every target at or before this frame is settled: the nearer of the two
            # frames around it; a tie goes to the earlier one, the one on screen then.
            chosen = prev if prev is not None and target - prev[1] <= t - target else \
                (frame, t, pts)
            if chosen[1] != last_out:
                last_out = chosen[1]
                yield _to_frame(chosen, origin, stream, sizes, max_side)
            k += 1
        if prev is not None:
            gap = t - prev[1]
        prev = (frame, t, pts)
    # Past the last frame: it stays on screen for its duration (if the file does not
    # say, as long as the gap before it).
    if prev is not None:
        f, t, _ = prev
        shown = float(f.duration * f.time_base * 1000) if f.duration and f.time_base else gap
        target = k * interval
        if target < t + shown and (end_ms is None or target < end_ms) and t != last_out:
            yield _to_frame(prev, origin, stream, sizes, max_side)


def _to_frame(item, origin: Fraction, stream, sizes: dict, max_side: int) -> Frame:
    frame, _, pts = item
    t_ms = round((pts * frame.time_base - origin) * 1000)
    key = (frame.width, frame.height)
    if key not in sizes:
        sizes[key] = output_size(frame.width, frame.height, stream.codec_context
                                 .sample_aspect_ratio, max_side)
    w, h = sizes[key]
    # swscale resizes and converts to RGB in one pass, inside FFmpeg; only chosen frames
    # pay for it.
    image = frame.to_ndarray(format="rgb24", width=w, height=h)
    rotation = int(frame.rotation or 0) % 360
    if rotation:
        # The display matrix turns the picture counter-clockwise by `rotation` degrees.
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return Frame(t_ms=t_ms, pts=pts, image=image)


def output_size(width: int, height: int, sar, max_side: int) -> tuple[int, int]:
    """Size to scale a decoded picture to (before rotation): square pixels, longest side at
    most max_side, even dimensions."""
    w = width * (float(sar) if sar and sar > 0 else 1.0)
    scale = min(1.0, max_side / max(w, height))
    return max(2, int(w * scale / 2 + 0.5) * 2), max(2, int(height * scale / 2 + 0.5) * 2)


def _timed_frames(container, stream, origin: Fraction, seek_ms: float, rewind: bool,
                  wanted: Callable[[float, float], bool] | None, stats: dict
                  ) -> Iterator[tuple]:
    """(frame, t_ms, pts) in presentation order from seek_ms on. With `wanted`, packets of
    frames that cannot be the nearest to a target are decoded with skip_frame=NONREF, so
    the decoder drops them if nothing depends on them (reference frames are always
    decoded: the pictures after them need them)."""
    if seek_ms > 0:
        seek(container, int((origin + Fraction(seek_ms) / 1000) / stream.time_base), stream)
    elif rewind:
        seek(container, 0, None)
    ms_per_tick = float(stream.time_base * 1000)
    origin_ms = float(origin * 1000)
    feed = _Feed(container, stream, origin, wanted, stats)
    pending: deque = deque()           # (packet, t_ms or None), decode order
    arrival: deque = deque()
    for packet in packets(container, stream, stats, origin_ms, VIDEO):
        if packet.size == 0:
            continue
        pt = packet.pts * ms_per_tick - origin_ms if packet.pts is not None else None
        pending.append((packet, pt))
        if pt is not None:
            insort(feed.known, pt)
            arrival.append(pt)
            if len(arrival) > 2 * LOOKAHEAD:
                feed.known.pop(bisect_left(feed.known, arrival.popleft()))
        if len(pending) > LOOKAHEAD:
            yield from feed.timed(feed.send(*pending.popleft()))
    while pending:
        yield from feed.timed(feed.send(*pending.popleft()))
    feed.ctx.skip_frame = "DEFAULT"
    try:
        yield from feed.timed(feed.ctx.decode(None))
    except av.error.FFmpegError:
        stats["bad_packets"] += 1
        _record(VIDEO, feed.last_t)


class _Feed:
    """The decoder of one video stream: packets in, with the decision to skip each, and
    frames out with their times, kept monotonic."""

    def __init__(self, container, stream, origin: Fraction, wanted, stats: dict):
        self.name, self.stream, self.origin, self.stats = container.name, stream, origin, stats
        self.ctx = stream.codec_context
        self.wanted = wanted
        self.known: list[float] = []   # sorted times of the packets around the pending ones
        self.last_t = None
        self.last_step = 1000.0 / float(stream.average_rate) if stream.average_rate else 40.0
        # pts of the packets given to the decoder lately: skipping relies on each frame
        # coming out with its packet's pts, which some files (AVI with B-frames) do not keep.
        self.sent: deque = deque(maxlen=4 * LOOKAHEAD)
        self.trusted = wanted is not None

    def send(self, packet, pt) -> list:
        if self.trusted:
            needed = pt is None
            if not needed:
                known = self.known
                i, j = bisect_left(known, pt), bisect_right(known, pt)
                lo = (known[i - 1] + pt) / 2 if i > 0 else -math.inf
                hi = (pt + known[j]) / 2 if j < len(known) else math.inf
                needed = self.wanted(lo, hi)
            self.ctx.skip_frame = "DEFAULT" if needed else "NONREF"
            self.sent.append(packet.pts)
        try:
            return self.ctx.decode(packet)
        except av.error.EOFError:
            return []
        except av.error.FFmpegError:
            self.stats["bad_packets"] += 1        # damaged data: conceal and go on
            _record(VIDEO, pt if pt is not None else self.last_t)
            return []

    def timed(self, decoded) -> Iterator[tuple]:
        for frame in decoded:
            if frame.time_base is None:      # frames drained at the end carry none
                frame.time_base = self.stream.time_base
            if self.trusted and frame.pts not in self.sent:
                self.trusted = False
                self.ctx.skip_frame = "DEFAULT"
                log.info("%s: frame times differ from packet times; decoding every frame",
                         self.name)
            item = self._time(frame)
            if item is None:
                continue
            t_ms = item[1]
            if frame.is_corrupt:
                self.stats["corrupt_frames"] += 1
                _record(VIDEO, t_ms)
            if self.last_t is not None:
                if t_ms <= self.last_t:  # a broken timestamp going backwards: keep time
                    self.stats["out_of_order_frames"] += 1     # monotonic, drop the frame
                    continue
                self.last_step = t_ms - self.last_t
            self.last_t = t_ms
            yield item

    def _time(self, frame) -> tuple | None:
        t = frame_time(frame)
        if t is not None:
            pts = frame.pts if frame.pts is not None else frame.dts
            t_ms = float((t - self.origin) * 1000)
            if not -MAX_MS <= t_ms <= MAX_MS:       # would not fit a stored time: broken, dropped
                self.stats["absurd_times"] += 1
                return None
            return frame, t_ms, pts
        # No time at all (raw streams): the previous frame's plus its duration.
        self.stats["no_time"] += 1
        if self.last_t is None:
            return None
        t_ms = self.last_t + self.last_step
        pts = round((Fraction(t_ms) / 1000 + self.origin) / self.stream.time_base)
        frame.time_base = self.stream.time_base
        return frame, t_ms, pts

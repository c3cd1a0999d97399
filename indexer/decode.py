"""Streaming decode with exact times: sampled frames and 16 kHz mono audio.

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

from core.types import Frame
from indexer.probe import audio_stream, frame_time, open_media, open_video, origin_s

log = logging.getLogger(__name__)

# Packets held back before decoding, so the packets around each one (in presentation order)
# are known when deciding whether its frame can be the nearest to a target. Far more than
# any codec's reordering depth (H.264 allows 16).
LOOKAHEAD = 32
# How far before the first wanted time to seek; a seek that lands late (a sparse or
# imprecise index) is retried further back.
SEEK_MARGINS_MS = (1000, 10_000, 60_000)
MAX_READ_ERRORS = 100


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
    first_target = first_k * interval
    ctx = stream.codec_context
    ctx.thread_type = "AUTO"      # frame and slice threads: all cores on one stream

    def wanted(lo: float, hi: float) -> bool:
        """Is there a target t with lo <= t <= hi?"""
        k = first_k if lo == -math.inf else max(first_k, math.ceil(lo / interval - 1e-9))
        t = k * interval
        return t <= hi + 1e-6 and (end_ms is None or t < end_ms)

    stats = {"bad_packets": 0, "read_errors": 0, "corrupt_frames": 0, "no_time": 0,
             "out_of_order_frames": 0}
    frames = None
    for margin in (*SEEK_MARGINS_MS, None):
        seek_ms = 0.0 if margin is None else first_target - margin
        rewind = margin != SEEK_MARGINS_MS[0]      # a retry: back to the start if need be
        frames = _timed_frames(container, stream, origin, seek_ms, rewind,
                               wanted if skip else None, stats)
        head = next(frames, None)
        # A seek must land at or before the first target, or the frame nearest to it may
        # have been passed over.
        if head is None or seek_ms <= 0 or head[1] <= first_target:
            break
        frames.close()
    if head is None:
        return

    def timed():
        yield head
        yield from frames

    k = first_k
    sizes: dict = {}
    last_out = None
    prev = None            # (frame, t_ms, pts)
    gap = 0.0
    try:
        for frame, t, pts in timed():
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
            shown = float(f.duration * f.time_base * 1000) if f.duration and f.time_base \
                else gap
            target = k * interval
            if target < t + shown and (end_ms is None or target < end_ms) and t != last_out:
                yield _to_frame(prev, origin, stream, sizes, max_side)
    finally:
        frames.close()
        if any(stats.values()):
            log.warning("%s: %s", container.name,
                        ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items() if v))


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


def _seek(container, offset: int, stream) -> None:
    # A file that cannot seek (a raw stream) is read from where it is: the caller checks
    # where decoding really starts.
    try:
        container.seek(offset, stream=stream, backward=True)
    except av.error.FFmpegError as e:
        log.info("%s: cannot seek (%s); reading on", container.name, e)


def _timed_frames(container, stream, origin: Fraction, seek_ms: float, rewind: bool,
                  wanted: Callable[[float, float], bool] | None, stats: dict
                  ) -> Iterator[tuple]:
    """(frame, t_ms, pts) in presentation order from seek_ms on. With `wanted`, packets of
    frames that cannot be the nearest to a target are decoded with skip_frame=NONREF, so
    the decoder drops them if nothing depends on them (reference frames are always
    decoded: the pictures after them need them)."""
    ctx = stream.codec_context
    if seek_ms > 0:
        _seek(container, int((origin + Fraction(seek_ms) / 1000) / stream.time_base), stream)
    elif rewind:
        _seek(container, 0, None)
    ms_per_tick = float(stream.time_base * 1000)
    origin_ms = float(origin * 1000)
    pending: deque = deque()           # (packet, t_ms or None), decode order
    known: list[float] = []            # sorted times of the packets around the pending ones
    arrival: deque = deque()
    last_t = None
    last_step = 1000.0 / float(stream.average_rate) if stream.average_rate else 40.0
    # pts of the packets given to the decoder lately: skipping relies on each frame coming
    # out with its packet's pts, which some files (AVI with B-frames) do not keep.
    sent: deque = deque(maxlen=4 * LOOKAHEAD)
    trusted = wanted is not None

    def send(packet, pt):
        nonlocal trusted
        if trusted:
            needed = pt is None
            if not needed:
                i, j = bisect_left(known, pt), bisect_right(known, pt)
                lo = (known[i - 1] + pt) / 2 if i > 0 else -math.inf
                hi = (pt + known[j]) / 2 if j < len(known) else math.inf
                needed = wanted(lo, hi)
            ctx.skip_frame = "DEFAULT" if needed else "NONREF"
            sent.append(packet.pts)
        try:
            return ctx.decode(packet)
        except av.error.EOFError:
            return []
        except av.error.FFmpegError:
            stats["bad_packets"] += 1        # damaged data: conceal and go on
            return []

    def timed(decoded):
        nonlocal last_t, last_step, trusted
        for frame in decoded:
            if frame.time_base is None:      # frames drained at the end carry none
                frame.time_base = stream.time_base
            if trusted and frame.pts not in sent:
                trusted = False
                ctx.skip_frame = "DEFAULT"
                log.info("%s: frame times differ from packet times; decoding every frame",
                         container.name)
            t = frame_time(frame)
            if t is not None:
                pts = frame.pts if frame.pts is not None else frame.dts
                t_ms = float((t - origin) * 1000)
            else:
                # No time at all (raw streams): the previous frame's plus its duration.
                stats["no_time"] += 1
                if last_t is None:
                    continue
                t_ms = last_t + last_step
                pts = round((Fraction(t_ms) / 1000 + origin) / stream.time_base)
                frame.time_base = stream.time_base
            if frame.is_corrupt:
                stats["corrupt_frames"] += 1
            if last_t is not None:
                if t_ms <= last_t:      # a broken timestamp going backwards: keep time
                    stats["out_of_order_frames"] += 1          # monotonic, drop the frame
                    continue
                last_step = t_ms - last_t
            last_t = t_ms
            yield frame, t_ms, pts

    for packet in _packets(container, stream, stats):
        if packet.size == 0:
            continue
        pt = packet.pts * ms_per_tick - origin_ms if packet.pts is not None else None
        pending.append((packet, pt))
        if pt is not None:
            insort(known, pt)
            arrival.append(pt)
            if len(arrival) > 2 * LOOKAHEAD:
                known.pop(bisect_left(known, arrival.popleft()))
        if len(pending) > LOOKAHEAD:
            yield from timed(send(*pending.popleft()))
    while pending:
        yield from timed(send(*pending.popleft()))
    ctx.skip_frame = "DEFAULT"
    try:
        yield from timed(ctx.decode(None))
    except av.error.FFmpegError:
        stats["bad_packets"] += 1


def _packets(container, stream, stats: dict) -> Iterator:
    """Demuxed packets of one stream. A damaged stretch makes the demuxer fail once; reading
    resumes after it. A truncated file simply ends."""
    while True:
        try:
            yield from container.demux(stream)
            return
        except av.error.EOFError:
            return
        except av.error.FFmpegError as e:
            stats["read_errors"] += 1
            if stats["read_errors"] > MAX_READ_ERRORS:
                log.warning("%s: gave up reading after %d errors: %s", container.name,
                            MAX_READ_ERRORS, e)
                return


def iter_audio(path: Path, *, start_ms: int = 0, end_ms: int | None = None,
               sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """Mono float32 blocks at sample_rate which, concatenated, start at start_ms: sample i is
    at start_ms + i / sample_rate, placed by the audio frames' own pts (gaps in the file's
    sound are zero-filled, leading samples before start_ms dropped). Ends at end_ms, or the
    end of the sound. Nothing when the file has no audio stream."""
    container = open_media(path)
    with container:
        stream = audio_stream(container)
        if stream is None:
            return
        origin = origin_s(container)
        total = None
        if end_ms is not None:
            end = Fraction(end_ms, 1000)
            if container.duration:
                end = min(end, Fraction(container.duration, av.time_base))
            total = max(0, round((end - Fraction(start_ms, 1000)) * sample_rate))
        yield from _audio_blocks(container, stream, origin, start_ms, total, sample_rate)


def decode_audio(path: Path, *, start_ms: int = 0, end_ms: int | None = None,
                 sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio at sample_rate whose sample 0 is at start_ms (see iter_audio);
    empty when the file has no audio stream."""
    blocks = list(iter_audio(path, start_ms=start_ms, end_ms=end_ms, sample_rate=sample_rate))
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


def _audio_blocks(container, stream, origin: Fraction, start_ms: int, total: int | None,
                  sample_rate: int) -> Iterator[np.ndarray]:
    # Sample index (at sample_rate, from the container's zero) of the first wanted sample.
    base = round((origin + Fraction(start_ms, 1000)) * sample_rate)
    tol = max(1, sample_rate // 1000)      # 1 ms: pts rounding is not a gap
    stats = {"bad_packets": 0, "read_errors": 0}
    frames = None
    for margin in (*SEEK_MARGINS_MS, None):
        seek_ms = 0 if margin is None else start_ms - margin
        if seek_ms > 0:
            # No stream: the default (video) one, so Matroska uses its cues.
            _seek(container, int((origin + Fraction(seek_ms, 1000)) * av.time_base), None)
        elif margin != SEEK_MARGINS_MS[0]:
            _seek(container, 0, None)
        frames = _audio_frames(container, stream, stats)
        head = next(frames, None)
        t = frame_time(head) if head is not None else None
        if head is None or seek_ms <= 0 or t is None or \
                round(t * sample_rate) - base <= tol:
            break
        frames.close()

    def resampled():
        if head is None:
            return
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for f in itertools.chain((head,), frames):
            try:
                out = resampler.resample(f)
            except ValueError:          # the stream changed rate or layout: start afresh
                yield from resampler.resample(None)
                resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
                out = resampler.resample(f)
            yield from out
        yield from resampler.resample(None)

    cursor = 0                           # samples produced so far
    try:
        for out in resampled():
            data = out.to_ndarray().reshape(-1)
            # The resampler carries the input pts over to sample_rate units.
            at = out.pts - base if out.pts is not None else cursor
            if abs(at - cursor) <= tol:
                at = cursor
            if at > cursor:              # a gap in the sound: silence
                gap = at - cursor if total is None else min(at - cursor, total - cursor)
                yield np.zeros(gap, np.float32)
                cursor += gap
            elif at < cursor:            # before start_ms, or overlapping what we have
                data = data[cursor - at:]
            if total is not None:
                data = data[:total - cursor]
            if len(data):
                yield data.astype(np.float32, copy=False)
                cursor += len(data)
            if total is not None and cursor >= total:
                return
        if total is not None and cursor < total:
            yield np.zeros(total - cursor, np.float32)
    finally:
        if frames is not None:
            frames.close()
        if any(stats.values()):
            log.warning("%s audio: %s", container.name,
                        ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items() if v))


def _audio_frames(container, stream, stats: dict) -> Iterator:
    ctx = stream.codec_context
    for packet in _packets(container, stream, stats):
        try:
            for frame in ctx.decode(packet if packet.size else None):
                if frame.time_base is None:
                    frame.time_base = stream.time_base
                yield frame
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            stats["bad_packets"] += 1

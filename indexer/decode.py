"""Streaming decode with exact times: sampled frames and 16 kHz mono audio.

A frame's time is its own pts * time_base (minus the container start), never an index times
a nominal rate, so variable frame rate, B-frames and non-zero start pts come out right.
Nothing is kept beyond the current frame, so memory does not grow with the video's length.
"""

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from core.types import Frame
from indexer.probe import open_video, origin_s

log = logging.getLogger(__name__)


def _frame_time(frame) -> Fraction | None:
    pts = frame.pts if frame.pts is not None else frame.dts
    return None if pts is None else pts * frame.time_base


def _decoded(container, stream) -> Iterator:
    """Frames in presentation order; corrupt packets are skipped, a truncated file ends."""
    bad = 0
    try:
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                bad += 1
    except av.error.FFmpegError as e:   # cut-off data: keep what was decoded
        log.warning("%s: stopped reading at a damaged part: %s", container.name, e)
    if bad:
        log.warning("%s: skipped %d corrupt packets", container.name, bad)


def _target_size(frame, max_side: int, rotation: int) -> tuple[int, int]:
    """Decoded (pre-rotation) size whose longest side is max_side, even dimensions."""
    sar = frame.sample_aspect_ratio if hasattr(frame, "sample_aspect_ratio") else None
    w = frame.width * (float(sar) if sar else 1.0)
    h = frame.height
    scale = min(1.0, max_side / max(w, h))
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def _to_image(frame, size: tuple[int, int]) -> np.ndarray:
    # swscale does the resize and colour conversion in one pass, inside FFmpeg.
    image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    rotation = int(frame.rotation or 0) % 360
    if rotation:
        # The display matrix turns the picture counter-clockwise by `rotation` degrees.
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


def sample_frames(path: Path, *, start_ms: int = 0, end_ms: int | None = None,
                  fps: float = 1.0, max_side: int = 448, fast: bool = True
                  ) -> Iterator[Frame]:
    """For each target time on the grid k * (1000 / fps) ms in [start_ms, end_ms), the decoded
    frame nearest to it, with that frame's own time. The grid is absolute, so chunks cut at
    any boundary sample the same instants as one pass over the whole video.

    fast: let the decoder drop non-reference frames (B-frames nothing else depends on); the
    nearest kept frame is then at most a frame or two from the target."""
    interval = 1000.0 / fps
    k = int(np.ceil(start_ms / interval - 1e-9))
    container, stream = open_video(path)
    with container:
        origin = origin_s(container)
        ctx = stream.codec_context
        ctx.thread_type = "AUTO"
        if fast:
            ctx.skip_frame = "NONREF"
        if start_ms > 0:
            # Land on the keyframe before the first target (a second early for safety).
            seek_s = origin + Fraction(max(0, start_ms - 1000), 1000)
            container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
        size = None
        prev, prev_t = None, None
        last_yielded = None

        def emit(frame, t_ms):
            nonlocal size, last_yielded
            if last_yielded == frame.pts:
                return None
            last_yielded = frame.pts
            if size is None:
                size = _target_size(frame, max_side, 0)
            return Frame(t_ms=t_ms, pts=frame.pts, image=_to_image(frame, size))

        for frame in _decoded(container, stream):
            t = _frame_time(frame)
            if t is None:
                continue
            t_ms = float((t - origin) * 1000)
            target = k * interval
            if end_ms is not None and target >= end_ms:
                return
            # Every target at or before this frame is settled: nearest of prev and this.
            while t_ms >= target and (end_ms is None or target < end_ms):
                if prev is not None and target - prev_t < t_ms - target:
                    out = emit(prev, round(prev_t))
                else:
                    out = emit(frame, round(t_ms))
                if out is not None:
                    yield out
                k += 1
                target = k * interval
            prev, prev_t = frame, t_ms
        # A target after the last frame's time but while it is still on screen gets it.
        target = k * interval
        shown_ms = float(prev.duration * prev.time_base * 1000) if prev is not None and \
            prev.duration else 0.0
        if prev is not None and target < prev_t + shown_ms and \
                (end_ms is None or target < end_ms):
            out = emit(prev, round(prev_t))
            if out is not None:
                yield out


def decode_audio(path: Path, *, start_ms: int = 0, end_ms: int | None = None,
                 sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 audio at sample_rate whose sample 0 is at start_ms (zero-filled where the
    file has no sound); empty when the file has no audio stream."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError:
        return np.zeros(0, np.float32)
    with container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        stream = container.streams.audio[0]
        origin = origin_s(container)
        if start_ms > 0:
            seek_s = origin + Fraction(max(0, start_ms - 1000), 1000)
            container.seek(int(seek_s / stream.time_base), stream=stream, backward=True)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces: list[tuple[int, np.ndarray]] = []   # (sample offset from start_ms, samples)
        cursor = None
        bad = 0
        limit = None if end_ms is None else round((end_ms - start_ms) * sample_rate / 1000)
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    bad += 1
                    continue
                for frame in frames:
                    t = _frame_time(frame)
                    if t is not None:
                        at = round((float(t - origin) * 1000 - start_ms) * sample_rate / 1000)
                        # Follow the file's clock only across a real gap or jump; otherwise
                        # keep samples contiguous (the resampler's own latency is tiny).
                        if cursor is None or abs(at - cursor) > sample_rate // 10:
                            cursor = at
                    for out in resampler.resample(frame):
                        data = out.to_ndarray().reshape(-1)
                        pieces.append((cursor, data))
                        cursor += len(data)
                if limit is not None and cursor is not None and cursor >= limit:
                    break
        except av.error.FFmpegError as e:
            log.warning("%s: audio stopped at a damaged part: %s", container.name, e)
        if bad:
            log.warning("%s: skipped %d corrupt audio packets", container.name, bad)
    if not pieces:
        return np.zeros(0 if limit is None else max(limit, 0), np.float32)
    total = limit if limit is not None else max(o + len(d) for o, d in pieces)
    audio = np.zeros(max(total, 0), np.float32)
    for offset, data in pieces:
        lo, hi = max(offset, 0), min(offset + len(data), total)
        if hi > lo:
            audio[lo:hi] = data[lo - offset:hi - offset]
    return audio

"""Streaming audio decode: 16 kHz mono float32 placed by the audio frames' own pts."""

import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from indexer.damage import AUDIO
from indexer.damage import record as _record
from indexer.demux import SEEK_MARGINS_MS, log_stats, packets, seek
from indexer.probe import audio_stream, frame_time, open_media, origin_s

# A jump in the sound's timestamps longer than this is a broken timestamp, not silence to
# fill with zeros (30 days of zeros would not fit in memory).
MAX_AUDIO_GAP_S = 3600


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
    stats = {"bad_packets": 0, "read_errors": 0, "absurd_gaps": 0}
    head, frames = _first_audio(container, stream, origin, start_ms, sample_rate, base, tol,
                                stats)
    try:
        if head is not None:
            yield from _placed(_resampled(itertools.chain((head,), frames), sample_rate),
                               base, tol, total, sample_rate, stats)
        elif total is not None:
            yield np.zeros(total, np.float32)
    finally:
        if frames is not None:
            frames.close()
        log_stats(f"{container.name} audio", stats)


def _first_audio(container, stream, origin: Fraction, start_ms: int, sample_rate: int,
                 base: int, tol: int, stats: dict):
    """(first audio frame, the frames after it) from a seek before start_ms, retried further
    back when it lands late."""
    frames = None
    for margin in (*SEEK_MARGINS_MS, None):
        seek_ms = 0 if margin is None else start_ms - margin
        if seek_ms > 0:
            # No stream: the default (video) one, so Matroska uses its cues.
            seek(container, int((origin + Fraction(seek_ms, 1000)) * av.time_base), None)
        elif margin != SEEK_MARGINS_MS[0]:
            seek(container, 0, None)
        frames = _audio_frames(container, stream, stats, float(origin * 1000))
        head = next(frames, None)
        t = frame_time(head) if head is not None else None
        if head is None or seek_ms <= 0 or t is None or \
                round(t * sample_rate) - base <= tol:
            return head, frames
        frames.close()
    return None, frames


def _resampled(frames, sample_rate: int) -> Iterator:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    for f in frames:
        try:
            out = resampler.resample(f)
        except ValueError:          # the stream changed rate or layout: start afresh
            yield from resampler.resample(None)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            out = resampler.resample(f)
        yield from out
    yield from resampler.resample(None)


def _placed(resampled, base: int, tol: int, total: int | None, sample_rate: int,
            stats: dict) -> Iterator[np.ndarray]:
    """Blocks placed by their pts from sample `base` on: gaps zero-filled, overlaps and
    what comes before base dropped, cut at total samples."""
    cursor = 0                           # samples produced so far
    for out in resampled:
        data = out.to_ndarray().reshape(-1)
        # The resampler carries the input pts over to sample_rate units.
        at = out.pts - base if out.pts is not None else cursor
        if abs(at - cursor) <= tol:
            at = cursor
        if at > cursor:              # a gap in the sound: silence
            gap = at - cursor if total is None else min(at - cursor, total - cursor)
            if gap > MAX_AUDIO_GAP_S * sample_rate:
                stats["absurd_gaps"] += 1     # a broken timestamp, not silence: stop here
                break
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


def _audio_frames(container, stream, stats: dict, origin_ms: float) -> Iterator:
    ctx = stream.codec_context
    ms_per_tick = float(stream.time_base * 1000) if stream.time_base else 0.0
    for packet in packets(container, stream, stats, origin_ms, AUDIO):
        try:
            for frame in ctx.decode(packet if packet.size else None):
                if frame.time_base is None:
                    frame.time_base = stream.time_base
                yield frame
        except av.error.EOFError:
            return
        except av.error.FFmpegError:
            stats["bad_packets"] += 1
            _record(AUDIO, packet.pts * ms_per_tick - origin_ms if packet.pts is not None
                    else None)

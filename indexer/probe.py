"""What a file is: duration, size, codecs, rotation, and whether it can be indexed at all.
Every way a file can be unusable ends here as BadVideo with a reason a user can act on."""

import logging
from fractions import Fraction
from pathlib import Path

import av

from core.config import get_settings
from core.errors import BadVideo
from core.types import VideoInfo

log = logging.getLogger(__name__)


def origin_s(container) -> Fraction:
    """Time zero of the file as a player shows it: the container's start time."""
    start = container.start_time
    return Fraction(start, av.time_base) if start is not None else Fraction(0)


def open_video(path: Path):
    """Open a file and return (container, video stream), or raise BadVideo."""
    path = Path(path)
    if not path.is_file():
        raise BadVideo(f"{path.name}: file not found")
    if path.stat().st_size == 0:
        raise BadVideo(f"{path.name}: the file is empty (0 bytes); upload it again")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        hint = ("the file is truncated (its index is missing); upload the complete file"
                if "moov atom not found" in str(e) else
                "it is not a video file FFmpeg can read")
        raise BadVideo(f"{path.name}: {hint} ({e.strerror or e})") from None
    if not container.streams.video:
        container.close()
        raise BadVideo(f"{path.name}: the file has no video stream (audio-only or data file)")
    return container, container.streams.video[0]


def probe(path: Path) -> VideoInfo:
    settings = get_settings()
    path = Path(path)
    container, stream = open_video(path)
    with container:
        ctx = stream.codec_context
        name = ctx.name if ctx is not None else None
        if not _has_decoder(name):
            raise BadVideo(f"{path.name}: unsupported video codec "
                           f"{name or 'unknown'}; re-encode it "
                           "to H.264, VP9 or AV1")
        w, h = ctx.width, ctx.height
        limits = settings.decode
        if w <= 0 or h <= 0 or w * h > limits.max_pixels or max(w, h) > limits.max_dimension:
            raise BadVideo(f"{path.name}: absurd resolution {w}x{h}; chronoscope accepts up "
                           f"to {limits.max_dimension} px a side and {limits.max_pixels} "
                           "pixels per frame")
        _check_complete(path, stream)
        first = _first_frame(path, container, stream)
        origin = origin_s(container)
        duration_ms = _duration_ms(container, stream, origin)
        start_ms = round((first.time - origin) * 1000) if first.time is not None else 0
        rotation = int(first.rotation or 0) % 360
        if duration_ms <= 0:
            raise BadVideo(f"{path.name}: the video has no duration (no frames with times)")
        if rotation in (90, 270):
            w, h = h, w
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            duration_ms=duration_ms, width=w, height=h, rotation=rotation,
            fps=float(stream.average_rate) if stream.average_rate else None,
            video_codec=name, container=container.format.name,
            has_audio=audio is not None and audio.codec_context is not None,
            audio_codec=audio.codec_context.name if audio is not None and audio.codec_context
            else None,
            start_ms=start_ms)


def _has_decoder(name: str | None) -> bool:
    try:
        return bool(name) and av.Codec(name, "r") is not None
    except (ValueError, av.error.FFmpegError):
        return False


def _check_complete(path: Path, stream) -> None:
    """An indexed container (MP4, MKV with cues) whose index points past the end of the
    file was cut short: refuse it rather than index a silent fraction of it."""
    entries = stream.index_entries
    if entries is None or len(entries) == 0:
        return
    last = entries[len(entries) - 1]
    if last.pos + last.size > path.stat().st_size:
        raise BadVideo(f"{path.name}: the file is truncated (it ends before the video it "
                       "describes); upload the complete file")


def _first_frame(path: Path, container, stream):
    """Decode the first picture: proves the codec works on this file."""
    errors = 0
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.error.InvalidDataError:
                errors += 1
                if errors > 50:
                    break
        for frame in stream.codec_context.decode(None):   # flush: very short files
            return frame
    except av.error.FFmpegError as e:
        raise BadVideo(f"{path.name}: the video stream cannot be decoded ({e})") from None
    raise BadVideo(f"{path.name}: no picture could be decoded from the video stream; the file "
                   "is corrupt or uses an unsupported codec")


def _duration_ms(container, stream, origin: Fraction) -> int:
    """From the start to the end of the last video frame. Declared durations are only a
    hint (Matroska counts from zero whatever the start, some AVIs declare none), so the
    tail of the file is read: one seek and a few packets."""
    declared = Fraction(container.duration or 0, av.time_base)
    if not declared and stream.duration and stream.time_base:
        declared = stream.duration * stream.time_base
    end = Fraction(0)
    try:
        if declared:
            target = origin + declared
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        else:
            container.seek(0)
        for packet in container.demux(stream):
            if packet.pts is not None:
                end = max(end, (packet.pts + (packet.duration or 0)) * packet.time_base)
    except av.error.FFmpegError:
        pass
    if end > origin:
        return round((end - origin) * 1000)
    return round(declared * 1000)

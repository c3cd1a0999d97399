"""What a file is: duration, size, codecs, rotation, and whether it can be indexed at all.
Every way a file can be unusable ends here as BadVideo with a reason a user can act on."""

import logging
import stat
from fractions import Fraction
from pathlib import Path

import av

from core.config import DecodeSettings
from core.errors import BadVideo
from core.types import VideoInfo
from indexer.span import Span, end_of_data, gap_notes, scan

log = logging.getLogger(__name__)

REENCODE = "re-encode it to H.264, VP9 or AV1 (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)"


def origin_s(container) -> Fraction:
    """Time zero of the file as a player shows it: the container's start time, seconds."""
    start = container.start_time
    return Fraction(start, av.time_base) if start is not None else Fraction(0)


def open_media(path: Path):
    """Open any media file, or raise BadVideo saying why it cannot be read."""
    path = Path(path)
    check_file(path)
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        detail = e.strerror or str(e)
        if isinstance(e, av.error.InvalidDataError) and _looks_like_html(path):
            hint = ("it is a web page (HTML), not a video; the download probably saved an "
                    "error or login page: download the video itself")
        elif isinstance(e, av.error.InvalidDataError) and _looks_like_mp4(path):
            hint = ("the file is truncated: an MP4/MOV whose index (moov box) is missing, "
                    "usually an interrupted upload or recording; upload the complete file")
        elif isinstance(e, av.error.InvalidDataError):
            hint = "it is not a video file FFmpeg can read (wrong or damaged contents)"
        else:
            hint = "it could not be opened"
        raise BadVideo(f"{path.name}: {hint} ({detail})") from None


def check_file(path: Path) -> None:
    """A path a user gave must be a regular, non-empty file: anything else is named for what
    it is (a directory, a device such as /dev/zero, a pipe), never read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadVideo(f"{path.name}: file not found") from None
    except OSError as e:
        raise BadVideo(f"{path.name}: the file cannot be read ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise BadVideo(f"{path.name}: is a directory, not a video file; upload a file")
    if not stat.S_ISREG(st.st_mode):
        kind = "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else \
            "a pipe" if stat.S_ISFIFO(st.st_mode) else "a socket or special file"
        raise BadVideo(f"{path.name}: is {kind}, not a regular file; upload a video file")
    if st.st_size == 0:
        raise BadVideo(f"{path.name}: the file is empty (0 bytes); upload it again")


def _looks_like_html(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<!--")) or b"<html" in head


def _looks_like_mp4(path: Path) -> bool:
    # An MP4/MOV starts with an ftyp box; if FFmpeg still cannot open it, what is missing
    # is the index that recorders and uploads write last.
    with open(path, "rb") as f:
        head = f.read(12)
    return head[4:8] in (b"ftyp", b"wide", b"mdat", b"free")


def video_stream(container):
    """The main picture stream: cover art (attached pictures) does not count."""
    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]
    return streams[0] if streams else None


def audio_stream(container):
    """The first audio stream FFmpeg can decode, if any."""
    streams = [s for s in container.streams.audio
               if s.codec_context is not None and _has_decoder(s.codec_context.name)]
    return streams[0] if streams else None


def open_video(path: Path):
    """Open a file and return (container, video stream), or raise BadVideo."""
    path = Path(path)
    container = open_media(path)
    stream = video_stream(container)
    if stream is None:
        kinds = sorted({"cover art" if s.type == "video" else s.type
                        for s in container.streams}) or ["nothing"]
        container.close()
        raise BadVideo(f"{path.name}: the file has no video stream (it holds "
                       f"{', '.join(kinds)}); upload a video file")
    return container, stream


def probe(path: Path, limits: DecodeSettings | None = None) -> VideoInfo:
    """What the file holds; `limits` (settings.decode) bound the resolution accepted."""
    path = Path(path)
    container, stream = open_video(path)
    try:
        with container:
            return _probe(path, container, stream, limits or DecodeSettings())
    except av.error.FFmpegError as e:    # anything FFmpeg did not like that slipped through
        raise BadVideo(f"{path.name}: the file could not be read ({e}); it may be damaged, "
                       "try uploading it again or " + REENCODE) from None


def _probe(path: Path, container, stream, limits: DecodeSettings) -> VideoInfo:
    ctx = stream.codec_context
    if ctx is None or not _has_decoder(ctx.name):
        tag = _fourcc(stream)
        raise BadVideo(f"{path.name}: unsupported video codec "
                       f"{(ctx.name if ctx is not None else None) or tag or 'unknown'}; "
                       + REENCODE)
    _check_size(path, ctx.width, ctx.height, limits, declared=True)
    _check_complete(path, stream)
    first = _first_frame(path, container, stream)
    _check_size(path, first.width, first.height, limits, declared=False)
    origin = origin_s(container)
    span = scan(path.name, container, stream, origin, limits)
    _check_still(path, container, span)
    if span.cut_s is None:
        # A raw elementary stream (.h264, .hevc) has no timestamps: its times could only be
        # guessed from a nominal rate, and chronoscope's times are data, not guesses.
        raise BadVideo(f"{path.name}: the video has no timestamps, so its duration and times "
                       "are unknown (a raw stream?); put it in a container at its real frame "
                       "rate, e.g. ffmpeg -r 30 -i IN -c copy OUT.mp4")
    duration_ms = _duration_ms(path, container, stream, origin, span, limits)
    t = frame_time(first)
    start_ms = max(0, round((t - origin) * 1000)) if t is not None else 0
    rotation = int(first.rotation or 0) % 360
    w, h = display_size(first.width, first.height, ctx.sample_aspect_ratio)
    if rotation in (90, 270):
        w, h = h, w
    audio = audio_stream(container)
    return VideoInfo(
        duration_ms=duration_ms, width=w, height=h, rotation=rotation,
        fps=float(stream.average_rate) if stream.average_rate else None,
        video_codec=ctx.name, container=container.format.name,
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        start_ms=start_ms, notes=gap_notes(span, duration_ms, limits))


def frame_time(frame) -> Fraction | None:
    """A decoded frame's presentation time in seconds: its pts, or the packet dts when the
    decoder could not carry a pts through (what FFmpeg's best_effort_timestamp falls back
    to; PyAV does not expose that field)."""
    ts = frame.pts if frame.pts is not None else frame.dts
    return None if ts is None or frame.time_base is None else ts * frame.time_base


def display_size(width: int, height: int, sar) -> tuple[int, int]:
    """Picture size as shown: non-square pixels (anamorphic DVD, DV) widen or narrow it."""
    if sar and sar > 0 and sar != 1:
        return max(2, round(width * sar / 2) * 2), height
    return width, height


def _has_decoder(name: str | None) -> bool:
    try:
        return bool(name) and av.Codec(name, "r") is not None
    except (ValueError, av.error.FFmpegError):
        return False


def _fourcc(stream) -> str | None:
    try:
        tag = stream.codec_context.codec_tag if stream.codec_context else None
    except Exception:  # noqa: BLE001 - only a nicer message is at stake
        tag = None
    return tag.strip() if isinstance(tag, str) and tag.strip("\x00 ") else None


def _check_size(path: Path, w: int, h: int, limits: DecodeSettings, *, declared: bool) -> None:
    if declared and (w, h) == (0, 0):
        return          # some containers learn the size only from the first frame
    if w <= 0 or h <= 0 or w * h > limits.max_pixels or max(w, h) > limits.max_dimension:
        raise BadVideo(f"{path.name}: absurd resolution {w}x{h}; chronoscope accepts up to "
                       f"{limits.max_dimension} px a side and {limits.max_pixels} pixels per "
                       "frame (8K); the header may be damaged, or scale the video down")


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
    last_error = None
    try:
        for packet in container.demux(stream):
            try:
                for frame in packet.decode():
                    return frame
            except av.error.InvalidDataError as e:
                errors, last_error = errors + 1, e
                if errors > 50:
                    break
    except av.error.FFmpegError as e:
        last_error = e
    detail = f" ({last_error})" if last_error is not None else ""
    raise BadVideo(f"{path.name}: no picture could be decoded from the video stream{detail}; "
                   "the file is corrupt or its codec is unsupported, " + REENCODE)


def _check_still(path: Path, container, span: Span) -> None:
    """A picture is not a video: one frame and no sound would be indexed as a 0.04 s clip.
    A single-image format (image2, png_pipe...) is one whatever its packets say; those
    cannot seek back, so the scan may not have seen its one packet."""
    fmt = container.format.name
    single = fmt in ("image2", "image2pipe") or fmt.endswith("_pipe")
    if not single and (span.video_packets != 1 or span.audio_packets):
        return
    codec = container.streams.video[0].codec_context.name if container.streams.video else None
    if single or fmt in ("gif", "apng", "webp") or \
            codec in ("png", "mjpeg", "gif", "webp", "bmp", "tiff", "apng"):
        what = f"a still image ({(codec or fmt).upper()})"
    else:
        what = "a single frame (a still picture)"
    raise BadVideo(f"{path.name}: the file is {what}, not a video; chronoscope indexes "
                   "video files")


def _duration_ms(path: Path, container, stream, origin: Fraction, span: Span,
                 limits: DecodeSettings) -> int:
    """From time zero to the end of the last video frame or audio sample of the span,
    whichever is later (speech may go on after the picture ends). A declared duration is
    only a hint: some files declare none, a cut file declares more than it has, a hostile
    one declares anything."""
    declared = Fraction(container.duration or 0, av.time_base)
    if not declared and stream.duration and stream.time_base:
        declared = stream.duration * stream.time_base
    # Matroska declares where the last frame ends, from 0 whatever the start; the others
    # the span from the start.
    matroska = "matroska" in container.format.name
    declared_end = declared if matroska else origin + declared
    end = end_of_data(container, stream, origin, span.cut_s, limits.max_gap_s, declared_end)
    if end is None or end <= origin:
        return 0
    # Matroska writes its duration when the recording is finished: a file that holds less
    # than it declares was cut short (an interrupted upload or copy).
    data_end = max(float(end - origin), span.data_end_s)
    if matroska and declared and float(declared_end - origin) - data_end > \
            max(2, float(declared) / 50):
        raise BadVideo(f"{path.name}: the file is truncated (it declares "
                       f"{float(declared_end - origin):.1f} s but its data ends at "
                       f"{data_end:.1f} s); upload the complete file")
    return round((end - origin) * 1000)

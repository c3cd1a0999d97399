"""A browser-playable preview for files a browser cannot play, made once at index time.

Browsers play MP4 (H.264, AV1, VP9), WebM (VP8, VP9, AV1) and Ogg (VP8, VP9, AV1) pictures
in 4:2:0, with AAC, Opus, Vorbis or MP3 sound (or none). Anything else (AVI, MPEG-4 part 2,
HEVC, Matroska with H.264, 10-bit...) gets a small H.264/AAC MP4 beside the media, at most
`preview.max_height` lines, with the original's frame times, so a moment plays at the same
second in either. The API serves it as the video's `playback_url`.
"""

import logging
from fractions import Fraction
from pathlib import Path

from core.config import Settings
from core.errors import BadVideo, NotFound
from indexer import transcode
from indexer.probe import audio_stream, open_media, video_stream
from store import queries
from store.db import session_scope

log = logging.getLogger(__name__)

VIDEO_CODECS = {"mp4": {"h264", "av1", "vp9"}, "webm": {"vp8", "vp9", "av1"},
                "ogg": {"vp8", "vp9", "av1"}}
AUDIO_CODECS = {"mp4": {"aac", "mp3", "opus"}, "webm": {"vorbis", "opus"},
                "ogg": {"vorbis", "opus"}}
PIXEL_FORMATS = {"yuv420p", "yuvj420p", None}
NAMES = {"mp4": "MP4", "webm": "Matroska/WebM", "ogg": "Ogg"}
NOTE = ("the original does not play in web browsers ({why}); its playback_url is an H.264 "
        "preview of at most {lines} lines")


def preview_path(media_dir: Path, video_id: str) -> Path:
    return Path(media_dir) / "previews" / f"{video_id}.mp4"


def _family(container: str) -> str | None:
    names = set(container.lower().split(","))
    return "mp4" if "mp4" in names or "mov" in names else "webm" if "webm" in names else \
        "ogg" if "ogg" in names else None


def unplayable(path: Path) -> str | None:
    """Why a browser cannot play the file (None: it can), from its container and codecs."""
    with open_media(path) as container:
        family = _family(container.format.name)
        picture, sound = video_stream(container), audio_stream(container)
        codec = picture.codec_context.name if picture is not None else None
        pix_fmt = picture.codec_context.pix_fmt if picture is not None else None
        audio = sound.codec_context.name if sound is not None else None
        if family is None:
            return f"{container.format.name.split(',')[0]} container"
    if codec not in VIDEO_CODECS[family]:
        return f"{codec} video in {NAMES[family]}"
    if audio is not None and audio not in AUDIO_CODECS[family]:
        return f"{audio} sound in {NAMES[family]}"
    if pix_fmt not in PIXEL_FORMATS:
        return f"{pix_fmt} pictures"
    return None


def make(settings: Settings, video_id: str) -> None:
    """Make the video's preview if its file needs one and it has none yet (a finalize that
    runs again keeps it). A file that cannot be converted keeps only its original and a
    note says why; the video is indexed all the same."""
    if not settings.preview.enabled:
        return
    with session_scope(settings) as s:
        video = queries.get_video(s, video_id)
        path, duration_ms = Path(video.path), video.duration_ms
    dest = preview_path(settings.media_dir, video_id)
    try:
        why = unplayable(path)
        if why is None:
            return
        note = NOTE.format(why=why, lines=settings.preview.max_height)
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            p, origin = settings.preview, transcode.origin(path)
            # Only the span that was indexed: a hostile timestamp far beyond it is not
            # encoded either.
            end = None if duration_ms is None else origin + Fraction(duration_ms, 1000)
            transcode.write_mp4(path, dest, transcode.Cut(zero_s=origin, end_s=end),
                                transcode.Encoding(p.max_height, p.preset, p.crf),
                                how=transcode.ENCODE)
    except BadVideo as e:
        note = f"no browser-playable preview could be made: {e}"
        log.warning("%s: %s", video_id, note)
    try:
        with session_scope(settings) as s:
            video = queries.get_video(s, video_id)
            if note not in (video.notes or []):
                video.notes = [*(video.notes or []), note]
    except NotFound:
        delete(settings.media_dir, video_id)      # deleted while it was made
        raise


def delete(media_dir: Path, video_id: str) -> None:
    preview_path(media_dir, video_id).unlink(missing_ok=True)

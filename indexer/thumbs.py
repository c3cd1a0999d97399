"""Thumbnails: a small JPEG of a decoded keyframe, stored beside the media (which keyframe
shows a moment is chosen on the read side, `search.thumbnails`)."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np

from core.types import Frame
from search.index.state import atomic_write

WIDTH = 320       # px: sharp in a result list, a few KB each
QUALITY = 80
_SAFE_ID = re.compile(r"^[\w-]{1,128}$")


def thumb_path(media_dir: Path, video_id: int | str, t_ms: int) -> Path:
    """Where the thumbnail of `video_id` at t_ms lives: <media>/thumbs/<video>/<t_ms>.jpg."""
    if not _SAFE_ID.match(str(video_id)) or int(t_ms) < 0:
        raise ValueError(f"bad thumbnail key {video_id!r} @ {t_ms!r}")
    return Path(media_dir) / "thumbs" / str(video_id) / f"{int(t_ms)}.jpg"


def delete(media_dir: Path, video_id: str) -> None:
    """Every thumbnail of the video (they show what was in it: they go with it)."""
    shutil.rmtree(thumb_path(media_dir, video_id, 0).parent, ignore_errors=True)


def encode(image: np.ndarray, *, width: int = WIDTH, quality: int = QUALITY) -> bytes:
    """JPEG bytes, `width` px wide (never enlarged), aspect kept."""
    from PIL import Image
    picture = Image.fromarray(np.ascontiguousarray(image, np.uint8), "RGB")
    if picture.width > width:
        height = max(1, round(picture.height * width / picture.width))
        picture = picture.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def write(media_dir: Path, video_id: int | str, frame: Frame) -> Path:
    """The frame's thumbnail, written atomically (a reader never sees half a file); an
    existing one is replaced, so indexing twice leaves the same file."""
    path = thumb_path(media_dir, video_id, frame.t_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode(frame.image)
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path

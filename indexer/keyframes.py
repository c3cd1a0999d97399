"""The visual side of a chunk: its shots (stored with their times), a thumbnail per
keyframe, and one segment per keyframe bounded by the part of its shot it stands for; the
keyframes embedded by the image-text model when one resolves. Shots and thumbnails are
made for every video: every moment needs a picture, and they cost little."""

from collections.abc import Sequence

import numpy as np

from core.config import Settings
from core.types import VISUAL, Frame, Segment
from indexer import shots as cuts
from indexer import thumbs
from indexer.shots import Shot

VISUAL_EMBED = "visual_embed"
SHOTS_ONLY = "shots-only"       # the unit's model id while no image-text model resolves
ENABLE = "set CHRONOSCOPE_VISUAL__MODEL=<directory or hub id> to enable it"


def unavailable(settings: Settings) -> str | None:
    """Why no visual embeddings can be made here, or None when the model resolves."""
    from core.errors import ModelUnavailable
    from model import visual
    try:
        visual.model_id(settings)
    except ModelUnavailable as e:
        return str(e)
    return None


def skipped_note(settings: Settings) -> str | None:
    why = unavailable(settings)
    if why is None:
        return None
    why = why.removeprefix("no image-text model for visual search: ")
    if not settings.visual.enabled:
        return f"visual search skipped: {why}"
    return f"visual search skipped: {why.rstrip('.')}; {ENABLE}"


def pieces(shot: Shot) -> list[tuple[int, int, Frame]]:
    """(start_ms, end_ms, keyframe): the shot split between consecutive keyframes (at their
    midpoints), so a long shot's keyframes tile it and each owns the part around it."""
    keys = shot.keyframes
    bounds = [shot.start_ms] + [(a.t_ms + b.t_ms) // 2 for a, b in zip(keys, keys[1:])] \
        + [shot.end_ms]
    return [(bounds[i], bounds[i + 1], k) for i, k in enumerate(keys) if bounds[i + 1] > bounds[i]]


def detect(settings: Settings, frames: Sequence[Frame], end_ms: int) -> list[Shot]:
    if not frames:
        return []
    return cuts.detect(frames, end_ms=end_ms, max_gap_s=settings.visual.keyframe_max_gap_s)


def store(settings: Settings, video_id: str, chunk_idx: int, shots: list[Shot]) -> None:
    """The chunk's shots (replaced) and a thumbnail per keyframe."""
    from store import shots as shot_rows
    from store.db import session_scope
    for shot in shots:
        for frame in shot.keyframes:
            thumbs.write(settings.media_dir, video_id, frame)
    with session_scope(settings) as s:
        shot_rows.replace_shots(s, video_id=video_id, chunk_idx=chunk_idx, shots=[
            (sh.start_ms, sh.end_ms, [f.t_ms for f in sh.keyframes]) for sh in shots])


def embed(settings: Settings, shots: list[Shot]) -> tuple[list[Segment], np.ndarray | None,
                                                        str | None]:
    """One segment per keyframe with the keyframe's image embedding, or nothing without a
    model (the video's notes say why)."""
    if unavailable(settings) is not None:
        return [], None, None
    from model import visual
    parts = [p for shot in shots for p in pieces(shot)]
    if not parts:
        return [], None, None
    model_id = visual.model_id(settings)
    vectors = visual.embed_images([frame for _, _, frame in parts], settings)
    segments = [Segment(a, b, VISUAL, "", model_id) for a, b, _ in parts]
    return segments, vectors, model_id

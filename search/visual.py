"""The visual space at search time: a text query through the image-text model's text tower,
an image, or "more like this moment" (the stored keyframe embedding of the shot part that
holds a time), searched among keyframe embeddings with the same filters inside retrieval
as the text space (video, time range, kind, tenant).

Scores mean what text scores mean, the probability that the moment is what was asked for:
for a text query, SigLIP's own trained sigmoid(scale * cos + bias) (the probability the model
gives an image and a text of matching), a documented default map for other models
(`model.visual.text_calibration`); for an image, `model.visual.IMAGE` over the image-image
cosine."""

import logging
import math

import numpy as np

from core.config import Settings
from core.errors import BadQuery, ModelUnavailable
from core.times import clock
from search.index import reader
from search.index.filters import Filter
from search.index.state import VISUAL
from store import queries, search_rows
from store import shots as shot_rows
from store.db import session_scope
from store.search_rows import Filters

log = logging.getLogger(__name__)
RRF_K = 60


def model_id(settings: Settings, *, required: bool = False) -> str | None:
    """The image-text model's id when the visual space has vectors and the model loads here;
    with required (an image or like query), BadQuery saying how to enable it instead of None."""
    from model import visual
    if not required and reader.size(settings, VISUAL) == 0:
        return None
    try:   # a text query needs only the text tower (model.visual.TextQuery)
        return visual.model_id(settings) if required else visual.query_model_id(settings)
    except ModelUnavailable as e:
        if required:     # the user's fix (another query) as much as the operator's
            raise BadQuery(f"search by image needs the image-text model: {e}") from None
        log.warning("visual space not searched: %s", e)
        return None


def image_array(image) -> np.ndarray:
    """A PIL image or an H x W x 3 array as uint8 RGB."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise BadQuery("the image must be RGB, height x width x 3")
    return np.array(array, np.uint8, order="C")     # a writable copy for torch


def like_vector(settings: Settings, model: str, video_id: str, t_ms: int,
                tenant: str | None) -> np.ndarray:
    """The stored keyframe embedding of the shot part that holds t_ms."""
    if t_ms is None or t_ms < 0:
        raise BadQuery("like needs a time >= 0 in the video")
    with session_scope(settings) as s:
        queries.get_video(s, video_id, tenant=tenant)      # NotFound for another tenant
        blob = search_rows.visual_embedding_at(s, video_id=video_id, t_ms=t_ms, model=model)
    if blob is None:
        raise BadQuery(f"video {video_id} has no keyframe embedding at {clock(t_ms)} "
                       f"(model {model}): index it with visual search enabled")
    return np.frombuffer(blob, np.float32)


def query_vector(settings: Settings, *, text: str | None = None, image=None,
                 like: tuple[str, int] | None = None, tenant: str | None = None
                 ) -> tuple[np.ndarray, tuple[float, float]] | None:
    """The query's vector in the visual space and the (scale, bias) of its score; None when
    a text query has no visual space to search."""
    from model import visual
    model = model_id(settings, required=text is None)
    if model is None:
        return None
    if text is not None:
        return visual.embed_texts([text], settings)[0], visual.text_calibration(settings)
    if like is not None:
        return like_vector(settings, model, like[0], like[1], tenant), visual.IMAGE
    return visual.embed_images([image_array(image)], settings)[0], visual.IMAGE


def hits(settings: Settings, qvec: np.ndarray, n: int, f: Filters) -> list[tuple[int, float]]:
    """(segment id, cosine) best first in the visual space, filters inside retrieval."""
    flt = None
    if f.any:
        videos = None
        if f.video_ids is not None or f.tenant is not None:
            with session_scope(settings) as s:
                videos = search_rows.allowed_videos(s, where=f)
        flt = Filter(videos, f.start_ms, f.end_ms, f.kinds)
    return reader.search(settings, qvec, n, flt, space=VISUAL)


def scored(settings: Settings, found: list[tuple[int, float]], rows: dict,
           calibration: tuple[float, float]) -> list[tuple]:
    """(row, calibrated score, rank value, shot bounds) as moments take them: a moment found
    by how it looks stays inside its shot."""
    scale, bias = calibration
    fences = _shots(settings, [rows[i] for i, _ in found if i in rows])
    out = []
    for rank, (seg_id, cos) in enumerate(found):
        if seg_id in rows:
            row = rows[seg_id]
            p = 1.0 / (1.0 + math.exp(-(scale * cos + bias)))
            fence = next(((a, b) for a, b in fences.get(row.video_id, [])
                          if a <= row.start_ms < b), (row.start_ms, row.end_ms))
            out.append((row, p, 1.0 / (RRF_K + rank + 1), fence))
    return out


def _shots(settings: Settings, rows: list) -> dict[str, list[tuple[int, int]]]:
    """The stored shots around the rows, by video."""
    spans: dict[str, list[int]] = {}
    for r in rows:
        lo, hi = spans.get(r.video_id, (r.start_ms, r.end_ms))
        spans[r.video_id] = (min(lo, r.start_ms), max(hi, r.end_ms))
    with session_scope(settings) as s:
        return {v: [(sh.start_ms, sh.end_ms) for sh in shot_rows.get_shots(
            s, video_id=v, start_ms=lo, end_ms=hi)] for v, (lo, hi) in spans.items()}


def parse_like(text: str) -> tuple[str, int]:
    """`VIDEO_ID@SECONDS` (the CLI's --like, the API's like) as (video id, t_ms)."""
    from core.times import to_ms
    video_id, sep, secs = (text or "").strip().rpartition("@")
    try:
        t = float(secs)
    except ValueError:
        t = -1.0
    if not sep or not video_id or not 0 <= t < 1e9:
        raise BadQuery(f"like must be VIDEO_ID@SECONDS (e.g. 3f2a9c@42.5), not {text!r}")
    return video_id, to_ms(t)


MAX_IMAGE_PIXELS = 40_000_000


def read_image(data: bytes):
    """An uploaded image (JPEG, PNG, WebP...) as a PIL image, or BadQuery."""
    import io

    from PIL import Image, UnidentifiedImageError
    try:
        image = Image.open(io.BytesIO(data))
        # The header is read first: a small file may claim a huge picture (a pixel bomb).
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise BadQuery(f"the image is {image.width}x{image.height}: over "
                           f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels")
        image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as e:
        raise BadQuery(f"the image could not be read: {e}") from None
    return image.convert("RGB")

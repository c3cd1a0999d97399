"""Retrieve, then ground: Qwen3-VL places the exact start and end of the top moments.

A VLM alone fails at finding a moment in an hour of video; retrieval finds it to a few
seconds, so Qwen3-VL only has to look at a short window around each candidate: the
moment's bounds widened by a margin, clipped to the video, decoded at 2 fps with absolute
times. The frames, their `<t seconds>` labels, the generation and the parser are those of
captioning (model/qwen); only the prompt asks for one event. An answer that cannot be
placed inside the window leaves the moment as retrieval found it. This lives in indexer,
not search, because it decodes the video.
"""

from dataclasses import dataclass, replace
from pathlib import Path

from core.config import Settings
from core.errors import BadQuery
from core.types import Frame
from indexer.decode import sample_frames
from model.qwen.caption import video_batch
from model.qwen.generate import generate_all
from model.qwen.loader import loaded
from model.qwen.parse import parse_events
from model.qwen.prompt import ground_messages
from search.moments import Moment
from store import queries
from store.db import session_scope

FPS = 2.0
MARGIN_S = 10.0


@dataclass(frozen=True)
class Clip:
    frames: list[Frame]
    start_ms: int
    end_ms: int


def window(moment: Moment, duration_ms: int | None, margin_ms: int) -> tuple[int, int]:
    """The moment's bounds widened by the margin, clipped to the video."""
    end = moment.end_ms + margin_ms
    return max(0, moment.start_ms - margin_ms), (min(end, duration_ms) if duration_ms else end)


def clips(settings: Settings, moments: list[Moment], margin_ms: int) -> list[Clip]:
    """Each moment's window, decoded at FPS at the size captions use."""
    with session_scope(settings) as s:
        videos = {m.video_id: queries.get_video(s, m.video_id) for m in moments}
        where = {v: (Path(row.path), row.duration_ms) for v, row in videos.items()}
    out = []
    for m in moments:
        path, duration_ms = where[m.video_id]
        a, b = window(m, duration_ms, margin_ms)
        frames = list(sample_frames(path, start_ms=a, end_ms=b, fps=FPS,
                                    max_side=settings.qwen.frame_side)) if b > a else []
        out.append(Clip(frames=frames, start_ms=a, end_ms=b))
    return out


def build_inputs(processor, clips: list[Clip], query: str, *, side: int, device=None):
    """Processor batch for `clips`, built as captioning builds it, with the grounding prompt."""
    messages = [ground_messages(query, start_ms=c.start_ms, end_ms=c.end_ms) for c in clips]
    return video_batch(processor, [c.frames for c in clips], messages, side=side, device=device)


def ground(settings: Settings, moments: list[Moment], query: str, *, top: int = 3,
           margin_s: float = MARGIN_S) -> list[Moment]:
    """The moments, the first `top` with the bounds Qwen3-VL places them at (grounded=True)
    or as they were (grounded=False); the rest unchanged."""
    if not settings.qwen.model.strip():
        raise BadQuery("grounding needs a Qwen3-VL checkpoint: set CHRONOSCOPE_QWEN__MODEL to a "
                       "hub id such as Qwen/Qwen3-VL-2B-Instruct or to a checkpoint directory")
    if not query.strip():
        raise BadQuery("grounding needs the query in words")
    head = moments[:max(0, top)]
    if not head:
        return moments
    rec = loaded(settings)
    model, processor, q = rec.model, rec.processor, settings.qwen
    device = model.device if model.device.type == "cuda" else None
    found = clips(settings, head, round(margin_s * 1000))
    live = [i for i, c in enumerate(found) if c.frames]
    texts = generate_all(
        model, processor, [found[i] for i in live],
        lambda batch: build_inputs(processor, batch, query, side=q.frame_side, device=device),
        batch_size=q.batch_size, max_new_tokens=q.max_new_tokens,
    )
    out = [replace(m, grounded=False) for m in head]
    for i, text in zip(live, texts):
        events = [e for e in parse_events(text, start_ms=found[i].start_ms,
                                          end_ms=found[i].end_ms) if e[1] > e[0]]
        if events:   # the earliest placed event: the prompt asks for one
            out[i] = replace(head[i], start_ms=events[0][0], end_ms=events[0][1], grounded=True)
    return out + moments[len(head):]

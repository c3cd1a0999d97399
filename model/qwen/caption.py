"""Chunked long-context captioning: Qwen3-VL over windows of a video, answered as
second-level VISUAL segments with absolute times.

An hour at 1 fps and 448 px is ~370K visual tokens, more than Qwen3-VL's native context,
so the video goes through in windows (settings.qwen.window_s). Each window's prompt holds
its frames labelled with absolute times, the speech heard in it and, when
settings.qwen.memory is on, a rolling memory of earlier windows. Windows are batched
(settings.qwen.batch_size) across one video or many; with memory on, a video's windows must
run in order, so batches are formed across videos instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from core.types import VISUAL, Frame, Segment
from model.qwen.generate import generate_all
from model.qwen.loader import loaded
from model.qwen.memory import update_memory
from model.qwen.parse import parse_events
from model.qwen.prompt import caption_messages, render
from model.qwen.video import PROCESSOR_VIDEO_KWARGS, VideoInput, prepare_video


@dataclass
class Window:
    frames: list[Frame]
    start_ms: int
    end_ms: int
    speech: list[Segment] = field(default_factory=list)
    memory: str = ""


def make_windows(frames: Sequence[Frame], *, start_ms: int, end_ms: int, window_s: float,
                 speech: Sequence[Segment] = ()) -> list[Window]:
    """Cut [start_ms, end_ms) into windows of window_s; each gets its frames and the speech
    that overlaps it. The last window may be shorter."""
    step = max(1, round(window_s * 1000))
    out = []
    for a in range(start_ms, end_ms, step):
        b = min(a + step, end_ms)
        out.append(Window(
            frames=[f for f in frames if a <= f.t_ms < b],
            start_ms=a, end_ms=b,
            speech=[s for s in speech if s.start_ms < b and s.end_ms > a],
        ))
    return out


def build_inputs(processor, windows: Sequence[Window], *, side: int, device=None):
    """Processor batch for captioning `windows`."""
    messages = [caption_messages(start_ms=w.start_ms, end_ms=w.end_ms, speech=w.speech,
                                 memory=w.memory) for w in windows]
    return video_batch(processor, [w.frames for w in windows], messages, side=side,
                       device=device)


def video_batch(processor, frame_lists: Sequence[Sequence[Frame]], messages: Sequence,
                *, side: int, device=None):
    """Processor batch: each prompt with its pre-decoded video and absolute-time metadata,
    left-padded. Checks the processor kept the exact token budget. Captioning and
    grounding both build their inputs here."""
    videos: list[VideoInput] = [prepare_video(f, side, device=device) for f in frame_lists]
    texts = [render(processor, m) for m in messages]
    kwargs = dict(PROCESSOR_VIDEO_KWARGS)
    if device is not None:
        kwargs["device"] = str(device)
    inputs = processor(
        text=texts, videos=[v.pixels for v in videos], video_metadata=[v.metadata for v in videos],
        padding=True, padding_side="left", return_tensors="pt", **kwargs,
    )
    inputs.pop("video_metadata", None)  # for the prompt only; generate() rejects it
    got = [tuple(int(x) for x in row) for row in inputs["video_grid_thw"]]
    want = [v.grid_thw for v in videos]
    if got != want:
        raise RuntimeError(f"the video processor changed the frame grid {want} -> {got}")
    return inputs


def caption_windows(windows: Sequence[Window], *, settings) -> list[list[Segment]]:
    """VISUAL segments for each window, in order; a window without frames gets none."""
    rec = loaded(settings)
    q = settings.qwen
    model, processor = rec.model, rec.processor
    device = model.device if model.device.type == "cuda" else None
    live = [i for i, w in enumerate(windows) if w.frames and w.end_ms > w.start_ms]
    texts = generate_all(
        model, processor, [windows[i] for i in live],
        lambda batch: build_inputs(processor, batch, side=q.frame_side, device=device),
        batch_size=q.batch_size, max_new_tokens=q.max_new_tokens,
    )
    out: list[list[Segment]] = [[] for _ in windows]
    for i, text in zip(live, texts):
        w = windows[i]
        out[i] = [Segment(start_ms=s, end_ms=e, kind=VISUAL, text=caption, model_id=rec.model_id)
                  for s, e, caption in parse_events(text, start_ms=w.start_ms, end_ms=w.end_ms)]
    return out


def caption_videos(videos: Sequence[Sequence[Window]], *, settings,
                   memories: Sequence[str] | None = None) -> tuple[list[list[list[Segment]]], list[str]]:
    """Caption several videos' windows. With settings.qwen.memory on, step k captions
    window k of every video in one batch, each prompt carrying its own video's memory;
    off, all windows of all videos are independent and batched freely. Returns the
    segments per video per window and each video's final memory (to carry into its next
    chunk)."""
    q = settings.qwen
    memories = list(memories) if memories is not None else [""] * len(videos)
    if not q.memory:
        flat = [w for ws in videos for w in ws]
        segs = caption_windows(flat, settings=settings)
        out, k = [], 0
        for ws in videos:
            out.append(segs[k:k + len(ws)])
            k += len(ws)
        return out, memories
    out = [[] for _ in videos]
    for step in range(max((len(ws) for ws in videos), default=0)):
        batch = [(v, replace(ws[step], memory=memories[v] or ws[step].memory))
                 for v, ws in enumerate(videos) if step < len(ws)]
        segs = caption_windows([w for _, w in batch], settings=settings)
        for (v, _), s in zip(batch, segs):
            out[v].append(s)
            memories[v] = update_memory(memories[v], s, limit=q.memory_chars)
    return out, memories


def caption_video(windows: Sequence[Window], *, settings, memory: str = "") -> tuple[list[list[Segment]], str]:
    """One video's windows in order with rolling memory (or freely batched when memory is
    off); returns segments per window and the final memory."""
    segs, memories = caption_videos([windows], settings=settings, memories=[memory])
    return segs[0], memories[0]

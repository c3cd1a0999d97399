"""The signals of one chunk: speech, screen text, visual embeddings (with shots and
thumbnails) and visual events, a registry of small classes behind one Protocol. Each turns
the chunk's media into segments that the chunk owns; `pipeline` stores them unit by unit. A
new signal is one more class in SIGNALS."""

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Protocol

import numpy as np

from core.config import Settings
from core.types import SCREEN_TEXT, SPEECH, VISUAL, VISUAL_SKIPPED, Frame, Segment, VideoInfo
from indexer import keyframes
from indexer.audio import decode_audio
from indexer.decode import sample_frames
from indexer.plan import ChunkSpan


@dataclass
class ChunkContext:
    """What the signals of one chunk share; frames are decoded once, on first use."""
    settings: Settings
    video_id: str
    path: Path
    span: ChunkSpan
    duration_ms: int
    has_audio: bool
    on_decoded: Callable[[], None] | None = None      # told once the frames are in
    _frames: list[Frame] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def read_range(self) -> tuple[int, int]:
        return self.span.read_range(round(self.settings.chunk.overlap_s * 1000), self.duration_ms)

    def frames(self) -> list[Frame]:
        # Screen text needs legible frames and Qwen3-VL resizes on its own, so one pass at
        # the larger size of the signals that run serves both (a GPU worker, captions only,
        # decodes at the caption size). Only the chunk's own span is read: on-screen text is
        # clipped to the span anyway and visual windows tile it. Locked: signals running side
        # by side share the one decode.
        with self._lock:
            return self._decoded()

    def _decoded(self) -> list[Frame]:
        if self._frames is None:
            s = self.settings
            sides = [sig.frame_side(s) for sig in SIGNALS if sig.runs(s, has_audio=self.has_audio)]
            sides = [side for side in sides if side is not None]
            self._frames = list(sample_frames(self.path, start_ms=self.span.start_ms,
                                              end_ms=self.span.end_ms, fps=s.decode.fps,
                                              max_side=max(sides, default=s.decode.max_side)))
            if self.on_decoded:
                self.on_decoded()
        return self._frames


class Signal(Protocol):
    """One kind of segment a chunk yields. The pipeline runs every signal whose `runs` is
    true once per chunk and model id, side by side (see produce_each), and stores their
    segments in registry order."""
    name: str
    stage: str       # what a video's progress says while it runs

    def runs(self, settings: Settings, *, has_audio: bool) -> bool:
        """Whether it runs for a video at all (enabled, audio present, model configured)."""

    def skipped(self, settings: Settings, info: VideoInfo) -> str | None:
        """What a user should know when it does not run for this video."""

    def model_id(self, settings: Settings) -> str:
        """What produces its segments; a unit done with another id is done again."""

    def frame_side(self, settings: Settings) -> int | None:
        """The longest side it reads frames at; None: it reads no frames, or takes them at
        whatever size the others read (the decode default when it runs alone)."""

    def run(self, ctx: ChunkContext) -> list[Segment]:
        """Its segments for the chunk, in absolute ms, owned by the chunk."""


class Speech:
    name = SPEECH
    stage = "speech"

    def runs(self, settings: Settings, *, has_audio: bool) -> bool:
        return settings.speech.enabled and has_audio

    def skipped(self, settings: Settings, info: VideoInfo) -> str | None:
        return None if info.has_audio else "speech skipped: the file has no audio stream"

    def model_id(self, settings: Settings) -> str:
        from model import speech
        return speech.model_id(settings)

    def frame_side(self, settings: Settings) -> int | None:
        return None

    def run(self, ctx: ChunkContext) -> list[Segment]:
        from model import speech
        start, end = ctx.read_range
        audio = decode_audio(ctx.path, start_ms=start, end_ms=end)
        segments = speech.transcribe(audio, offset_ms=start, settings=ctx.settings)
        # A phrase belongs to the chunk its start falls in; the overlap only lets it finish.
        return [s for s in segments if ctx.span.owns(s.start_ms)]


class ScreenText:
    name = SCREEN_TEXT
    stage = "text"

    def runs(self, settings: Settings, *, has_audio: bool) -> bool:
        return settings.ocr.enabled

    def skipped(self, settings: Settings, info: VideoInfo) -> str | None:
        return None

    def model_id(self, settings: Settings) -> str:
        from model import ocr
        return ocr.model_id(settings)

    def frame_side(self, settings: Settings) -> int | None:
        return settings.ocr.max_side     # legible text wants large frames

    def run(self, ctx: ChunkContext) -> list[Segment]:
        # The chunk owns the texts that start in it: one frame before its start shows what
        # the chunk before owns, and frames past its end are decoded (lazily, at most one
        # chunk length) only while a text it owns stays on screen, so a text crossing the
        # boundary is one segment.
        from model import ocr
        s, span = ctx.settings, ctx.span
        step = round(1000 / s.decode.fps)
        ahead = min(ctx.duration_ms, span.end_ms + round(s.chunk.length_s * 1000))

        def decode(start_ms: int, end_ms: int):
            return sample_frames(ctx.path, start_ms=start_ms, end_ms=end_ms, fps=s.decode.fps,
                                 max_side=self.frame_side(s))

        before = decode(max(0, span.start_ms - step), span.start_ms) if span.start_ms else ()
        frames = chain(before, ctx.frames(), decode(span.end_ms, ahead))
        return ocr.read_text(frames, settings=s, end_ms=ctx.duration_ms,
                             own=(span.start_ms, span.end_ms))


class VisualCaptions:
    name = VISUAL
    stage = "captions"
    reads_stored = True     # the chunk's speech, stored before it runs

    def runs(self, settings: Settings, *, has_audio: bool) -> bool:
        return bool(settings.qwen.model)

    def skipped(self, settings: Settings, info: VideoInfo) -> str | None:
        return None if settings.qwen.model else VISUAL_SKIPPED

    def model_id(self, settings: Settings) -> str:
        from model.qwen import loader
        return loader.resolve(settings)[1]   # without loading the weights

    def frame_side(self, settings: Settings) -> int | None:
        return settings.qwen.frame_side

    def run(self, ctx: ChunkContext) -> list[Segment]:
        from model.qwen import caption
        from model.qwen.memory import update_memory
        q = ctx.settings.qwen
        windows = caption.make_windows(ctx.frames(), start_ms=ctx.span.start_ms,
                                       end_ms=ctx.span.end_ms, window_s=q.window_s,
                                       speech=stored(ctx, SPEECH))
        # The rolling memory crosses chunk boundaries through what the previous chunk
        # stored, so chunks can still run on different workers.
        memory = update_memory("", stored(ctx, VISUAL, before=True), limit=q.memory_chars) \
            if q.memory else ""
        per_window, _ = caption.caption_video(windows, settings=ctx.settings, memory=memory)
        return [seg for segs in per_window for seg in segs]


class VisualEmbed:
    """Shots, thumbnails and keyframe embeddings (image-text model): segments of kind
    visual whose vectors are the visual space's own, not the text embedder's."""
    name = keyframes.VISUAL_EMBED
    kind = VISUAL
    stage = "visual"

    def runs(self, settings: Settings, *, has_audio: bool) -> bool:
        return True       # shots and thumbnails for every video; embeddings when possible

    def skipped(self, settings: Settings, info: VideoInfo) -> str | None:
        return keyframes.skipped_note(settings)

    def model_id(self, settings: Settings) -> str:
        if keyframes.unavailable(settings) is not None:
            return keyframes.SHOTS_ONLY     # done again once a model resolves
        from model import visual
        return visual.model_id(settings)

    def frame_side(self, settings: Settings) -> int | None:
        # Any size serves: cuts read 64 px, SigLIP resizes to 224 px and thumbnails never
        # enlarge; so it asks for none and takes the frames the other signals read.
        return None

    def produce(self, ctx: ChunkContext) -> tuple[list[Segment], np.ndarray | None, str | None]:
        shots = keyframes.detect(ctx.settings, ctx.frames(), ctx.span.end_ms)
        keyframes.store(ctx.settings, ctx.video_id, ctx.span.idx, shots)
        return keyframes.embed(ctx.settings, shots)

    def run(self, ctx: ChunkContext) -> list[Segment]:
        return self.produce(ctx)[0]


# Run order: captions come last because they read the chunk's stored speech as context.
SIGNALS: tuple[Signal, ...] = (Speech(), ScreenText(), VisualEmbed(), VisualCaptions())
BY_NAME: dict[str, Signal] = {s.name: s for s in SIGNALS}


def skipped_notes(settings: Settings, info: VideoInfo) -> list[str]:
    """What a user should know about signals that will not run for this video (the captions
    note first, as videos have always listed them)."""
    return [note for signal in reversed(SIGNALS) if (note := signal.skipped(settings, info))]


def enabled(settings: Settings, *, has_audio: bool) -> list[str]:
    return [s.name for s in SIGNALS if s.runs(settings, has_audio=has_audio)]


def model_id(settings: Settings, signal: str) -> str:
    return BY_NAME[signal].model_id(settings)


def run(signal: str, ctx: ChunkContext) -> list[Segment]:
    return BY_NAME[signal].run(ctx)


def stage_of(signal: str) -> str:
    return BY_NAME[signal].stage


def reads_frames(signal: str) -> bool:
    """Whether it reads the chunk's decoded frames (speech reads only audio)."""
    return signal != SPEECH


def kind_of(signal: str) -> str:
    """The kind of a signal's segments (its name unless it says otherwise)."""
    return getattr(BY_NAME[signal], "kind", signal)


def produce(signal: str, ctx: ChunkContext) -> tuple[list[Segment], np.ndarray | None,
                                                     str | None]:
    """A signal's segments with their vectors and the model that made them: its own (a
    visual embedder) or the text embedder over their text."""
    own = getattr(BY_NAME[signal], "produce", None)
    if own is not None:
        return own(ctx)
    segments = run(signal, ctx)
    return (segments, *embed(ctx.settings, segments))


def produce_each(names: list[str], ctx: ChunkContext
                 ) -> Iterator[tuple[str, tuple[list[Segment], np.ndarray | None, str | None]]]:
    """(name, produce(name)) for each signal, in the order given. Signals that read no other
    signal's stored output all start at once on threads (Whisper's CTranslate2, Tesseract's
    processes and torch release the GIL, so speech and screen text share the cores); one
    that does runs when its turn comes, after the caller stored those before it."""
    ahead = [n for n in names if not getattr(BY_NAME[n], "reads_stored", False)]
    pool = ThreadPoolExecutor(max_workers=max(1, len(ahead)), thread_name_prefix="signal")
    try:
        # Each thread runs in a copy of this context: damage.recording() sees its decodes.
        started = {n: pool.submit(copy_context().run, produce, n, ctx) for n in ahead}
        for name in names:
            yield name, started[name].result() if name in started else produce(name, ctx)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def stored(ctx: ChunkContext, kind: str, *, before: bool = False) -> list[Segment]:
    """Segments of a kind already stored for this chunk (or, with before, for the two
    minutes before it): context for Qwen3-VL."""
    from store import queries
    from store.db import session_scope
    start, end = ctx.span.start_ms, ctx.span.end_ms
    if before:
        start, end = max(0, start - 120_000), start
    if end <= start:
        return []
    with session_scope(ctx.settings) as s:
        rows = queries.get_segments(s, video_id=ctx.video_id, start_ms=start, end_ms=end,
                                    kinds=[kind])
        return [Segment(r.start_ms, r.end_ms, r.kind, r.text, r.model_id) for r in rows]


def embed(settings: Settings, segments: list[Segment]) -> tuple[np.ndarray | None, str | None]:
    if not segments:
        return None, None
    from model import embed as embedder
    vectors = embedder.embed([s.text for s in segments], kind="document", settings=settings)
    return vectors, embedder.model_id(settings)

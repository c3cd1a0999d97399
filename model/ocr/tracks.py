"""Following lines through time. A line seen on consecutive frames is one reading; OCR
flicker (the same text, fuzzy-equal) does not split it, but a line whose text changes in
place (a clock ticking, a counter, a score) starts a new reading with its own interval, so
"00:30" finds the second it was shown. One segment per reading keeps the count bounded by
the changes on screen.

Chunks: a chunk owns the readings that start inside it. Frames before its start (a
look-back) show what was already on screen, which the chunk before owns; frames after its
end (a look-ahead) are read only while a reading it owns is still on screen, so a text that
crosses a boundary is one segment, stored by the chunk it started in."""

import difflib
import re
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from core.config import Settings, get_settings
from core.types import SCREEN_TEXT, Frame, Segment
from model.ocr.engine import model_id
from model.ocr.lines import Box
from model.ocr.reader import Reader, overlaps

SIMILAR = 0.8          # difflib ratio at which two readings are the same line
MISSES = 1             # sampled frames a line may go unread (OCR flicker) and still continue
LONE_SHORT = 5         # a one-word reading shorter than this, seen on one frame only: noise


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _digits(text: str) -> list[str]:
    return re.findall(r"\d+", text)


@dataclass
class Track:
    first_ms: int
    last_ms: int
    box: Box
    readings: list[str]
    end_ms: int | None = None     # set when another reading replaced it in place

    def matches(self, text: str, box: Box) -> float:
        """How well a line read now continues this reading (0 = not at all). Digits must
        agree: a clock or counter that ticks is a new reading, not OCR noise."""
        last = self.readings[-1]
        if _digits(last) != _digits(text):
            return 0.0
        ratio = difflib.SequenceMatcher(None, _norm(last), _norm(text)).ratio()
        return ratio if ratio >= SIMILAR else 0.0

    def text(self) -> str:
        counts = Counter(self.readings)
        # The reading seen most often is the one OCR noise did not touch.
        return max(dict.fromkeys(self.readings), key=lambda r: (counts[r], len(r)))

    def noise(self) -> bool:
        """One short word on a single frame: what texture reads as, rarely a real text."""
        text = self.text()
        return len(self.readings) == 1 and " " not in text and len(text) < LONE_SHORT \
            and not any(c.isdigit() for c in text)


def _interval(gaps: list[int], settings: Settings) -> float:
    return statistics.median(gaps) if gaps else 1000 / settings.decode.fps


def _follow(open_: list[Track], lines, t_ms: int) -> list[Track]:
    """Match a frame's lines to the open readings; returns the readings it starts. A reading
    whose place a new text takes ends at this frame."""
    free = list(open_)
    started = []
    for text, box in lines:
        best = max(free, key=lambda t: t.matches(text, box), default=None)
        if best is not None and best.matches(text, box) > 0:
            free.remove(best)
            best.last_ms, best.box = t_ms, box
            best.readings.append(text)
            continue
        for old in free:
            if old.end_ms is None and overlaps(old.box, box):
                old.end_ms = t_ms
        started.append(Track(t_ms, t_ms, box, [text]))
    return started


def read_text(frames: Iterable[Frame], *, settings: Settings | None = None,
              end_ms: int | None = None, own: tuple[int, int] | None = None
              ) -> list[Segment]:
    """SCREEN_TEXT segments from sampled frames (in time order): a reading seen on
    consecutive frames is one segment, from the first frame that shows it to one sample
    interval after the last (clamped to end_ms when given). With own=(start, end), frames
    before start only mark what was already on screen (not returned), and frames from end
    on are taken only while a reading that started in [start, end) is still on screen."""
    settings = settings or get_settings()
    mid = model_id(settings)
    reader = Reader(settings)
    open_: list[Track] = []
    done: list[Track] = []
    gaps: list[int] = []
    prev_ms = None
    start, stop = own if own is not None else (None, None)

    def owned(track: Track) -> bool:
        return own is None or start <= track.first_ms < stop

    for frame in frames:
        if prev_ms is not None and frame.t_ms > prev_ms:
            gaps.append(frame.t_ms - prev_ms)
        prev_ms = frame.t_ms
        interval = _interval(gaps, settings)
        # Lines unseen for longer than the allowed misses, or replaced, have left the screen.
        for track in list(open_):
            if track.end_ms is not None or frame.t_ms - track.last_ms > (MISSES + 1.5) * interval:
                open_.remove(track)
                done.append(track)
        if stop is not None and frame.t_ms >= stop and not any(owned(t) for t in open_):
            break      # the look-ahead: nothing this chunk owns is on screen any more
        started = _follow(open_, reader.read(frame.image), frame.t_ms)
        if stop is None or frame.t_ms < stop:
            open_ += started
    done.extend(open_)
    interval = _interval(gaps, settings)
    out = []
    for track in done:
        if not owned(track) or track.noise():
            continue
        end = track.end_ms if track.end_ms is not None else round(track.last_ms + interval)
        if end_ms is not None:
            end = min(end, end_ms)
        if end > track.first_ms:
            out.append(Segment(track.first_ms, end, SCREEN_TEXT, track.text(), mid))
    return sorted(out, key=lambda s: (s.start_ms, s.end_ms, s.text))

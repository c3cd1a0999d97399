"""Plain values passed between the stages. Every time is integer milliseconds from the
start of the video as a player shows it (the container start_time is 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:      # only a type here: the command line's import stays light
    import numpy as np

SPEECH = "speech"
SCREEN_TEXT = "screen_text"
VISUAL = "visual"
KINDS = (SPEECH, SCREEN_TEXT, VISUAL)
# The most results one request returns (a search's k, a page's limit), for the API and the
# command line alike.
MAX_RESULTS = 1000
# A video's note when Qwen3-VL is not configured; progress reads it to know whether a
# chunk's captions are still to come.
VISUAL_SKIPPED = ("visual captions skipped: no Qwen3-VL checkpoint configured; set "
                  "CHRONOSCOPE_QWEN__MODEL to a hub id (e.g. Qwen/Qwen3-VL-2B-Instruct) or a "
                  "local directory and re-index to add them")


@dataclass(frozen=True)
class VideoInfo:
    duration_ms: int
    width: int           # as displayed, after rotation
    height: int
    rotation: int        # degrees the decoded picture is turned to be displayed upright
    fps: float | None    # average rate; informational only, never used to compute a time
    video_codec: str
    container: str
    has_audio: bool
    audio_codec: str | None
    start_ms: int        # presentation time of the first video frame in the file
    notes: tuple[str, ...] = ()     # what a user should know about the file (a gap cut it)


@dataclass(frozen=True)
class Frame:
    t_ms: int            # true presentation time: (pts - origin) * time_base, where origin is
                         # the container start_time, so 0 is what a player shows as 0:00
    pts: int             # raw pts in the stream's time_base
    image: np.ndarray    # H x W x 3 uint8 RGB, upright


@dataclass(frozen=True)
class Segment:
    start_ms: int
    end_ms: int
    kind: str            # one of KINDS
    text: str
    model_id: str        # name and revision or file hash of what produced it

"""On-screen text with Tesseract: each line of text becomes a segment spanning the time it
stays on screen, read once however many sampled frames show it."""

import difflib
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from core.config import Settings
from core.errors import ModelUnavailable
from core.types import SCREEN_TEXT, Frame, Segment

SAME_BLOCK = 4.0   # a frame is read again once any 1/16 x 1/16 block changes this much
_version_lock = threading.Lock()
_version: list[str] = []


def model_id(settings: Settings) -> str:
    with _version_lock:
        if not _version:
            if shutil.which("tesseract") is None:
                raise ModelUnavailable("on-screen text needs Tesseract: apt-get install "
                                       "tesseract-ocr (or set CHRONOSCOPE_OCR__ENABLED=false)")
            out = subprocess.run(["tesseract", "--version"], capture_output=True, text=True)
            _version.append((out.stdout or out.stderr).split("\n")[0].split()[-1])
    return f"tesseract:{_version[0]}:{settings.ocr.languages}"


def _normalise(text: str) -> str:
    return " ".join(text.split()).strip()


def _is_junk(text: str) -> bool:
    alnum = re.sub(r"[^0-9A-Za-z]", "", text)
    return len(alnum) < 2 or len(alnum) < 0.5 * len(text.replace(" ", ""))


def read_lines(image: np.ndarray, settings: Settings) -> list[str]:
    """The confident lines of text in one RGB frame, in reading order."""
    import pytesseract
    gray = image.mean(axis=2).astype(np.uint8)
    if gray.shape[1] < 640:   # Tesseract wants glyphs 20+ px tall; small frames are upscaled
        factor = int(np.ceil(640 / gray.shape[1]))
        gray = np.kron(gray, np.ones((factor, factor), np.uint8))
    data = pytesseract.image_to_data(gray, lang=settings.ocr.languages,
                                     output_type=pytesseract.Output.DICT)
    lines: dict[tuple, list[str]] = {}
    for i, word in enumerate(data["text"]):
        if word.strip() and float(data["conf"][i]) >= settings.ocr.min_confidence:
            key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
            lines.setdefault(key, []).append(word)
    out = [_normalise(" ".join(words)) for _, words in sorted(lines.items())]
    return [line for line in out if not _is_junk(line)]


def _same(a: str, b: str) -> bool:
    # Short lines (a clock, a score) must match exactly: one changed digit is new text.
    if len(a) < 12 or len(b) < 12:
        return a == b
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio() >= 0.85


def _blocks(image: np.ndarray) -> np.ndarray:
    """Mean brightness of a 16 x 16 grid: a changed clock digit moves one block clearly,
    while the whole-frame mean would hide it."""
    gray = image.mean(axis=2)
    h, w = gray.shape[0] // 16 * 16, gray.shape[1] // 16 * 16
    return gray[:h, :w].reshape(16, h // 16, 16, w // 16).mean(axis=(1, 3))


@dataclass
class _Open:
    text: str
    start_ms: int
    last_ms: int


def read_text(frames: Iterable[Frame], *, settings: Settings) -> list[Segment]:
    """SCREEN_TEXT segments: a line seen on consecutive sampled frames is one segment from
    the first frame that shows it to one sample interval after the last."""
    mid = model_id(settings)
    interval = round(1000 / settings.decode.fps)
    open_: list[_Open] = []
    done: list[_Open] = []
    prev_image, prev_lines = None, []
    for frame in frames:
        small = _blocks(frame.image)
        if prev_image is not None and small.shape == prev_image.shape and \
                np.abs(small - prev_image).max() < SAME_BLOCK:
            lines = prev_lines          # unchanged picture: no need to read it again
        else:
            lines = read_lines(frame.image, settings)
        prev_image, prev_lines = small, lines
        still = []
        for line in lines:
            match = next((o for o in open_ if _same(o.text, line)), None)
            if match is not None:
                open_.remove(match)
                match.last_ms = frame.t_ms
                still.append(match)
            else:
                still.append(_Open(line, frame.t_ms, frame.t_ms))
        done.extend(open_)     # lines no longer on screen
        open_ = still
    done.extend(open_)
    return sorted((Segment(o.start_ms, o.last_ms + interval, SCREEN_TEXT, o.text, mid)
                   for o in done), key=lambda s: (s.start_ms, s.end_ms, s.text))

"""On-screen text with Tesseract: each line of text becomes one SCREEN_TEXT segment spanning
the time it stays on screen.

Tesseract is the cost (a few hundred ms a frame), so a frame is only read where it changed:
a picture identical to the last one read reuses its lines, and a small change (a clock
ticking, a subtitle swapped) is read as a crop around the change. Lines are followed from
frame to frame with a fuzzy match, so OCR noise does not split a line that stays, and a
counter whose digits change every second (a timer, a score) stays one segment instead of a
new one each second."""

import difflib
import re
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.config import Settings, get_settings
from core.errors import ModelUnavailable
from core.types import SCREEN_TEXT, Frame, Segment
from model.base import InferenceModel, fingerprint, head

SIMILAR = 0.8          # difflib ratio at which two readings are the same line
CELL = 4               # change detection works on CELL x CELL pixel means
CHANGED = 12.0         # a cell whose mean grey moves this much changed (codec noise is less)
FULL_READ = 0.25       # changed more than this share of the frame: read it all
MARGIN = 12            # px around a changed area, so a crop holds whole glyphs
MISSES = 1             # sampled frames a line may go unread (OCR flicker) and still continue
MAX_UPSCALE = 3.0      # small frames are enlarged toward ocr.max_side, at most this much:
                       # Tesseract wants glyphs 20+ px tall

Box = tuple[int, int, int, int]   # x0, y0, x1, y1 in frame pixels


class Tesseract(InferenceModel):
    """The tesseract binary and its language data, checked once per language set; the id is
    tesseract-<version>:<langs>@<fingerprint of the traineddata files>."""

    @staticmethod
    def key(settings: Settings) -> tuple:
        return (settings.ocr.languages,)

    def load(self, settings: Settings) -> None:
        languages = settings.ocr.languages
        try:
            out = subprocess.run(["tesseract", "--list-langs"], capture_output=True,
                                 text=True, check=True)
            version = subprocess.run(["tesseract", "--version"], capture_output=True,
                                     text=True).stdout.split()[1]
        except (OSError, subprocess.CalledProcessError, IndexError) as e:
            raise ModelUnavailable(
                "on-screen text needs the Tesseract binary: apt-get install tesseract-ocr "
                "(or set CHRONOSCOPE_OCR__ENABLED=false)") from e
        listing = out.stdout + out.stderr
        found = re.search(r'"(.+?)"', listing)
        have = set(listing.split('\n', 1)[-1].split())
        missing = [lang for lang in languages.split("+") if lang not in have]
        if missing:
            raise ModelUnavailable(
                f"Tesseract has no data for {', '.join(missing)}: apt-get install "
                + " ".join(f"tesseract-ocr-{m}" for m in missing)
                + " or change CHRONOSCOPE_OCR__LANGUAGES")
        data = Path(found.group(1) if found else "")
        files = [(lang, data / f"{lang}.traineddata") for lang in languages.split("+")]
        files = [(lang, path) for lang, path in files if path.is_file()]
        self.model_id = f"tesseract-{version}:{languages}@{fingerprint(files, sample=head)}"


def model_id(settings: Settings | None = None) -> str:
    return Tesseract.get(settings).model_id


# ---- reading one picture ---------------------------------------------------------------

def _is_junk(words: list[str]) -> bool:
    text = "".join(words)
    alnum = sum(c.isalnum() for c in text)
    # Texture and edges read as "|", "a", "ce": a lone token needs three characters (or to be
    # a number), a line of single characters is noise, and so is one mostly of punctuation.
    if len(words) == 1 and alnum < 3 and not text.isdigit():
        return True
    return alnum < 2 or all(len(w) == 1 for w in words) or alnum < 0.6 * len(text)


def read_lines(gray: np.ndarray, settings: Settings, *, origin: tuple[int, int] = (0, 0),
               scale: float = 1.0) -> list[tuple[str, Box]]:
    """The confident lines in a greyscale picture, in reading order, with their boxes in
    the coordinates of the frame it was cut from (at `origin`, before `scale`)."""
    import pytesseract
    image = Image.fromarray(gray)
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BICUBIC)
    data = pytesseract.image_to_data(image, lang=settings.ocr.languages, config="--psm 11",
                                     output_type=pytesseract.Output.DICT)
    lines: dict[tuple, list[int]] = {}
    for i, word in enumerate(data["text"]):
        if word.strip() and float(data["conf"][i]) >= settings.ocr.min_confidence and \
                re.search(r"\w", word):
            lines.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]),
                             []).append(i)
    out = []
    lone_floor = (100 + settings.ocr.min_confidence) / 2
    for idx in lines.values():
        words = [data["text"][i].strip() for i in idx]
        # A lone token has no neighbours to vouch for it: noise and texture produce those
        # at middling confidence, real captions and titles read at 85+.
        if _is_junk(words) or len(idx) == 1 and float(data["conf"][idx[0]]) < lone_floor:
            continue
        x0 = min(data["left"][i] for i in idx)
        y0 = min(data["top"][i] for i in idx)
        x1 = max(data["left"][i] + data["width"][i] for i in idx)
        y1 = max(data["top"][i] + data["height"][i] for i in idx)
        box = (origin[0] + int(x0 / scale), origin[1] + int(y0 / scale),
               origin[0] + int(np.ceil(x1 / scale)), origin[1] + int(np.ceil(y1 / scale)))
        out.append((" ".join(words), box))
    return sorted(out, key=lambda line: (line[1][1] // 8, line[1][0]))


def _gray(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114).astype(np.uint8)


def _cells(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[0] // CELL * CELL, gray.shape[1] // CELL * CELL
    return gray[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL).mean(axis=(1, 3),
                                                                       dtype=np.float32)


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


@dataclass
class _Reader:
    """Reads frames, re-reading only what changed since the picture its lines came from."""
    settings: Settings
    reference: np.ndarray | None = None      # cells of the picture the lines describe
    lines: list[tuple[str, Box]] = field(default_factory=list)

    def read(self, image: np.ndarray) -> list[tuple[str, Box]]:
        gray = _gray(image)
        side = self.settings.ocr.max_side
        if max(gray.shape) > side:   # larger frames cost time and read no better
            k = side / max(gray.shape)
            gray = np.asarray(Image.fromarray(gray).resize(
                (round(gray.shape[1] * k), round(gray.shape[0] * k)), Image.Resampling.BOX))
        cells = _cells(gray)
        scale = min(MAX_UPSCALE, max(1.0, side / max(gray.shape)))
        if self.reference is None or self.reference.shape != cells.shape:
            return self._full(gray, cells, scale)
        changed = np.abs(cells - self.reference) > CHANGED
        if not changed.any():
            return self.lines
        if changed.mean() > FULL_READ:
            return self._full(gray, cells, scale)
        ys, xs = np.nonzero(changed)
        h, w = gray.shape
        region = (max(0, int(xs.min()) * CELL - MARGIN), max(0, int(ys.min()) * CELL - MARGIN),
                  min(w, (int(xs.max()) + 1) * CELL + MARGIN),
                  min(h, (int(ys.max()) + 1) * CELL + MARGIN))
        # Lines the change touches are read again whole: grow the crop until it holds them.
        kept = list(self.lines)
        grown = True
        while grown:
            grown = False
            for line in list(kept):
                if _overlaps(line[1], region):
                    kept.remove(line)
                    region = _union(region, (max(0, line[1][0] - MARGIN),
                                             max(0, line[1][1] - MARGIN),
                                             min(w, line[1][2] + MARGIN),
                                             min(h, line[1][3] + MARGIN)))
                    grown = True
        x0, y0, x1, y1 = region
        fresh = read_lines(gray[y0:y1, x0:x1], self.settings, origin=(x0, y0), scale=scale)
        self.lines = sorted(kept + fresh, key=lambda line: (line[1][1] // 8, line[1][0]))
        rows, cols = slice(y0 // CELL, -(-y1 // CELL)), slice(x0 // CELL, -(-x1 // CELL))
        self.reference[rows, cols] = cells[rows, cols]
        return self.lines

    def _full(self, gray, cells, scale):
        self.lines = read_lines(gray, self.settings, scale=scale)
        self.reference = cells
        return self.lines


# ---- following lines through time --------------------------------------------------------

def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _skeleton(text: str) -> str:
    return re.sub(r"\d", "0", _norm(text))


@dataclass
class _Track:
    first_ms: int
    last_ms: int
    box: Box
    readings: list[str]

    def matches(self, text: str, box: Box) -> float:
        """How well a line read now continues this one (0 = not at all)."""
        last = self.readings[-1]
        ratio = difflib.SequenceMatcher(None, _norm(last), _norm(text)).ratio()
        if ratio >= SIMILAR:
            return ratio
        # Same shape with other digits in the same place: a clock or counter ticking.
        if any(c.isdigit() for c in text) and _skeleton(last) == _skeleton(text) and \
                _overlaps(self.box, box):
            return SIMILAR
        return 0.0

    def text(self) -> str:
        distinct = list(dict.fromkeys(self.readings))
        if len(distinct) > 2 and len({_skeleton(r) for r in distinct}) == 1:
            return f"{distinct[0]} … {distinct[-1]}"   # a counter: the range it ran over
        counts = Counter(self.readings)
        # The reading seen most often is the one OCR noise did not touch.
        return max(distinct, key=lambda r: (counts[r], len(r)))


def read_text(frames: Iterable[Frame], *, settings: Settings | None = None,
              end_ms: int | None = None) -> list[Segment]:
    """SCREEN_TEXT segments from sampled frames (in time order): a line seen on consecutive
    frames is one segment, from the first frame that shows it to one sample interval after
    the last (clamped to end_ms when given)."""
    settings = settings or get_settings()
    mid = model_id(settings)
    reader = _Reader(settings)
    open_: list[_Track] = []
    done: list[_Track] = []
    gaps: list[int] = []
    prev_ms = None
    for frame in frames:
        if prev_ms is not None and frame.t_ms > prev_ms:
            gaps.append(frame.t_ms - prev_ms)
        prev_ms = frame.t_ms
        interval = statistics.median(gaps) if gaps else 1000 / settings.decode.fps
        # Lines unseen for longer than the allowed misses have left the screen.
        for track in list(open_):
            if frame.t_ms - track.last_ms > (MISSES + 1.5) * interval:
                open_.remove(track)
                done.append(track)
        free = list(open_)
        for text, box in reader.read(frame.image):
            best = max(free, key=lambda t: t.matches(text, box), default=None)
            if best is not None and best.matches(text, box) > 0:
                free.remove(best)
                best.last_ms, best.box = frame.t_ms, box
                best.readings.append(text)
            else:
                open_.append(_Track(frame.t_ms, frame.t_ms, box, [text]))
    done.extend(open_)
    interval = statistics.median(gaps) if gaps else 1000 / settings.decode.fps
    out = []
    for track in done:
        end = round(track.last_ms + interval)
        if end_ms is not None:
            end = min(end, end_ms)
        if end > track.first_ms:
            out.append(Segment(track.first_ms, end, SCREEN_TEXT, track.text(), mid))
    return sorted(out, key=lambda s: (s.start_ms, s.end_ms, s.text))

"""Reading one picture: Tesseract's words (TSV output with confidences) grouped into lines,
kept only when they look like text, and binarised variants for titles the plain read
misses.

Texture, foliage and codec noise read as short confident tokens ("was", "thy", "i] 1"):
a line is kept only when most of its words are plausible (a number or clock, or letters
with a vowel in one case pattern) and, alone, long and confident enough."""

import re

import numpy as np
from PIL import Image, ImageFilter

from core.config import Settings
from model.ocr.engine import words as tesseract_words

Box = tuple[int, int, int, int]   # x0, y0, x1, y1 in frame pixels

PLAUSIBLE_SHARE = 0.67   # share of a line's words that must look like words
LONE_LETTERS = 3         # a line of one word needs this many letters (or to be a number)
VOWELS = set("aeiouyAEIOUY")
NUMBER = re.compile(r"[$€£#+-]?\d+([:.,/-]\d+)*%?")
WORD = re.compile(r"[A-Za-z]+(['-][A-Za-z]+)?")
CASES = re.compile(r"[a-z]+|[A-Z]+|[A-Z][a-z]+")
# Variants for light titles: a pixel is "white text" when bright and nearly grey.
BRIGHT, GREYISH = 200, 40
TEXT_SHARE = (0.002, 0.25)    # share of such pixels where text is probable
STROKE_WIDE = 8.0             # px: thicker strokes are thinned before reading


def plausible(word: str) -> bool:
    """Whether a token reads like a word or a number, not like texture."""
    core = word.strip(".,;:!?'\"()[]{}«»“”‘’")
    if NUMBER.fullmatch(core):
        return True
    if not WORD.fullmatch(core):
        return len(core) >= 2 and core.isalnum() and any(c.isdigit() for c in core) \
            and any(c.isupper() for c in core)     # codes like Q3, A4, MP3
    if len(core) == 1:
        return core in "aAI"
    letters = core.replace("'", "").replace("-", "")
    # One case pattern (word, WORD, Word) and a vowel: "Woy" passes, "lIl", "rs", "Ww" not.
    return bool(CASES.fullmatch(letters)) and any(c in VOWELS for c in letters)


def keep_line(words: list[str], confs: list[float], settings: Settings) -> bool:
    good = [w for w in words if plausible(w)]
    if len(good) < PLAUSIBLE_SHARE * len(words):
        return False
    # A lone token, or a line of short ones ("et ee"), has no long word to vouch for it:
    # noise reads so at middling confidence, real captions and titles at 85+.
    lone_floor = (100 + settings.ocr.min_confidence) / 2
    if len(words) > 1:
        short = max(len(w) for w in words) < 4
        return len(good) >= 2 and (not short or min(confs) >= lone_floor)
    word = words[0]
    number = NUMBER.fullmatch(word.strip(".,;:!?")) is not None and len(word) >= 2
    return confs[0] >= lone_floor and (sum(c.isalpha() for c in word) >= LONE_LETTERS or number)


def _tesseract(image: Image.Image, settings: Settings, origin: tuple[int, int],
               scale: float) -> list[tuple[str, Box]]:
    data = tesseract_words(image, settings)
    lines: dict[tuple, list[int]] = {}
    for i, word in enumerate(data["text"]):
        if word.strip() and float(data["conf"][i]) >= 0 and re.search(r"\w", word):
            lines.setdefault((data["block_num"][i], data["par_num"][i], data["line_num"][i]),
                             []).append(i)
    out = []
    for idx in lines.values():
        # Words Tesseract itself doubts are left out first; the rest must look like a line.
        idx = [i for i in idx if float(data["conf"][i]) >= settings.ocr.min_confidence]
        words = [data["text"][i].strip() for i in idx]
        if not idx or not keep_line(words, [float(data["conf"][i]) for i in idx], settings):
            continue
        x0 = min(data["left"][i] for i in idx)
        y0 = min(data["top"][i] for i in idx)
        x1 = max(data["left"][i] + data["width"][i] for i in idx)
        y1 = max(data["top"][i] + data["height"][i] for i in idx)
        box = (origin[0] + int(x0 / scale), origin[1] + int(y0 / scale),
               origin[0] + int(np.ceil(x1 / scale)), origin[1] + int(np.ceil(y1 / scale)))
        out.append((" ".join(words), box))
    return out


def _resized(image: Image.Image, scale: float) -> Image.Image:
    if scale == 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                        Image.Resampling.BICUBIC)


def light_text(rgb: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Where light, greyish pixels (white titles, captions) make text probable: their mask
    and its stroke width in px; None when the share of such pixels says no text."""
    px = rgb.astype(np.int16)
    mask = (px.mean(axis=2) > BRIGHT) & (px.max(axis=2) - px.min(axis=2) < GREYISH)
    share = float(mask.mean())
    if not TEXT_SHARE[0] <= share <= TEXT_SHARE[1]:
        return None
    edges = np.count_nonzero(mask[:, 1:] != mask[:, :-1]) + \
        np.count_nonzero(mask[1:] != mask[:-1])
    stroke = 2.0 * np.count_nonzero(mask) / max(edges, 1)   # area / half the perimeter
    return mask, stroke


def _variants(rgb: np.ndarray, scale: float):
    """Binarised pictures of light text, dark on white: as is, and for heavy display type
    thinned and shrunk so its letters no longer touch. Each with the scale it is read at."""
    found = light_text(rgb)
    if found is None:
        return
    mask, stroke = found
    image = Image.fromarray(np.where(mask, 0, 255).astype(np.uint8))
    yield image, scale
    if stroke * scale > STROKE_WIDE:
        thin = image.filter(ImageFilter.MaxFilter(2 * int(stroke * 0.15) + 1))
        yield thin, min(scale, STROKE_WIDE / stroke)


def read_lines(gray: np.ndarray, settings: Settings, *, origin: tuple[int, int] = (0, 0),
               scale: float = 1.0, rgb: np.ndarray | None = None) -> list[tuple[str, Box]]:
    """The plausible lines in a greyscale picture, in reading order, with their boxes in the
    coordinates of the frame it was cut from (at `origin`, before `scale`). With `rgb` (the
    same picture in colour), a picture that holds light, text-like strokes is read again as
    binarised variants, and the first that reads more words than the plain read wins."""
    out = _tesseract(_resized(Image.fromarray(gray), scale), settings, origin, scale)
    words = sum(len(text.split()) for text, _ in out)
    # Light text on a busy or graded background: the plain read's global threshold loses
    # words where the background brightens; the binarised variants (only where light,
    # text-like strokes are) read them, and titles in display type.
    if rgb is not None:
        for image, k in _variants(rgb, scale):
            found = _tesseract(_resized(image, k), settings, origin, k)
            if sum(len(text.split()) for text, _ in found) > words:
                out = found
                break
    return sorted(out, key=lambda line: (line[1][1] // 8, line[1][0]))

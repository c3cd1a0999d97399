"""Reading frames one after another, re-reading only what changed.

Tesseract is the cost (a few hundred ms a frame), so a frame is only read where it changed:
a picture identical to the last one read reuses its lines, and a small change (a clock
ticking, a subtitle swapped) is read as a crop around the change."""

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from core.config import Settings
from model.ocr.lines import Box, read_lines

CELL = 4               # change detection works on CELL x CELL pixel means
# A cell whose mean grey moves this much changed. x264 refines a still slide over the frames
# after a cut and at each keyframe, moving 4x4 means up to ~16 along glyph edges; a clock's
# digit ticking moves them 40+ (bench/RESULTS.md, "Indexing speed").
CHANGED = 24.0
FULL_READ = 0.25       # changed more than this share of the frame: read it all
MARGIN = 12            # px around a changed area, so a crop holds whole glyphs
MAX_UPSCALE = 3.0      # small frames are enlarged toward ocr.max_side, at most this much:
                       # Tesseract wants glyphs 20+ px tall


def _gray(image: np.ndarray) -> np.ndarray:
    return (image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114).astype(np.uint8)


def _cells(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape[0] // CELL * CELL, gray.shape[1] // CELL * CELL
    return gray[:h, :w].reshape(h // CELL, CELL, w // CELL, CELL).mean(axis=(1, 3),
                                                                       dtype=np.float32)


def overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _order(lines: list[tuple[str, Box]]) -> list[tuple[str, Box]]:
    return sorted(lines, key=lambda line: (line[1][1] // 8, line[1][0]))


@dataclass
class Reader:
    """Reads frames, re-reading only what changed since the picture its lines came from."""
    settings: Settings
    reference: np.ndarray | None = None      # cells of the picture the lines describe
    lines: list[tuple[str, Box]] = field(default_factory=list)
    reads: int = 0                           # Tesseract reads (plain), for tests and benches

    def read(self, image: np.ndarray) -> list[tuple[str, Box]]:
        side = self.settings.ocr.max_side
        if max(image.shape[:2]) > side:   # larger frames cost time and read no better
            k = side / max(image.shape[:2])
            image = np.asarray(Image.fromarray(image).resize(
                (round(image.shape[1] * k), round(image.shape[0] * k)), Image.Resampling.BOX))
        gray = _gray(image)
        cells = _cells(gray)
        scale = min(MAX_UPSCALE, max(1.0, side / max(gray.shape)))
        if self.reference is None or self.reference.shape != cells.shape:
            return self._full(image, gray, cells, scale)
        changed = np.abs(cells - self.reference) > CHANGED
        if not changed.any():
            return self.lines
        if changed.mean() > FULL_READ:
            return self._full(image, gray, cells, scale)
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
                if overlaps(line[1], region):
                    kept.remove(line)
                    region = _union(region, (max(0, line[1][0] - MARGIN),
                                             max(0, line[1][1] - MARGIN),
                                             min(w, line[1][2] + MARGIN),
                                             min(h, line[1][3] + MARGIN)))
                    grown = True
        x0, y0, x1, y1 = region
        self.reads += 1
        fresh = read_lines(gray[y0:y1, x0:x1], self.settings, origin=(x0, y0), scale=scale,
                           rgb=image[y0:y1, x0:x1])
        self.lines = _order(kept + fresh)
        rows, cols = slice(y0 // CELL, -(-y1 // CELL)), slice(x0 // CELL, -(-x1 // CELL))
        self.reference[rows, cols] = cells[rows, cols]
        return self.lines

    def _full(self, image, gray, cells, scale):
        self.reads += 1
        self.lines = read_lines(gray, self.settings, scale=scale, rgb=image)
        self.reference = cells
        return self.lines

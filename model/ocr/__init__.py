"""On-screen text with Tesseract: each reading of a line of text becomes one SCREEN_TEXT
segment spanning the time it stays on screen.

`lines` reads one picture (confidence and word plausibility filter the noise; binarised
variants read large or stylised titles), `reader` re-reads only what changed between
frames, and `tracks` follows lines through time: OCR flicker does not split a line, while a
line whose text changes in place (a clock, a counter) starts a new reading with its own
times."""

from model.ocr.engine import Tesseract, model_id
from model.ocr.tracks import read_text

__all__ = ["Tesseract", "model_id", "read_text"]

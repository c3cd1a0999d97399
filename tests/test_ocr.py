"""Screen text: real Tesseract on a real video with a title and a running timer, and on a
generated video whose text appears and leaves at known times."""

import difflib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.config import Settings
from core.types import SCREEN_TEXT
from indexer.decode import sample_frames
from model import ocr
from model.ocr import reader, tracks

MEDIA = Path(__file__).resolve().parent.parent / ".." / "shared" / "media"
TIMER = MEDIA / "timer_text_61s.mp4"


def _like(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a.lower(), b.lower()).ratio()


@pytest.fixture(scope="module")
def settings():
    return Settings()


def test_title_and_timer(settings):
    """timer_text_61s.mp4 shows "Example Movie" for all 61 s and a clock below it counting
    00:00 .. 01:00 (checked by eye on saved frames). The title is one segment; the clock is
    one reading a second, each with its own interval."""
    segments = ocr.read_text(sample_frames(TIMER, fps=1.0, max_side=448), settings=settings)
    assert all(s.kind == SCREEN_TEXT and s.model_id.startswith("tesseract-") for s in segments)
    title = next(s for s in segments if _like(s.text, "Example Movie") >= 0.9)
    assert abs(title.start_ms - 0) <= 1000 and abs(title.end_ms - 61_000) <= 1000, title
    clock = [s for s in segments if s is not title]
    assert [s.text for s in clock] == [f"{n // 60:02d}:{n % 60:02d}" for n in range(61)]
    assert all((s.start_ms, s.end_ms) == (n * 1000, n * 1000 + 1000) for n, s in enumerate(clock))


def test_a_chunk_in_the_middle(settings):
    """A chunk from 20 s to 30 s with a look-back frame and look-ahead: times stay absolute,
    the title (on screen before 20 s) belongs to the chunk before, and the look-ahead stops
    once the last reading the chunk owns (00:29) has left."""
    frames = sample_frames(TIMER, start_ms=19_000, end_ms=45_000, fps=1.0, max_side=448)
    seen = []
    segments = ocr.read_text((seen.append(f.t_ms) or f for f in frames), settings=settings,
                             own=(20_000, 30_000))
    assert [s.text for s in segments] == [f"00:{n}" for n in range(20, 30)]
    assert (segments[0].start_ms, segments[-1].end_ms) == (20_000, 30_000)
    assert max(seen) <= 31_000     # a frame or two past the chunk, not the whole look-ahead


# (from s, to s, text, where, colour): light on a gradient, then dark on a light band on top.
SHOWN = [(10.0, 20.0, "Quarterly budget review", (40, 150), (255, 255, 255)),
         (30.0, 35.0, "Send the report to finance", (60, 30), (20, 20, 20))]


def _write_slides(path: Path, *, seconds: int = 40, fps: int = 5, size=(640, 360)) -> None:
    """A grey gradient with SHOWN's lines drawn over it while they are due."""
    font = ImageFont.load_default(size=40)
    base = np.tile(np.linspace(40, 220, size[0], dtype=np.uint8)[None, :, None],
                   (size[1], 1, 3))
    base[:100] = 230
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        ms = Fraction(1, 1000)    # the muxer may change stream.time_base once it starts
        stream.time_base = stream.codec_context.time_base = ms
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(seconds * fps):
            t = i / fps
            image = Image.fromarray(base)
            draw = ImageDraw.Draw(image)
            for start, end, text, where, colour in SHOWN:
                if start <= t < end:
                    draw.text(where, text, fill=colour, font=font)
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts = round(t * 1000)
            frame.time_base = ms
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def slides(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ocr") / "slides.mp4"
    _write_slides(path)
    return path


def test_drawn_text_intervals(slides, settings, monkeypatch):
    reads = []
    real = reader.read_lines
    monkeypatch.setattr(reader, "read_lines", lambda *a, **k: reads.append(1) or real(*a, **k))
    segments = ocr.read_text(sample_frames(slides, fps=1.0, max_side=448), settings=settings)
    assert len(segments) == len(SHOWN), segments
    for (start, end, text, _, _), seg in zip(SHOWN, segments):
        assert _like(seg.text, text) >= 0.9, (text, seg)
        assert " " in seg.text          # words keep their spaces
        assert abs(seg.start_ms - start * 1000) <= 1000, (text, seg)
        assert abs(seg.end_ms - end * 1000) <= 1000, (text, seg)
    # 40 sampled frames, but the picture changes only four times: unchanged frames are not
    # read again.
    assert len(reads) <= 6, len(reads)


def test_blank_and_noise_frames_give_no_text(settings):
    from core.types import Frame
    rng = np.random.default_rng(0)
    frames = [Frame(t_ms=i * 1000, pts=i, image=np.full((252, 448, 3), 90, np.uint8))
              for i in range(3)]
    frames += [Frame(t_ms=(3 + i) * 1000, pts=3 + i,
                     image=rng.integers(0, 255, (252, 448, 3), dtype=np.uint8))
               for i in range(2)]
    assert ocr.read_text(frames, settings=settings) == []


def test_readings_and_fuzzy_matching():
    track = tracks.Track(0, 0, (10, 10, 60, 30), ["00:59"])
    assert track.matches("01:00", (11, 10, 61, 30)) == 0       # a clock ticking: a new reading
    assert track.matches("00:59", (11, 10, 61, 30)) > 0
    line = tracks.Track(0, 0, (0, 0, 300, 30), ["Quarterly budget review"])
    assert line.matches("Quarterly budqet reviev", (0, 0, 300, 30)) > 0   # OCR noise
    assert line.matches("Send the report to finance", (0, 0, 300, 30)) == 0
    line.readings += ["Quarterly budqet reviev", "Quarterly budget review"]
    assert line.text() == "Quarterly budget review"

"""Screen-text evaluation: generated videos with known text intervals, read through the real
screen-text signal chunk by chunk, scored as interval precision and recall at IoU >= 0.5
(a reading matches a truth when their intervals overlap by half their union and the texts
are nearly the same), plus the count of segments on textless frames (noise).

Videos (deterministic, PyAV + Pillow, DejaVu fonts when fc-list has them):
  slides    three slides changing every 4 s on a gradient
  clock     a running clock mm:ss, every second
  counter   a score line that changes every 3 s under a fixed label
  boundary  one text on screen from 3 s to 10 s, read with 6 s chunks (crosses 6 s)
  title     a title in large bold outlined type on a picture background
  textless  noise, foliage-like blobs and a smooth texture, no text

    .venv/bin/python bench/screen_text_eval.py            # all videos
    .venv/bin/python bench/screen_text_eval.py --quick    # fewer videos
"""

import argparse
import difflib
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from indexer.plan import plan_chunks  # noqa: E402
from indexer.signals import ChunkContext, ScreenText  # noqa: E402

SIZE = (640, 360)
FPS = 5
DEJAVU = Path("/usr/share/fonts/truetype/dejavu")


def font(size: int, bold: bool = False):
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        listed = subprocess.run(["fc-list"], capture_output=True, text=True).stdout
    except OSError:
        listed = ""
    if name in listed and (DEJAVU / name).is_file():
        return ImageFont.truetype(str(DEJAVU / name), size)
    return ImageFont.load_default(size=size)


def _gradient(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(20, 90, 3), rng.integers(60, 140, 3)
    ramp = np.linspace(0, 1, SIZE[0])[None, :, None]
    return np.broadcast_to(a + (b - a) * ramp, (SIZE[1], SIZE[0], 3)).astype(np.uint8).copy()


def _picture(seed: int) -> np.ndarray:
    """A photo-like background: blurred coloured blobs."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(_gradient(seed))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y, r = rng.integers(0, SIZE[0]), rng.integers(0, SIZE[1]), rng.integers(10, 80)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(6)))


def _foliage(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", SIZE, (30, 70, 25))
    draw = ImageDraw.Draw(image)
    for _ in range(1500):
        x, y = rng.integers(0, SIZE[0]), rng.integers(0, SIZE[1])
        w, h = rng.integers(3, 14), rng.integers(2, 8)
        green = (int(rng.integers(20, 90)), int(rng.integers(80, 200)), int(rng.integers(10, 80)))
        draw.ellipse((x, y, x + w, y + h), fill=green)
    return np.asarray(image)


def _write(path: Path, seconds: float, draw_at) -> None:
    """A video whose frame at time t is draw_at(t) (an RGB array)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        ms = Fraction(1, 1000)
        stream.time_base = stream.codec_context.time_base = ms
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(round(seconds * FPS)):
            frame = av.VideoFrame.from_ndarray(draw_at(i / FPS), format="rgb24")
            frame.pts, frame.time_base = round(i * 1000 / FPS), ms
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _texts(base: np.ndarray, items, t: float) -> np.ndarray:
    """base with each (start, end, text, xy, font, fill, stroke) drawn while due."""
    image = Image.fromarray(base)
    draw = ImageDraw.Draw(image)
    for start, end, text, xy, fnt, fill, stroke in items:
        if start <= t < end:
            draw.text(xy, text, font=fnt, fill=fill, stroke_width=stroke,
                      stroke_fill=(0, 0, 0) if stroke else None)
    return np.asarray(image)


def videos(quick: bool = False) -> list[dict]:
    """Each: name, seconds, chunk length s, truth [(start s, end s, text)], items to draw."""
    f = font(34)
    white, dark = (250, 250, 250), (15, 15, 15)
    slides = [(0, 4, "Quarterly budget review", (40, 150), f, white, 0),
              (4, 8, "Hiring plan for spring", (40, 150), f, white, 0),
              (8, 12, "Questions and answers", (40, 150), f, white, 0)]
    clock_n = 6 if quick else 15
    clock = [(s, s + 1, f"00:{s:02d}", (250, 150), font(48), white, 0) for s in range(clock_n)]
    scores = ["Home 0 Away 0", "Home 1 Away 0", "Home 1 Away 1", "Home 2 Away 1"]
    counter = [(0, 12, "Championship final", (40, 60), f, white, 0)] + \
        [(3 * i, 3 * i + 3, s, (40, 200), f, white, 0) for i, s in enumerate(scores)]
    boundary = [(3, 10, "Meet the new team", (60, 160), f, dark, 0)]
    # Fits the frame (at 72 px from x=40 its last letter was cut off: "Bunn" was all there was)
    title = [(2, 8, "Big Buck Bunny", (20, 120), font(64, bold=True), (255, 255, 255), 5)]
    out = [
        {"name": "slides", "seconds": 12, "chunk_s": 300, "items": slides, "bg": _gradient(1)},
        {"name": "clock", "seconds": clock_n, "chunk_s": 300, "items": clock, "bg": _gradient(2)},
        {"name": "counter", "seconds": 12, "chunk_s": 300, "items": counter, "bg": _gradient(3)},
        {"name": "boundary", "seconds": 14, "chunk_s": 6, "items": boundary,
         "bg": np.full((SIZE[1], SIZE[0], 3), 225, np.uint8)},
        {"name": "title", "seconds": 10, "chunk_s": 300, "items": title, "bg": _picture(4)},
        {"name": "textless", "seconds": 9, "chunk_s": 300, "items": [], "bg": None},
    ]
    if quick:
        out = [v for v in out if v["name"] in ("clock", "boundary", "title", "textless")]
    for v in out:
        v["truth"] = [(s, e, text) for s, e, text, *_ in v["items"]]
    return out


def _textless_frame(t: float) -> np.ndarray:
    k = int(t // 3)
    if k == 0:
        return np.random.default_rng(int(t * FPS)).integers(0, 255, (SIZE[1], SIZE[0], 3),
                                                             dtype=np.uint8)
    return _foliage(10 + int(t * FPS) % 3) if k == 1 else _picture(20 + int(t))


def make(directory: Path, quick: bool = False) -> list[dict]:
    vids = videos(quick)
    for v in vids:
        v["path"] = directory / f"{v['name']}.mp4"
        if v["bg"] is None:
            _write(v["path"], v["seconds"], _textless_frame)
        else:
            _write(v["path"], v["seconds"], lambda t, v=v: _texts(v["bg"], v["items"], t))
    return vids


def read_new(v: dict, settings: Settings) -> list:
    """The screen-text signal as the pipeline runs it, chunk by chunk."""
    duration = round(v["seconds"] * 1000)
    out = []
    for span in plan_chunks(duration, length_ms=round(v["chunk_s"] * 1000)):
        ctx = ChunkContext(settings, "eval", v["path"], span, duration, has_audio=False)
        out += ScreenText().run(ctx)
    return out


def _same(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, " ".join(a.lower().split()),
                                   " ".join(b.lower().split())).ratio() >= 0.8


def _iou(a: tuple, b: tuple) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def score(vids: list[dict], found: dict[str, list]) -> dict:
    """found: name -> [(start ms, end ms, text)]. Greedy one-to-one matching."""
    tp = n_pred = n_truth = noise = 0
    per = {}
    for v in vids:
        segs = found[v["name"]]
        if not v["truth"]:
            noise += len(segs)
            per[v["name"]] = {"noise": len(segs), "read": [s[2] for s in segs][:8]}
            continue
        truth = [(s * 1000, e * 1000, text) for s, e, text in v["truth"]]
        free = list(segs)
        hit = 0
        for t in truth:
            m = next((p for p in free if _same(p[2], t[2]) and _iou(p, t) >= 0.5), None)
            if m is not None:
                free.remove(m)
                hit += 1
        tp, n_pred, n_truth = tp + hit, n_pred + len(segs), n_truth + len(truth)
        per[v["name"]] = {"truth": len(truth), "found": len(segs), "matched": hit,
                          "unmatched": [p[2] for p in free][:6]}
    return {"precision": round(tp / n_pred, 3) if n_pred else 0.0,
            "recall": round(tp / n_truth, 3) if n_truth else 0.0, "noise": noise,
            "videos": per}


def evaluate(directory: Path, *, quick: bool = False) -> dict:
    """Scores of the screen-text signal of this checkout (to compare code, run the script
    from each checkout: the videos are the same)."""
    settings = Settings()
    vids = make(directory, quick)
    t, cpu = time.perf_counter(), cpu_s()
    result = score(vids, {v["name"]: [(s.start_ms, s.end_ms, s.text)
                                     for s in read_new(v, settings)] for v in vids})
    result["seconds"] = round(time.perf_counter() - t, 1)
    result["cpu_s"] = round(cpu_s() - cpu, 1)
    return result


def cpu_s() -> float:
    """This process's CPU and its finished children's (Tesseract runs as one)."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        r = evaluate(Path(d), quick=args.quick)
    print(f"precision {r['precision']}  recall {r['recall']}  noise {r['noise']}  "
          f"({r['seconds']} s, {r['cpu_s']} CPU-s)")
    print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()

"""Memory while indexing a long video: RSS must not grow with the video's length.

    .venv/bin/python bench/index_memory.py [--minutes 60]

Generates (once, cached in bench/.cache/) a 320x180 10 fps H.264 video with AAC audio: a
text slide that changes every minute and a spoken sentence (espeak-ng) every five minutes.
Indexes it in-process with the default settings (5-minute chunks), sampling this process's
RSS after every chunk, and prints the RSS after the first 5 minutes of video, the peak
after that, and their ratio (target <= 1.5)."""

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from core.config import Settings  # noqa: E402
from indexer import pipeline  # noqa: E402
from videos import speak  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_video(path: Path, minutes: int) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    fps, w, h, seconds = 10, 320, 180, minutes * 60
    font = ImageFont.load_default(size=28)
    audio = np.random.default_rng(0).normal(0, 0.002, seconds * 16000).astype(np.float32)
    for m in range(0, minutes, 5):
        clip = speak(f"This is minute {m} of the long recording, topic number {m // 5}.")
        audio[(m * 60 + 10) * 16000:(m * 60 + 10) * 16000 + len(clip)] += clip
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"preset": "ultrafast"}
        aus = out.add_stream("aac", rate=16000)
        aus.layout = "mono"
        for minute in range(minutes):
            img = Image.new("RGB", (w, h), (20, 30, 60))
            ImageDraw.Draw(img).text((20, 70), f"Slide {minute + 1}: part {minute % 7}",
                                     fill=(255, 255, 255), font=font)
            pixels = np.asarray(img)
            for i in range(60 * fps):
                n = minute * 60 * fps + i
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts, frame.time_base = n, Fraction(1, fps)
                for p in vs.encode(frame):
                    out.mux(p)
            block = audio[minute * 60 * 16000:(minute + 1) * 60 * 16000]
            for i in range(0, len(block), 1024):
                af = av.AudioFrame.from_ndarray(block[i:i + 1024].reshape(1, -1), format="flt",
                                                layout="mono")
                af.sample_rate, af.time_base = 16000, Fraction(1, 16000)
                af.pts = minute * 60 * 16000 + i
                for p in aus.encode(af):
                    out.mux(p)
        for s in (vs, aus):
            for p in s.encode():
                out.mux(p)
    tmp.rename(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=int, default=60)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    video = make_video(ROOT / "bench" / ".cache" / f"long_{args.minutes}min.mp4", args.minutes)
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        vid = pipeline.add_video(settings, video)
        samples: list[tuple[int, float]] = []
        start = time.perf_counter()
        # A chunk ends where the next one starts decoding, or where finalize begins.
        pipeline.index_video(settings, vid, on_progress=lambda done_ms, _total, stage: (
            samples.append((done_ms, rss_mb())) if stage in ("decode", "finalize") and done_ms
            else None))
        elapsed = time.perf_counter() - start
    first = samples[0][1]
    peak = max(r for _, r in samples[1:]) if len(samples) > 1 else first
    print(f"video: {video.name}, {args.minutes} min, {len(samples)} chunks, "
          f"indexed in {elapsed:.0f} s ({args.minutes * 60 / elapsed:.1f}x realtime)")
    print("RSS after each chunk (MB): " + ", ".join(f"{r:.0f}" for _, r in samples))
    print(f"RSS after the first 5 minutes: {first:.0f} MB; peak after: {peak:.0f} MB; "
          f"ratio {peak / first:.2f} (target <= 1.5)")


if __name__ == "__main__":
    main()

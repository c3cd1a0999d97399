"""Clips and previews on the real samples: how long a 20-second clip takes to cut when it
starts on a keyframe (stream copy), mid-GOP (smart cut: the head re-encoded) and re-encoded
whole (the baseline, measured in the same run), and how fast the browser preview of the
80-second AVI is made (x realtime).

    .venv/bin/python bench/clip_speed.py [REPEATS]

Sources: car_detection_30s.mp4 (768x432 H.264 without B-frames, keyframes every 4.8 s) and
pedestrians_80s.avi (768x576 MPEG-4 part 2), in ../shared/media."""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import Settings  # noqa: E402
from indexer import clip, transcode  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def best(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    src, avi = MEDIA / "car_detection_30s.mp4", MEDIA / "pedestrians_80s.avi"
    settings = Settings()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "clip.mp4"

        def cut(start: float, end: float, how: str | None = None):
            if how is None:
                return clip.cut(src, out, start, end, settings, None)
            span = clip.locate(src, Fraction(start).limit_denominator(1000),
                               Fraction(end).limit_denominator(1000))
            transcode.write_mp4(src, out, span, transcode.Encoding(None, "veryfast", 20),
                                how=how)

        assert cut(4.8, 24.8).mode == "copy" and cut(5.3, 25.3).mode == "smart"
        rows = [("stream copy (start on a keyframe)", best(repeats, lambda: cut(4.8, 24.8))),
                ("smart cut (head re-encoded)", best(repeats, lambda: cut(5.3, 25.3))),
                ("re-encoded whole (baseline)",
                 best(repeats, lambda: cut(5.3, 25.3, transcode.ENCODE)))]
        base = rows[-1][1]
        print("20 s clip of car_detection_30s.mp4 | wall s | vs re-encoding whole")
        for name, t in rows:
            print(f"{name} | {t:.2f} | {base / t:.1f}x faster")
        p = settings.preview
        t = best(1, lambda: transcode.write_mp4(
            avi, Path(tmp) / "preview.mp4", transcode.Cut(zero_s=transcode.origin(avi)),
            transcode.Encoding(p.max_height, p.preset, p.crf), how=transcode.ENCODE))
        print(f"preview of pedestrians_80s.avi (80 s, 480p veryfast): {t:.2f} s, "
              f"{80 / t:.1f}x realtime")


if __name__ == "__main__":
    main()

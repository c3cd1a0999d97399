"""Shot detection against known cuts: precision, recall and the largest timing error on
generated videos (x264, 25 fps, 320x180; tests/test_shots.py's scenes) decoded by the real
sampler at 1 and 2 fps.

    .venv/bin/python bench/shot_detection.py

A detected boundary matches a true cut when it lies within one sampling interval after a
hard cut, or inside a dissolve widened by one interval; each true cut matches once."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from indexer.decode import sample_frames  # noqa: E402
from indexer.shots import detect  # noqa: E402
from tests.test_shots import pan, render, still, textured  # noqa: E402

# name -> (timeline, duration_s, hard cuts s, dissolves (start_s, length_s))
VIDEOS = {
    "cuts+dissolve+pan": ([(0, still(1)), (7.3, still(2)), (12.6, still(3)),
                           (20.0, still(4), 2.0), (28.45, pan(5))], 36.0,
                          (7.3, 12.6, 28.45), ((20.0, 2.0),)),
    "many short shots": ([(0, still(10))] + [(1.7 + 2.3 * k, still(11 + k)) for k in range(10)],
                         26.0, tuple(round(1.7 + 2.3 * k, 2) for k in range(10)), ()),
    "two dissolves": ([(0, still(30)), (6.0, still(31), 1.0), (14.0, still(32), 3.0)], 24.0,
                      (), ((6.0, 1.0), (14.0, 3.0))),
    "static": ([(0, lambda t: textured(40))], 30.0, (), ()),
    "slow pan": ([(0, pan(41, 20.0))], 30.0, (), ()),
}


def score(starts: list[int], hard, dissolves, interval: float) -> tuple[int, int, int, float]:
    truth = [(c * 1000, c * 1000 + interval) for c in hard] + \
            [(a * 1000 - interval, (a + n) * 1000 + interval) for a, n in dissolves]
    used, hits, worst = set(), 0, 0.0
    for b in starts:
        for j, (lo, hi) in enumerate(truth):
            if j not in used and lo <= b <= hi:
                used.add(j)
                hits += 1
                if j < len(hard):
                    worst = max(worst, b - hard[j] * 1000)
                break
    return hits, len(starts), len(truth), worst


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("| video | fps | true cuts | detected | precision | recall | max hard-cut error |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, (timeline, duration, hard, dissolves) in VIDEOS.items():
            path = render(Path(tmp) / f"{len(name)}.mp4", timeline, duration)
            for fps in (1.0, 2.0):
                frames = list(sample_frames(path, fps=fps))
                starts = [s.start_ms for s in detect(frames)[1:]]
                hits, found, true, worst = score(starts, hard, dissolves, 1000 / fps)
                precision = hits / found if found else 1.0
                recall = hits / true if true else 1.0
                print(f"| {name} | {fps:g} | {true} | {found} | {precision:.2f} | {recall:.2f} "
                      f"| {worst:.0f} ms |")


if __name__ == "__main__":
    main()

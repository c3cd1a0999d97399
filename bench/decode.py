"""Decode benchmark: 1-fps sampling (indexer.decode.sample_frames) against a naive full
decode, in the same run, on a generated 720p30 H.264 video.

    .venv/bin/python bench/decode.py [--minutes 10] [--fps 1]

The video (tests/videos.make_bench_video: a textured pan with moving objects and grain,
x264 CRF 23, B-frames, 250-frame GOPs, about 3.5 Mbit/s) is written once into
bench/.cache/. Printed: the naive baseline (PyAV defaults, decode every frame and convert
it to full-size RGB) in x realtime, the decode-only ceiling (every frame, all threads, no
conversion), sample_frames in x realtime, the speed-up, and accuracy: the largest
|t_ms - target| and whether every sampled frame is a real frame of the file, the nearest one
to its target, with its own pts and time.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from indexer.decode import sample_frames  # noqa: E402
from videos import make_bench_video  # noqa: E402


class Clock:
    """Wall time, and CPU time of this process (all its threads): on a shared machine the
    CPU figure says what the code costs, the wall figure what this run got."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def report(self, duration: float) -> str:
        return (f"{self.wall:.1f} s wall = {duration / self.wall:.1f}x realtime; "
                f"{self.cpu:.1f} CPU-s = {duration / self.cpu:.1f} video s per CPU-s")


def naive(path: Path) -> tuple[Clock, int]:
    n = 0
    with Clock() as clock, av.open(str(path)) as c:
        for frame in c.decode(video=0):
            frame.to_ndarray(format="rgb24")
            n += 1
    return clock, n


def decode_only(path: Path) -> Clock:
    with Clock() as clock, av.open(str(path)) as c:
        c.streams.video[0].codec_context.thread_type = "AUTO"
        for _ in c.decode(video=0):
            pass
    return clock


def sampled(path: Path, fps: float) -> tuple[Clock, list]:
    with Clock() as clock:
        frames = [(f.t_ms, f.pts, f.image.shape)
                  for f in sample_frames(path, fps=fps, max_side=448)]
    return clock, frames


def truth(path: Path) -> tuple[np.ndarray, dict, float]:
    """Every frame's pts from the container (demuxing only) and its time in ms."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        origin = c.start_time / av.time_base if c.start_time else 0.0
        pts = sorted(p.pts for p in c.demux(s) if p.pts is not None)
        duration = c.duration / av.time_base
        tb = s.time_base
    times = {p: round((p * tb - origin) * 1000) for p in pts}
    return np.array(sorted(times.values())), times, duration


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--fps", type=float, default=1.0, help="sampling rate")
    args = ap.parse_args()
    path = make_bench_video(ROOT / "bench" / ".cache" / f"bench_720p30_{args.minutes:g}min_v2.mp4",
                            minutes=args.minutes)
    times, pts_time, duration = truth(path)
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        desc = (f"{s.codec_context.width}x{s.codec_context.height} {s.codec_context.name} "
                f"{float(s.average_rate):g} fps, {c.bit_rate / 1e6:.1f} Mbit/s, "
                f"{len(times)} frames, {duration:.1f} s")
    print(f"video: {path.relative_to(ROOT)}: {desc}")
    print(f"machine: {os.cpu_count()} cores, load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    base, n = naive(path)
    print(f"naive, all {n} frames decoded + full-size RGB (PyAV defaults): "
          f"{base.report(duration)}")
    ceiling = decode_only(path)
    print(f"decode only, every frame, frame+slice threads, no conversion: "
          f"{ceiling.report(duration)}")
    fast, frames = sampled(path, args.fps)
    print(f"sample_frames at {args.fps:g} fps, 448 px, {len(frames)} frames: "
          f"{fast.report(duration)}")
    print(f"speed-up over naive: {base.wall / fast.wall:.2f}x wall, "
          f"{base.cpu / fast.cpu:.2f}x CPU")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    interval = 1000 / args.fps
    worst, own, nearest = 0, True, True
    for k, (t_ms, pts, _) in enumerate(frames):
        target = k * interval
        worst = max(worst, abs(t_ms - target))
        own &= pts in pts_time and pts_time[pts] == t_ms
        nearest &= abs(t_ms - target) == np.abs(times - target).min()
    expected = int((duration * 1000 - 1) // interval) + 1
    print(f"accuracy: largest |t_ms - target| = {worst:.0f} ms; every sampled frame is a real "
          f"frame with its own pts and time: {own}; nearest to its target: {nearest}; "
          f"one per target: {len(frames) == expected} ({len(frames)}/{expected})")
    print(f"image size: {frames[0][2][1]}x{frames[0][2][0]}")
    ok = duration / fast.wall >= 20 and worst <= 100 and own and nearest
    print("target (>= 20x realtime, every frame within 100 ms, true pts): "
          + ("met" if ok else "NOT met"))


if __name__ == "__main__":
    main()

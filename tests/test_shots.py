"""Shot detection on real encoded videos (PyAV, x264) with hard cuts and a dissolve at known
times, decoded by the real sampler at 1 and 2 fps; and on a real sample with cuts."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.types import Frame
from indexer.decode import sample_frames
from indexer.shots import Shot, detect

W, H, FPS = 320, 180, 25


def textured(seed: int, width: int = W) -> np.ndarray:
    """A scene: blocks of its own palette, softened so it compresses like footage."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (5, 3))
    blocks = palette[rng.integers(0, 5, (9, width // 20))]
    img = np.kron(blocks, np.ones((20, 20, 1))).astype(np.float32)
    img = (img + np.roll(img, 7, axis=0) + np.roll(img, 7, axis=1)) / 3
    return img[:H, :width].astype(np.uint8)


def still(seed: int):
    base = textured(seed)

    def at(t: float) -> np.ndarray:      # a small object moving inside the shot
        img = base.copy()
        x = int(20 + 30 * t) % (W - 30)
        img[70:100, x:x + 30] = 255 - img[70:100, x:x + 30]
        return img
    return at


def pan(seed: int, speed_px_s: float = 12.0):
    wide = textured(seed, width=3 * W)
    return lambda t: wide[:, int(speed_px_s * t):int(speed_px_s * t) + W]


def render(path: Path, timeline: list, duration_s: float) -> Path:
    """timeline: [(start_s, scene)] with hard cuts at each start, or (start_s, scene,
    dissolve_s) for a dissolve from the previous scene over dissolve_s seconds."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"preset": "ultrafast", "x264-params": "threads=1"}
        for k in range(round(duration_s * FPS)):
            t = k / FPS
            i = max(j for j, seg in enumerate(timeline) if seg[0] <= t)
            img = timeline[i][1](t).astype(np.float32)
            if len(timeline[i]) == 3 and t < timeline[i][0] + timeline[i][2]:
                a = (t - timeline[i][0]) / timeline[i][2]
                img = (1 - a) * timeline[i - 1][1](t) + a * img
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, FPS)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path


HARD = (7.3, 12.6, 28.45)
SHORT = tuple(round(1.7 + 2.3 * k, 2) for k in range(6))      # shots of 2-3 samples at 1 fps
DISSOLVE = (20.0, 2.0)


def cuts_video(path: Path) -> Path:
    return render(path, [(0, still(1)), (7.3, still(2)), (12.6, still(3)),
                         (20.0, still(4), 2.0), (28.45, pan(5))], 36.0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("shots")
    return {"cuts": cuts_video(d / "cuts.mp4"),
            "static": render(d / "static.mp4", [(0, lambda t: textured(7))], 30.0),
            "pan": render(d / "pan.mp4", [(0, pan(8, 20.0))], 30.0),
            "short": render(d / "short.mp4", [(0, still(10))] + [(t, still(11 + k))
                                                                for k, t in enumerate(SHORT)],
                            16.0)}


def check_tiling(shots: list[Shot], frames: list[Frame], gap_s: float = 4.0) -> None:
    assert shots[0].start_ms == frames[0].t_ms
    for a, b in zip(shots, shots[1:]):
        assert a.end_ms == b.start_ms
    for s in shots:
        assert s.start_ms < s.end_ms and s.keyframes
        assert all(s.start_ms <= t < s.end_ms for t in s.keyframe_ms)
        assert list(s.keyframe_ms) == sorted(s.keyframe_ms)
        # every stretch of max_gap_s inside the shot is represented
        inside = [f.t_ms for f in frames if s.start_ms <= f.t_ms < s.end_ms]
        assert len(s.keyframes) >= (inside[-1] - inside[0]) // (gap_s * 1000)


def shots_of(path: Path, fps: float) -> tuple[list[Shot], list[int]]:
    """The shots of a video sampled at fps (checked to tile it) and their start times
    after the first."""
    frames = list(sample_frames(path, fps=fps))
    shots = detect(frames, max_gap_s=4.0)
    check_tiling(shots, frames)
    return shots, [s.start_ms for s in shots[1:]]


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_hard_cuts_within_one_frame_and_the_dissolve_once(videos, fps):
    shots, starts = shots_of(videos["cuts"], fps)
    interval = 1000 / fps
    for cut in HARD:
        assert any(0 <= b - cut * 1000 <= interval for b in starts), (cut, starts)
    a, length = DISSOLVE
    inside = [b for b in starts if a * 1000 - interval <= b <= (a + length) * 1000 + interval]
    assert len(inside) == 1, starts
    assert len(starts) == len(HARD) + 1, starts
    # the long last shot (a pan) has a keyframe at least every 4 s
    assert len(shots[-1].keyframes) >= 2


@pytest.mark.parametrize("fps", [1.0, 2.0])
def test_every_cut_between_short_shots_is_found(videos, fps):
    # Neighbouring cuts are no motion: each stands out against the shots around it.
    _, starts = shots_of(videos["short"], fps)
    assert len(starts) == len(SHORT), starts
    assert all(0 <= b - cut * 1000 <= 1000 / fps for b, cut in zip(starts, SHORT)), starts


@pytest.mark.parametrize("name", ["static", "pan"])
def test_no_false_cut_on_a_static_shot_or_a_slow_pan(videos, name):
    for fps in (1.0, 2.0):
        frames = list(sample_frames(videos[name], fps=fps))
        shots = detect(frames, max_gap_s=4.0)
        assert len(shots) == 1, [s.start_ms for s in shots]
        check_tiling(shots, frames)
        assert frames[-1].t_ms < shots[0].end_ms <= frames[-1].t_ms + 1000 / fps + 40
        assert len(shots[0].keyframes) >= 7       # 30 s in pieces of at most 4 s


def test_keyframe_is_the_sharp_representative_frame():
    sharp = textured(3)
    blurred = sum(np.roll(sharp.astype(np.float32), k, axis=a) for k in (-2, 0, 2)
                  for a in (0, 1)) / 6
    blurred = blurred.astype(np.uint8)
    frames = [Frame(t_ms=1000 * i, pts=i, image=sharp if i == 2 else blurred) for i in range(4)]
    shots = detect(frames, end_ms=4000, max_gap_s=10)
    assert len(shots) == 1 and shots[0].keyframe_ms == (2000,)
    assert detect([]) == []
    with pytest.raises(ValueError):
        detect(frames, end_ms=3000)


def test_real_sample_has_cuts_and_tiles(media):
    path = media / "big_buck_bunny_30s.webm"
    frames = list(sample_frames(path, fps=1.0))
    shots = detect(frames, end_ms=30_000, max_gap_s=4.0)
    check_tiling(shots, frames)
    assert shots[-1].end_ms == 30_000
    assert 2 <= len(shots) <= 20, [s.start_ms for s in shots]

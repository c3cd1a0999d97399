"""Clips cut from the real samples, checked by decoding them: the first frame is the one
shown at START, the last the one shown just before END, every frame keeps its source time
(shifted by the first frame's), the sound covers the same span and lines up with the
picture; a keyframe start stream-copies, any other start re-encodes the head up to the
next keyframe (H.264 without reordering: a smart cut) or the whole clip; hostile bounds
are refused with a clear message, from the library and from the command line."""

import json
import math
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from core.config import Settings
from core.errors import BadQuery
from indexer import clip as clips

ROOT = Path(__file__).resolve().parent.parent
HALF_MS = 0.0005


def source_times(path: Path, *, keyframes: bool = False) -> list[Fraction]:
    """Every frame's (or keyframe's) time in the source, from its own pts (what a player
    shows)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        origin = Fraction(c.start_time or 0, av.time_base)
        return sorted(p.pts * s.time_base - origin for p in c.demux(s)
                      if p.pts is not None and p.size and (p.is_keyframe or not keyframes))


def decoded_times(path: Path) -> list[Fraction]:
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def envelope(samples: np.ndarray, rate: int, ms: int = 10) -> np.ndarray:
    n = rate * ms // 1000
    mono = samples.mean(axis=0)[: len(samples[0]) // n * n]
    return np.sqrt((mono.reshape(-1, n) ** 2).mean(axis=1))


def sound(path: Path, t0: float = 0.0, t1: float = 1e6) -> tuple[np.ndarray, int]:
    """The decoded sound in [t0, t1) seconds, float planar, at its own rate."""
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        origin = (c.start_time or 0) / av.time_base
        resampler = av.AudioResampler(format="fltp", layout="mono", rate=rate)
        parts = []
        for frame in c.decode(audio=0):
            t = float(frame.pts * frame.time_base) - origin
            for f in resampler.resample(frame):
                a = f.to_ndarray()
                lo = max(0, round((t0 - t) * rate))
                hi = min(a.shape[1], max(0, round((t1 - t) * rate)))
                if hi > lo:
                    parts.append(a[:, lo:hi])
        return np.concatenate(parts, axis=1), rate


def check_clip(src: Path, out: Path, start: float, end: float) -> Fraction:
    """The clip's frames are exactly the source's from the frame shown at start to the last
    before end, at their source times less the first one's; returns that first time."""
    times = source_times(src)
    first = max(t for t in times if t <= Fraction(start).limit_denominator(10**6))
    expected = [t - first for t in times if first <= t < Fraction(end).limit_denominator(10**6)]
    got = decoded_times(out)
    assert len(got) == len(expected), (len(got), len(expected))
    assert max(abs(float(g - e)) for g, e in zip(got, expected)) < HALF_MS
    with av.open(str(out)) as c:
        assert abs(c.duration / av.time_base - (end - float(first))) < 0.002
    return first


def check_sound(src: Path, out: Path, first: Fraction, end: float) -> None:
    """The clip's sound is the source's over [first, end): as long, and where the source
    has any, its loudness envelope lines up with no lag."""
    got, rate = sound(out)
    want, rate_src = sound(src, float(first), end)
    # The AAC encoder pads its last frame; the file's edit list says where the sound ends.
    assert rate == rate_src and 0 <= got.shape[1] - want.shape[1] < 1024
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert abs(float(a.duration * a.time_base) - (end - float(first))) < 0.001
    if not want.any():
        return
    a, b = envelope(got, rate), envelope(want, rate)
    n = min(len(a), len(b))
    lags = {lag: np.corrcoef(a[max(0, lag):n + min(0, lag)], b[max(0, -lag):n - max(0, lag)])
            [0, 1] for lag in range(-5, 6)}
    assert max(lags, key=lags.get) == 0 and lags[0] > 0.9, lags


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("clips") / "home")


def test_keyframe_start_is_stream_copied_frame_accurate_with_sound_in_step(media, tmp_path,
                                                                           settings):
    src = media / "car_detection_30s.mp4"
    key = float(source_times(src, keyframes=True)[1])           # a keyframe in the middle
    start, end = key + 0.01, key + 5.0            # shown at start: that keyframe
    out = tmp_path / "copy.mp4"
    result = clips.cut(src, out, start, end, settings, None)
    assert result.mode == "copy" and abs(result.start_s - key) < HALF_MS
    first = check_clip(src, out, start, end)
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
    check_sound(src, out, first, end)      # silent here: its length is still checked


def test_other_starts_reencode_the_head_and_copy_from_the_next_keyframe(media, tmp_path,
                                                                       settings):
    """Smart cut: frames from the next keyframe on are the source's, bit for bit; the head
    before it is re-encoded close to them."""
    src = media / "car_detection_30s.mp4"
    keys = source_times(src, keyframes=True)
    start, end = float(keys[1]) + 0.3, float(keys[2]) + 2.0     # mid-GOP, across a keyframe
    out = tmp_path / "smart.mp4"
    result = clips.cut(src, out, start, end, settings, None)
    assert result.mode == "smart" and result.start_s > float(keys[1])
    first = check_clip(src, out, start, end)
    got, want = pictures(out), pictures(src)
    for t, picture in got.items():
        original = want[t + first]
        if t + first >= keys[2]:
            assert np.array_equal(picture, original), float(t)
        else:
            mse = ((picture.astype(float) - original) ** 2).mean()
            assert 10 * np.log10(255 ** 2 / max(mse, 1e-9)) > 30, float(t)
    # Ending before the next keyframe leaves nothing to copy: re-encoded.
    short = clips.cut(src, tmp_path / "short.mp4", start, float(keys[2]) - 0.5, settings, None)
    assert short.mode == "encode"
    check_clip(src, tmp_path / "short.mp4", start, float(keys[2]) - 0.5)


def pictures(path: Path) -> dict[Fraction, np.ndarray]:
    """Every decoded picture (luma) by its time."""
    with av.open(str(path)) as c:
        origin = Fraction(c.start_time or 0, av.time_base)
        return {f.pts * f.time_base - origin: f.to_ndarray(format="gray")
                for f in c.decode(video=0)}


@pytest.mark.parametrize("name,start,end", [
    ("his_girl_friday_6s.mp4", 1.1667, 4.0),      # a keyframe, but B-frames: re-encoded
    ("pedestrians_80s.avi", 30.05, 40.0),         # MPEG-4 part 2 in AVI: re-encoded
    ("big_buck_bunny_30s.webm", 3.0, 6.5),        # VP8 with Vorbis sound
])
def test_reordered_and_foreign_codecs_cut_exactly(media, tmp_path, settings, name, start, end):
    src = media / name
    out = tmp_path / "clip.mp4"
    assert clips.cut(src, out, start, end, settings, None).mode == "encode"
    first = check_clip(src, out, start, end)
    with av.open(str(src)) as c:
        has_sound = bool(c.streams.audio)
    if has_sound:
        check_sound(src, out, first, end)


@pytest.mark.parametrize("bframes,start,mode", [(0, 0.0, "copy"), (0, 1.05, "smart"),
                                                (2, 1.05, "encode")])
@pytest.mark.parametrize("rotation", [90, -90])
def test_a_phone_video_clip_stays_upright(tmp_path, settings, bframes, start, mode, rotation):
    """The display matrix of a portrait phone video goes with every kind of clip."""
    from videos import make_video
    from indexer.probe import probe
    src = tmp_path / "portrait.mp4"
    make_video(src, duration_s=4, fps=10, size=(160, 96), rotation=rotation, bframes=bframes,
               keyint=20)
    out = tmp_path / "clip.mp4"
    assert clips.cut(src, out, start, 3.0, settings, None).mode == mode
    turned = probe(out)
    assert (turned.rotation, turned.width, turned.height) == (rotation % 360, 96, 160)


@pytest.mark.parametrize("start,end,says", [
    (-1.0, 5.0, ">= 0"), (math.nan, 5.0, "finite"), (1.0, math.inf, "finite"),
    (5.0, 5.0, "not after start"), (6.0, 2.0, "not after start"),
    (29.0, 31.0, "beyond the end"), (40.0, 41.0, "beyond the end"),
    (0.0, 20.0, "at most 10 s"),
])
def test_hostile_bounds_are_refused_clearly(media, tmp_path, settings, start, end, says):
    short = settings.model_copy(update={"clip": settings.clip.model_copy(
        update={"max_length_s": 10.0})})
    out = tmp_path / "never.mp4"
    with pytest.raises(BadQuery, match=says):
        clips.cut(media / "car_detection_30s.mp4", out, start, end, short, None)
    assert not out.exists()


def test_cli_clip(media, tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHRONOSCOPE_")}
    env.update(CHRONOSCOPE_HOME=str(home), HF_HUB_OFFLINE="1")
    from indexer import pipeline
    video_id = pipeline.add_video(Settings(home=home), media / "car_detection_30s.mp4")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "api.cli", "clip", *args], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)

    out = tmp_path / "moment.mp4"
    proc = run(video_id[:6], "10.5", "16", "-o", str(out), "--json")  # a prefix; across a keyframe
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["mode"] == "smart" and report["output"] == str(out)
    check_clip(media / "car_detection_30s.mp4", out, 10.5, 16.0)
    proc = run(video_id, "1", "99", "-o", str(tmp_path / "bad.mp4"))
    assert proc.returncode == 2 and "beyond the end" in proc.stderr
    proc = run("nosuchvideo", "1", "2", "-o", str(tmp_path / "bad.mp4"))
    assert proc.returncode == 1 and "nosuchvideo" in proc.stderr
    assert not (tmp_path / "bad.mp4").exists()


@pytest.mark.parametrize("packet", [b"", b"\x00\x00\x00\x07", b"\x00\x00\x00\x01x\x00\x00\x00\x09",
                                    b"\x00\x00\x00\x01\x65"])
def test_idr_check_survives_odd_packets(packet):
    """A crafted packet (a length running past its end, an empty unit) is simply not an IDR
    picture; only the last one here is (NAL type 5)."""
    from indexer.smartcut import is_idr
    assert is_idr(packet) is (packet == b"\x00\x00\x00\x01\x65")

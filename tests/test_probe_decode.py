"""Times come from pts and time_base: checked on generated videos whose every frame shows
its own time as a barcode (tests/videos.py), and on the real sample media."""

import logging
import random
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest

from core.config import DecodeSettings
from core.errors import BadVideo
from indexer.audio import decode_audio, iter_audio
from indexer.decode import sample_frames
from indexer.probe import probe
from videos import (LONG_EVENT_S, make_audio_only, make_long_video, make_video, mark_colour,
                    read_stamp, tone)

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"

# lengths from ../shared/media/SOURCES.md (rounded there to 0.1 s)
SAMPLES = {"people_walking_139s.mp4": 139.4, "car_detection_30s.mp4": 30.2,
           "pedestrians_80s.avi": 79.5, "big_buck_bunny_30s.webm": 30.0,
           "timer_text_61s.mp4": 61.0, "his_girl_friday_6s.mp4": 6.2}


@pytest.fixture(scope="session")
def long_video(tmp_path_factory):
    """3 h 1 min at 1 fps with a white-marked frame at 2:59:30, written once (~10 s)."""
    return make_long_video(tmp_path_factory.mktemp("long") / "long.mp4")


def check_exact(frames, truth, fps=1.0, start_ms=0):
    """Every sampled frame is the real frame nearest its target: its recorded time is the
    time its pixels show, and no frame of the file is nearer to the target."""
    assert frames
    interval = 1000 / fps
    k = int(np.ceil(start_ms / interval - 1e-9))
    prev = None
    for f in frames:
        assert read_stamp(f.image) == f.t_ms
        # targets whose nearest frame was given already (a slow stretch): yielded once
        while truth.nearest(k * interval) == prev:
            k += 1
        assert f.t_ms == truth.nearest(k * interval), (f.t_ms, k * interval)
        prev, k = f.t_ms, k + 1
    while k * interval <= truth.times_ms[-1]:       # no target left out at the end
        assert truth.nearest(k * interval) == prev, k * interval
        k += 1


def reorders(path) -> bool:
    """Does the file store frames out of presentation order (B-frames)?"""
    with av.open(str(path)) as c:
        pts = [p.pts for p in c.demux(video=0) if p.pts is not None]
    return any(b < a for a, b in zip(pts, pts[1:]))


@pytest.mark.parametrize("container", ["mp4", "ts", "mkv"])
def test_stream_starting_at_ten_seconds_counts_from_the_container_start(tmp_path, container):
    truth = make_video(tmp_path / f"start.{container}", duration_s=12, fps=10, start_pts_s=10)
    info = probe(truth.path)
    assert info.start_ms == 0 and abs(info.duration_ms - 12_000) <= 100
    frames = list(sample_frames(truth.path))
    assert [f.t_ms for f in frames] == [i * 1000 for i in range(12)]
    check_exact(frames, truth)
    chunk = list(sample_frames(truth.path, start_ms=3000, end_ms=6000))
    assert [(f.t_ms, read_stamp(f.image)) for f in chunk] == [(t, t) for t in (3000, 4000, 5000)]
    with av.open(str(truth.path)) as c:          # the raw pts is kept, not rebased
        tb, origin = c.streams.video[0].time_base, c.start_time / av.time_base
        assert origin >= 10
    for f in frames:
        assert abs(float(f.pts * tb) - origin - f.t_ms / 1000) < 1e-3


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_video_after_audio_start_and_audio_lines_up(tmp_path, container):
    # Sound from 1 s, picture from 2 s (pts); a beep at pts 3 s, under the frame stamped 1 s.
    sound = np.zeros(16000 * 6, np.float32)
    sound[32000:40000] = tone(0.5)
    truth = make_video(tmp_path / f"av.{container}", duration_s=5, fps=10, start_pts_s=2.0,
                       audio=sound, audio_start_s=1.0)
    info = probe(truth.path)
    frames = list(sample_frames(truth.path, fps=10))
    assert 900 <= info.start_ms <= 1100 and frames[0].t_ms == info.start_ms
    # the picture starts late: every frame is its stamp plus that offset
    assert all(f.t_ms - read_stamp(f.image) == info.start_ms for f in frames)
    beep_ms = next(f.t_ms for f in frames if read_stamp(f.image) == 1000)
    audio = decode_audio(truth.path)
    onset = np.flatnonzero(np.abs(audio) > 0.05)[0]
    assert abs(onset / 16 - beep_ms) <= 2
    # a window: sample 0 is at start_ms, to the millisecond
    part = decode_audio(truth.path, start_ms=beep_ms - 700, end_ms=beep_ms + 1300)
    assert len(part) == 2000 * 16
    assert abs(np.flatnonzero(np.abs(part) > 0.05)[0] / 16 - 700) <= 2
    assert np.array_equal(np.concatenate(list(iter_audio(truth.path))), audio)


def test_duration_covers_sound_after_the_picture(tmp_path):
    truth = make_video(tmp_path / "long_sound.mp4", duration_s=3, fps=10, audio=tone(6.0))
    assert abs(probe(truth.path).duration_ms - 6000) <= 100


@pytest.mark.parametrize("fps", [1.0, 2.5])
def test_variable_frame_rate(tmp_path, fps):
    truth = make_video(tmp_path / "vfr.mp4", duration_s=30, fps=10, vfr=True, seed=7)
    gaps = np.diff(truth.times_ms)
    assert gaps.min() <= 25 and gaps.max() >= 900      # bursts and long holds
    frames = list(sample_frames(truth.path, fps=fps))
    check_exact(frames, truth, fps)
    assert any(f.t_ms % 100 for f in frames)            # off-grid times come out as they are


@pytest.mark.parametrize("container", ["mp4", "ts"])
def test_b_frames(tmp_path, container):
    truth = make_video(tmp_path / f"b.{container}", duration_s=12, fps=25, bframes=3,
                       keyint=50)
    assert reorders(truth.path)
    # every frame, in presentation order, each with its own time
    every = list(sample_frames(truth.path, fps=25))
    assert [f.t_ms for f in every] == list(truth.times_ms)
    assert all(read_stamp(f.image) == f.t_ms for f in every)
    # an off-beat rate whose targets fall between frames, some nearest to B-frames
    for fps in (1.0, 7.0):
        frames = list(sample_frames(truth.path, fps=fps))
        check_exact(frames, truth, fps)
        same = list(sample_frames(truth.path, fps=fps, skip=False))
        assert [(f.t_ms, f.pts) for f in frames] == [(f.t_ms, f.pts) for f in same]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(frames, same))


def test_b_frames_with_variable_frame_rate(tmp_path):
    # Reordered and irregular: a frame's time is its own pts, which neither the decode order
    # nor the packet dts gives.
    truth = make_video(tmp_path / "bvfr.mp4", duration_s=30, fps=20, vfr=True, bframes=3,
                       keyint=40, seed=3)
    assert reorders(truth.path)
    for fps in (1.0, 4.0):
        check_exact(list(sample_frames(truth.path, fps=fps)), truth, fps)


@pytest.mark.parametrize("rotation,corner", [(90, "bottom_left"), (-90, "top_right"),
                                             (180, "bottom_right")])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation, corner):
    # A white block top-left of the stored picture. The display matrix turns the picture
    # counter-clockwise by its angle (FFmpeg's convention; a phone held upright records
    # -90): so 90 puts the block bottom-left, -90 top-right, 180 bottom-right.
    path = tmp_path / "rot.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.set_display_rotation(rotation)
        for i in range(10):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:32, :40] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    info = probe(path)
    assert info.rotation == rotation % 360
    assert (info.width, info.height) == ((96, 160) if rotation % 180 else (160, 96))
    image = next(sample_frames(path)).image
    assert image.shape[:2] == (info.height, info.width)
    h, w = image.shape[:2]
    corners = {"top_left": image[:h // 4, :w // 4], "top_right": image[:h // 4, -w // 4:],
               "bottom_left": image[-h // 4:, :w // 4],
               "bottom_right": image[-h // 4:, -w // 4:]}
    assert max(corners, key=lambda c: corners[c].mean()) == corner


def test_event_in_a_three_hour_video_is_placed_within_half_a_second(long_video):
    info = probe(long_video.path)
    assert info.duration_ms == (3 * 3600 + 60) * 1000
    # The 5-minute chunk that holds 2:59:30, read the way the pipeline reads chunks.
    start = (LONG_EVENT_S * 1000 // 300_000) * 300_000
    frames = list(sample_frames(long_video.path, start_ms=start, end_ms=start + 300_000))
    assert [f.t_ms for f in frames] == list(range(start, start + 300_000, 1000))
    white = [f for f in frames if min(mark_colour(f.image)) > 200]
    assert len(white) == 1
    assert abs(white[0].t_ms - LONG_EVENT_S * 1000) <= 500
    assert read_stamp(white[0].image) == white[0].t_ms


def test_memory_does_not_grow_with_length(long_video):
    """All 3 hours at 1 fps: what is held after 10 minutes is what is held after 3 hours."""
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    tracemalloc.start()
    try:
        n, mid = 0, None
        for f in sample_frames(long_video.path):
            n += 1
            if n == 600:
                mid = (tracemalloc.get_traced_memory()[0], rss())
            if n % 1000 == 0:
                assert read_stamp(f.image) == f.t_ms
        end = (tracemalloc.get_traced_memory()[0], rss())
    finally:
        tracemalloc.stop()
    assert n == 3 * 3600 + 60
    assert end[0] - mid[0] < 256 * 1024            # Python objects: nothing accumulates
    assert end[1] - mid[1] < 16 * 1024 * 1024      # nor FFmpeg's buffers


@pytest.mark.parametrize("fps", [1.0, 3.0])
def test_chunked_sampling_equals_one_pass(tmp_path, fps):
    truth = make_video(tmp_path / "grid.mp4", duration_s=30, fps=30, bframes=2, keyint=90)
    whole = [(f.t_ms, f.pts) for f in sample_frames(truth.path, fps=fps)]
    parts = []
    for start in range(0, 30_000, 7_000):
        parts += [(f.t_ms, f.pts) for f in
                  sample_frames(truth.path, start_ms=start, end_ms=start + 7_000, fps=fps)]
    assert parts == whole and len(whole) == round(30 * fps)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_probes_and_samples(name):
    path = MEDIA / name
    info = probe(path)
    assert abs(info.duration_ms / 1000 - SAMPLES[name]) <= 0.06
    frames = list(sample_frames(path))
    # The truth from the container: every frame's pts, read without decoding.
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        times = sorted(round((p.pts * s.time_base - c.start_time / av.time_base) * 1000)
                       for p in c.demux(s) if p.pts is not None)
    assert len(frames) == int((info.duration_ms - 1) / 1000) + 1
    for k, f in enumerate(frames):
        assert f.t_ms in times
        assert abs(f.t_ms - k * 1000) == min(abs(t - k * 1000) for t in times)
    h, w = frames[0].image.shape[:2]
    assert max(h, w) == min(448, max(info.width, info.height))
    assert abs(h - w * info.height / info.width) <= 2 and h % 2 == w % 2 == 0


def test_skipping_frames_changes_nothing_on_real_footage():
    path = MEDIA / "timer_text_61s.mp4"       # 30 fps H.264 with B-frames
    assert reorders(path)
    fast = list(sample_frames(path, fps=2))
    full = list(sample_frames(path, fps=2, skip=False))
    assert [(f.t_ms, f.pts) for f in fast] == [(f.t_ms, f.pts) for f in full]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(fast, full))


def test_audio_of_a_real_clip():
    path = MEDIA / "his_girl_friday_6s.mp4"
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / 16000 - 6.15) < 0.05 and np.abs(audio).max() > 0.05
    # a window is exactly that stretch of the whole
    part = decode_audio(path, start_ms=2000, end_ms=4000)
    assert len(part) == 32000
    assert np.corrcoef(part, audio[32000:64000])[0, 1] > 0.999


def test_no_audio_stream_gives_empty():
    assert decode_audio(MEDIA / "people_walking_139s.mp4").size == 0


# -- inputs that cannot be indexed ---------------------------------------------------------

def truncated_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[:int(len(data) * keep)])
    return dst


def corrupt_copy(src: Path, dst: Path) -> Path:
    data = bytearray(src.read_bytes())
    rng = random.Random(3)
    for i in range(len(data) // 3, len(data) // 3 + 40_000, 40):
        data[i] = rng.randrange(256)
    dst.write_bytes(bytes(data))
    return dst


def _bad_file(kind: str, tmp: Path) -> Path:
    if kind == "empty":
        path = tmp / "empty.mp4"
        path.write_bytes(b"")
    elif kind == "text":
        path = tmp / "notes.mp4"
        path.write_text("this is a text file, not a video\n" * 50)
    elif kind == "truncated_moov_first":          # index first, media cut off
        path = truncated_copy(MEDIA / "car_detection_30s.mp4", tmp / "cut_a.mp4")
    elif kind == "truncated_moov_last":           # index never written
        path = truncated_copy(make_video(tmp / "whole.mp4", duration_s=5).path,
                              tmp / "cut_b.mp4", 0.7)
    elif kind == "truncated_mkv":                 # declares 20 s, holds about 10
        path = truncated_copy(make_video(tmp / "whole.mkv", duration_s=20).path,
                              tmp / "cut.mkv")
    elif kind == "audio_only":
        path = make_audio_only(tmp / "speech.m4a")
    elif kind == "audio_with_cover_art":
        path = make_audio_only(tmp / "song.mp4", cover=True)
    elif kind == "unknown_codec":                 # an AVI FourCC no decoder knows
        path = tmp / "unknown_codec.avi"
        path.write_bytes((MEDIA / "pedestrians_80s.avi").read_bytes()
                         .replace(b"div3", b"zq9x", 2))
    elif kind == "undecodable":                   # H.264 declared, the data is noise
        raw = bytearray((MEDIA / "car_detection_30s.mp4").read_bytes())
        rng = random.Random(1)
        for i in range(raw.find(b"mdat") + 4, len(raw)):
            raw[i] = rng.randrange(256)
        path = tmp / "undecodable.mp4"
        path.write_bytes(bytes(raw))
    elif kind == "raw_stream":                    # H.264 with no container: no times
        source = make_video(tmp / "whole.mp4", duration_s=2).path
        path = tmp / "camera.h264"
        with av.open(str(source)) as src, av.open(str(path), "w", format="h264") as out:
            stream = out.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(video=0):
                if packet.size:
                    packet.stream = stream
                    out.mux(packet)
    elif kind == "huge":
        path = make_video(tmp / "huge.mkv", duration_s=0.2, size=(16384, 16)).path
    return path


BAD = {"empty": "empty", "text": "not a video file", "truncated_moov_first": "truncated",
       "truncated_moov_last": "truncated", "truncated_mkv": "truncated",
       "audio_only": "no video stream", "audio_with_cover_art": "no video stream",
       "unknown_codec": "unsupported video codec",
       "undecodable": "no picture could be decoded", "raw_stream": "no timestamps",
       "huge": "absurd resolution"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_inputs_raise_clear_errors(tmp_path, kind):
    path = _bad_file(kind, tmp_path)
    with pytest.raises(BadVideo) as err:      # never a raw av exception
        probe(path)
    message = str(err.value)
    assert BAD[kind] in message and path.name in message


def test_resolution_over_the_configured_limit(tmp_path):
    path = make_video(tmp_path / "small.mp4", duration_s=0.5).path
    with pytest.raises(BadVideo, match="absurd resolution 160x90"):
        probe(path, DecodeSettings(max_pixels=100 * 100))
    assert probe(path).width == 160


def test_corrupt_packets_in_the_middle_are_skipped(tmp_path, caplog):
    path = corrupt_copy(MEDIA / "car_detection_30s.mp4", tmp_path / "corrupt.mp4")
    assert probe(path).duration_ms > 29_000
    with caplog.at_level(logging.WARNING, logger="indexer.decode"):
        frames = list(sample_frames(path, skip=False))
    times = [f.t_ms for f in frames]
    assert times == sorted(set(times)) and times[-1] >= 29_000   # decoding went on past it
    assert len(frames) >= 28
    assert any("corrupt" in r.message or "bad packets" in r.message for r in caplog.records)


def test_truncated_stream_yields_what_there_is(tmp_path):
    truth = make_video(tmp_path / "whole.ts", duration_s=20, fps=25, bframes=3)
    path = truncated_copy(truth.path, tmp_path / "cut.ts", 0.5)
    frames = list(sample_frames(path))
    assert 8 <= len(frames) <= 12
    assert all(read_stamp(f.image) == f.t_ms for f in frames)

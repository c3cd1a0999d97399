"""Times come from pts and time_base: checked on generated videos whose every frame shows
its own time, and on the real sample media."""

import random
from pathlib import Path

import numpy as np
import pytest

from core.errors import BadVideo
from indexer.decode import decode_audio, sample_frames
from indexer.probe import probe
from videos import grey, read_grey, write_audio_only, write_video

# durations read with PyAV, from ../shared/media/SOURCES.md
SAMPLES = {"people_walking_139s.mp4": 139.4, "car_detection_30s.mp4": 30.2,
           "pedestrians_80s.avi": 79.5, "big_buck_bunny_30s.webm": 30.0,
           "timer_text_61s.mp4": 61.0, "his_girl_friday_6s.mp4": 6.2}


def content_ms(frame) -> int:
    """The time the frame's pixels say it was shown at (grey level = tenths of a second)."""
    return read_grey(frame.image) * 100


@pytest.mark.parametrize("container", ["mp4", "ts", "mkv"])
def test_non_zero_start_pts(tmp_path, container):
    # The stream starts at 10 s (MPEG-TS keeps that offset and adds its own); time zero is
    # the container start, as a player shows it.
    path = write_video(tmp_path / f"start.{container}", [i / 10 for i in range(200)], grey,
                       start_s=10.0)
    info = probe(path)
    assert 19_000 <= info.duration_ms <= 20_500 and info.start_ms == 0
    frames = list(sample_frames(path))
    assert [f.t_ms for f in frames] == [i * 1000 for i in range(20)]
    for f in frames:
        assert abs(content_ms(f) - f.t_ms) <= 200


def test_variable_frame_rate(tmp_path):
    rng = random.Random(7)
    times, t = [], 0.0
    while t < 20:
        times.append(round(t, 3))
        t += rng.choice([0.04, 0.04, 0.1, 0.3, 0.7])     # bursts and gaps
    path = write_video(tmp_path / "vfr.mp4", times, grey)
    truth = np.array(times) * 1000
    frames = list(sample_frames(path, fast=False))
    assert frames
    for f in frames:
        target = round(f.t_ms / 1000) * 1000
        assert f.t_ms in set(truth.round().astype(int).tolist())   # a real frame's own time
        assert abs(f.t_ms - target) == np.abs(truth - target).min()  # the nearest one
        assert abs(content_ms(f) - f.t_ms) <= 200


@pytest.mark.parametrize("fast", [False, True])
def test_b_frames(tmp_path, fast):
    path = write_video(tmp_path / "b.mp4", [i / 25 for i in range(25 * 20)], grey, bframes=3)
    frames = list(sample_frames(path, fast=fast))
    assert len(frames) == 20
    for i, f in enumerate(frames):
        assert abs(f.t_ms - i * 1000) <= (0 if not fast else 100)
        assert abs(content_ms(f) - f.t_ms) <= 200
        assert f.pts is not None


def test_rotation_metadata_gives_upright_frames(tmp_path):
    # Left half white: after a 90 degree turn counter-clockwise it is the bottom half.
    def colour(t):
        return (200, 200, 200)
    path = tmp_path / "rot.mp4"
    import av
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 160, 96, "yuv420p"
        s.set_display_rotation(90)
        for i in range(10):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, :80] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    info = probe(path)
    assert (info.width, info.height, info.rotation) == (96, 160, 90)
    image = next(iter(sample_frames(path))).image
    assert image.shape[:2] == (160, 96)
    assert image[120:].mean() > 200 and image[:40].mean() < 50


def test_event_in_a_three_hour_video_is_placed_within_half_a_second(tmp_path):
    event = 2 * 3600 + 59 * 60 + 30
    # 1 fps for 3 h, 160x90, with a white frame at 2:59:30 and its neighbours black.
    times = [float(i) for i in range(3 * 3600 + 60)]
    path = write_video(tmp_path / "long.mp4", times,
                       lambda t: (255, 255, 255) if t == event else (0, 0, 0),
                       options={"x264-params": "keyint=300"})
    assert abs(probe(path).duration_ms - (3 * 3600 + 60) * 1000) <= 1000
    # The chunk that holds it, read the way the pipeline reads chunks.
    start = (event * 1000 // 300_000) * 300_000
    white = [f.t_ms for f in sample_frames(path, start_ms=start, end_ms=start + 300_000)
             if f.image.mean() > 128]
    assert len(white) == 1 and abs(white[0] - event * 1000) <= 500


def test_chunked_sampling_equals_one_pass(tmp_path):
    path = write_video(tmp_path / "grid.mp4", [i / 30 for i in range(30 * 30)], grey)
    whole = [f.t_ms for f in sample_frames(path)]
    parts = []
    for start in range(0, 30_000, 7_000):
        parts += [f.t_ms for f in sample_frames(path, start_ms=start, end_ms=start + 7_000)]
    assert parts == whole


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_probes_and_samples(media, name):
    info = probe(media / name)
    assert abs(info.duration_ms / 1000 - SAMPLES[name]) < 0.3
    frames = list(sample_frames(media / name))
    assert abs(len(frames) - SAMPLES[name]) <= 1.5
    assert max(abs(f.t_ms - i * 1000) for i, f in enumerate(frames)) <= 100
    assert max(frames[0].image.shape[:2]) == 448


def test_audio_is_16k_mono_and_positioned(media):
    audio = decode_audio(media / "his_girl_friday_6s.mp4")
    assert audio.dtype == np.float32 and abs(len(audio) / 16000 - 6.17) < 0.1
    part = decode_audio(media / "his_girl_friday_6s.mp4", start_ms=2000, end_ms=4000)
    assert len(part) == 32000
    # the slice is the same sound as that span of the whole
    whole = audio[32000:64000]
    lag = max(range(-400, 401), key=lambda d: float(part @ audio[32000 + d:64000 + d]))
    assert lag == 0 and np.corrcoef(part, whole)[0, 1] > 0.95


def test_no_audio_gives_empty(media):
    assert decode_audio(media / "people_walking_139s.mp4").size == 0


def truncated(media, tmp_path):
    data = (media / "car_detection_30s.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_middle(media, tmp_path):
    data = bytearray((media / "car_detection_30s.mp4").read_bytes())
    rng = random.Random(3)
    for i in range(len(data) // 3, len(data) // 3 + 20_000, 50):
        data[i] = rng.randrange(256)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    return path


def bad_inputs(media, tmp_path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain)"""
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 50)
    # An AVI whose video FourCC no decoder knows.
    unknown = tmp_path / "unknown_codec.avi"
    unknown.write_bytes((media / "pedestrians_80s.avi").read_bytes().replace(b"div3", b"zq9x", 2))
    # A video stream FFmpeg can describe but not decode: an MP4 whose H.264 data is garbage
    # with no parameter sets.
    junk = tmp_path / "undecodable.mp4"
    raw = bytearray((media / "car_detection_30s.mp4").read_bytes())
    mdat = raw.find(b"mdat")
    rng = random.Random(1)
    for i in range(mdat + 4, len(raw)):
        raw[i] = rng.randrange(256)
    junk.write_bytes(bytes(raw))
    huge = write_video(tmp_path / "huge.mkv", [0.0, 0.1], grey, size=(16384, 16))
    return {
        "empty": (empty, "empty"),
        "truncated": (truncated(media, tmp_path), "truncated"),
        "audio_only": (write_audio_only(tmp_path / "audio.m4a"), "no video stream"),
        "text": (text, "not a video file"),
        "unknown_codec": (unknown, "unsupported video codec"),
        "undecodable": (junk, "decoded"),
        "absurd": (huge, "resolution"),
    }


def test_bad_inputs_raise_clear_errors(media, tmp_path):
    for name, (path, words) in bad_inputs(media, tmp_path).items():
        with pytest.raises(BadVideo) as err:
            probe(path)
        assert words in str(err.value), (name, str(err.value))
        assert path.name in str(err.value)


def test_corrupt_packets_are_skipped(media, tmp_path):
    frames = list(sample_frames(corrupt_middle(media, tmp_path)))
    assert len(frames) >= 25       # most of the 30 s survive
    assert [f.t_ms for f in frames] == sorted(f.t_ms for f in frames)

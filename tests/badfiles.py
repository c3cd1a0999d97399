"""Files a user might hand chronoscope that it must refuse clearly, built from the samples."""

import random
from pathlib import Path

import av
import numpy as np

MEDIA = Path(__file__).resolve().parent.parent.parent / "shared" / "media"


def truncated(tmp: Path) -> Path:
    data = (MEDIA / "car_detection_30s.mp4").read_bytes()
    path = tmp / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupt_middle(tmp: Path) -> Path:
    data = bytearray((MEDIA / "car_detection_30s.mp4").read_bytes())
    rng = random.Random(3)
    for i in range(len(data) // 3, len(data) // 3 + 20_000, 50):
        data[i] = rng.randrange(256)
    path = tmp / "corrupt.mp4"
    path.write_bytes(bytes(data))
    return path


def audio_only(tmp: Path) -> Path:
    path = tmp / "audio.m4a"
    tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(32000) / 16000)).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(0, len(tone), 1024):
            frame = av.AudioFrame.from_ndarray(tone[i:i + 1024].reshape(1, -1), format="flt",
                                               layout="mono")
            frame.sample_rate, frame.pts = 16000, i
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path


def absurd(tmp: Path) -> Path:
    path = tmp / "huge.mkv"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = 16384, 16, "yuv420p"
        s.options = {"preset": "ultrafast"}
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16384, 3), np.uint8), format="rgb24")
            frame.pts = i
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words its error must contain)"""
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 50)
    unknown = tmp / "unknown_codec.avi"     # an AVI whose video FourCC no decoder knows
    unknown.write_bytes((MEDIA / "pedestrians_80s.avi").read_bytes().replace(b"div3", b"zq9x", 2))
    return {
        "empty": (empty, "empty"),
        "truncated": (truncated(tmp), "truncated"),
        "audio_only": (audio_only(tmp), "no video stream"),
        "text": (text, "not a video file"),
        "unknown_codec": (unknown, "unsupported video codec"),
        "absurd": (absurd(tmp), "resolution"),
    }

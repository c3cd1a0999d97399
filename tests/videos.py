"""Deterministic test videos with known content at known times, written with PyAV.

Each frame shows a grey level or a solid mark chosen by the caller, so a test can tell from
the pixels which frame it got and compare the reported time with the truth."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_video(path: Path, times_s: list[float], colour_at, *, size=(160, 90),
                codec: str = "libx264", time_base=Fraction(1, 1000), start_s: float = 0.0,
                bframes: int = 0, rotation: int | None = None, audio: np.ndarray | None = None,
                options: dict | None = None) -> Path:
    """One frame per entry of times_s (seconds, strictly increasing: irregular gaps make a
    variable frame rate), pts = (start_s + t) / time_base; colour_at(t) gives its RGB."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=max(1, round(len(times_s) / max(times_s[-1], 1e-3))))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        opts = {"preset": "ultrafast", "tune": "zerolatency"} if codec == "libx264" else {}
        if codec == "libx264":
            opts["x264-params"] = f"bframes={bframes}:keyint=30" if bframes else "keyint=30"
            if bframes:
                opts.pop("tune")
        opts.update(options or {})
        stream.options = opts
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=16000)
            astream.layout = "mono"
        for t in times_s:
            img = np.empty((size[1], size[0], 3), np.uint8)
            img[:] = colour_at(t)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round((start_s + t) / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            write_audio(out, astream, audio, start_s)
    return path


def write_audio(out, astream, samples: np.ndarray, start_s: float = 0.0) -> None:
    step = 1024
    for i in range(0, len(samples), step):
        chunk = samples[i:i + step].astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = 16000
        frame.pts = round(start_s * 16000) + i
        frame.time_base = Fraction(1, 16000)
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def write_audio_only(path: Path, seconds: float = 2.0) -> Path:
    tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)
    with av.open(str(path), "w") as out:
        astream = out.add_stream("aac", rate=16000)
        astream.layout = "mono"
        write_audio(out, astream, tone)
    return path


def grey(t: float) -> tuple[int, int, int]:
    """A level that encodes time to about 0.1 s over 25 s, so a frame's pixels say when it
    was shown (wraps every 25.5 s)."""
    v = int(round(t * 10)) % 255
    return (v, v, v)


def read_grey(image: np.ndarray) -> int:
    return int(round(float(image.mean())))

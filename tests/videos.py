"""Deterministic test videos with known content at known times, written with PyAV.

Every frame of `make_video` carries its own presentation time, in milliseconds, as a
barcode of 24 large black/white blocks in its upper two thirds (robust to any compression
a test uses), so a test can read from the pixels which frame it got and compare that with
the time it was given. The lower third is a solid colour: dark grey, or the colour of a
mark the caller placed at that time.
"""

import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 24                 # 2**24 ms = 4.6 h
COLS, ROWS = 8, 3
BACKGROUND = (48, 48, 48)


@dataclass(frozen=True)
class Truth:
    path: Path
    times_ms: tuple[int, ...]      # every frame's presentation time, from the first frame
    size: tuple[int, int]          # width, height as encoded
    marks: dict[int, tuple] = field(default_factory=dict)    # ms -> RGB of the lower third

    def nearest(self, target_ms: float) -> int:
        """The frame time nearest to a target (ties go to the earlier frame)."""
        times = np.asarray(self.times_ms)
        i = int(np.searchsorted(times, target_ms))
        cands = [times[j] for j in (i - 1, i) if 0 <= j < len(times)]
        return int(min(cands, key=lambda t: (abs(t - target_ms), t)))


def stamp(image: np.ndarray, t_ms: int) -> None:
    """Draw t_ms as a barcode over the upper two thirds of an RGB image, in place."""
    h, w = image.shape[:2]
    bw, bh = w // COLS, (2 * h // 3) // ROWS
    for bit in range(BITS):
        r, c = divmod(bit, COLS)
        image[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = 255 if (t_ms >> bit) & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    """The time a frame's barcode says (any size: it is read in proportion)."""
    h, w = image.shape[:2]
    bw, bh = w / COLS, (2 * h / 3) / ROWS
    value = 0
    for bit in range(BITS):
        r, c = divmod(bit, COLS)
        # the middle of the block, clear of edges smeared by scaling and compression
        block = image[int((r + .3) * bh):int((r + .7) * bh), int((c + .3) * bw):int((c + .7) * bw)]
        if block.mean() > 128:
            value |= 1 << bit
    return value


def mark_colour(image: np.ndarray) -> tuple[int, int, int]:
    h = image.shape[0]
    return tuple(int(round(v)) for v in image[int(h * 0.8):int(h * 0.95)].reshape(-1, 3)
                 .mean(axis=0))


def vfr_times(duration_s: float, fps: float, seed: int = 0) -> list[float]:
    """Irregular frame times averaging roughly fps: bursts, normal runs and long holds."""
    rng = random.Random(seed)
    times, t = [], 0.0
    while t < duration_s:
        times.append(round(t, 3))
        t += rng.choice([0.25, 0.5, 1, 1, 1, 2, 5, 9]) / fps
    return times


def make_video(path: Path, *, duration_s: float = 10.0, fps: float = 10.0,
               size: tuple[int, int] = (160, 90), codec: str = "libx264",
               start_pts_s: float = 0.0, vfr: bool = False, bframes: int = 0,
               keyint: int | None = None, rotation: int | None = None,
               marks: dict[float, tuple] | None = None, times_s: list[float] | None = None,
               audio: np.ndarray | None = None, audio_start_s: float | None = None,
               time_base: Fraction = Fraction(1, 1000), seed: int = 0) -> Truth:
    """Write a stamped video and return its ground truth.

    times_s (or a regular fps grid over duration_s, or with vfr an irregular one) are the
    frames' times from the first frame; their pts are (start_pts_s + t) / time_base.
    bframes > 0 makes x264 use that many B-frames (pts then differ from decode order).
    rotation sets a display matrix (the picture is stored unrotated). marks colour the
    lower third of the frame at each given time. audio (mono float32 at 16 kHz) is muxed
    as AAC starting at audio_start_s (default start_pts_s)."""
    path = Path(path)
    if times_s is None:
        times_s = vfr_times(duration_s, fps, seed) if vfr else \
            [round(i / fps, 6) for i in range(max(1, round(duration_s * fps)))]
    times_ms = [round(t * 1000) for t in times_s]
    marks_ms = {round(t * 1000): tuple(c) for t, c in (marks or {}).items()}
    missing = set(marks_ms) - set(times_ms)
    if missing:
        raise ValueError(f"marks at times with no frame: {sorted(missing)}")
    w, h = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        if codec == "libx264":
            params = [f"bframes={bframes}", f"keyint={keyint or 2 * round(fps) or 1}",
                      "threads=1"]           # one thread: byte-identical output every run
            if bframes:
                params.append("b-adapt=0")   # a fixed B pattern: every mini-GOP reorders
            stream.options = {"preset": "ultrafast", "x264-params": ":".join(params)}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=16000)
            astream.layout = "mono"
        img = np.empty((h, w, 3), np.uint8)
        for t, t_ms in zip(times_s, times_ms):
            img[:] = marks_ms.get(t_ms, BACKGROUND)
            stamp(img, t_ms)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = round((start_pts_s + t) / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            write_audio(out, astream, audio,
                        start_pts_s if audio_start_s is None else audio_start_s)
    return Truth(path, tuple(times_ms), size, marks_ms)


def write_audio(out, astream, samples: np.ndarray, start_s: float = 0.0) -> None:
    step = 1024
    for i in range(0, len(samples), step):
        chunk = np.ascontiguousarray(samples[i:i + step], np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = 16000
        frame.pts = round(start_s * 16000) + i
        frame.time_base = Fraction(1, 16000)
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def tone(seconds: float, freq: float = 440.0, rate: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)
            ).astype(np.float32)


def speak(text: str, *, words_per_minute: int = 150, rate: int = 16000) -> np.ndarray:
    """The sentence spoken by espeak-ng, mono float32 at `rate` (espeak writes 22.05 kHz;
    resampled by interpolation)."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-s", str(words_per_minute), "-w", tmp.name, text],
                       check=True)
        with wave.open(tmp.name) as w:
            native = w.getframerate()
            data = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32768.0
    t = np.arange(0, len(data) / native, 1 / rate)
    return np.interp(t, np.arange(len(data)) / native, data).astype(np.float32)


def make_audio_only(path: Path, seconds: float = 2.0, cover: bool = False) -> Path:
    """An AAC file with sound and no picture; with cover, an album-art image (a 'video'
    stream marked as an attached picture), as music files have."""
    with av.open(str(path), "w") as out:
        astream = out.add_stream("aac", rate=16000)
        astream.layout = "mono"
        if cover:
            art = out.add_stream("png")
            art.width, art.height, art.pix_fmt = 64, 64, "rgb24"
            art.disposition = av.stream.Disposition.attached_pic
            image = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), "rgb24")
            for packet in [*art.encode(image), *art.encode()]:
                out.mux(packet)
        write_audio(out, astream, tone(seconds))
    return Path(path)


LONG_EVENT_S = 2 * 3600 + 59 * 60 + 30       # 2:59:30


def make_long_video(path: Path, *, duration_s: int = 3 * 3600 + 60,
                    event_s: int = LONG_EVENT_S) -> Truth:
    """3 h 1 min at 1 fps, 160x90: every frame stamped with its time, and one frame, at
    2:59:30, with a white lower third. Long GOPs (5 min) like a real low-motion recording.
    About 10 s to write."""
    return make_video(path, duration_s=duration_s, fps=1, keyint=300,
                      marks={event_s: (255, 255, 255)})


def make_bench_video(path: Path, *, minutes: float = 10.0, fps: int = 30,
                     size: tuple[int, int] = (1280, 720)) -> Path:
    """A 720p H.264 video that is not trivially compressible, written once and cached:
    a camera pan over a multi-scale texture, textured objects crossing it and a little
    sensor grain, encoded like a typical upload (x264 CRF 23, B-frames, 250-frame GOPs).
    Written to a temporary name and renamed, so an interrupted run leaves no half file."""
    path = Path(path)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    rng = np.random.default_rng(0)
    # Texture: noise summed over octaves (roughly 1/f, like natural scenes), 2x the frame.
    tw, th = 2 * w, 2 * h
    tex = np.zeros((th, tw), np.float32)
    for octave in range(1, 8):
        cell = 2 ** octave
        small = rng.standard_normal((th // cell + 2, tw // cell + 2)).astype(np.float32)
        tex += np.kron(small, np.ones((cell, cell), np.float32))[:th, :tw] * cell ** 0.5
    tex = ((tex - tex.min()) / (tex.max() - tex.min()) * 200 + 28).astype(np.uint8)
    chroma = np.stack([np.roll(tex[::2, ::2], 37, axis=0), np.roll(tex[::2, ::2], 91, axis=1)])
    grain = rng.integers(-3, 4, (8, h, w), dtype=np.int16)
    sprites = [rng.integers(0, 256, (96, 128), dtype=np.uint8) for _ in range(3)]
    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "superfast", "crf": "23",
                          "x264-params": "keyint=250:bframes=3"}
        yuv = np.empty((h * 3 // 2, w), np.uint8)
        for i in range(int(minutes * 60 * fps)):
            s = i / fps
            # Smooth pan along a Lissajous path, kept on even pixels for the chroma planes.
            x = int((np.sin(s * 0.21) + 1) / 2 * (tw - w)) & ~1
            y = int((np.sin(s * 0.13 + 1) + 1) / 2 * (th - h)) & ~1
            luma = tex[y:y + h, x:x + w].astype(np.int16) + grain[i % 8]
            for j, sp in enumerate(sprites):
                sx = int((s * (90 + 40 * j) + 300 * j) % (w - 128))
                sy = int((np.sin(s * (0.5 + j)) + 1) / 2 * (h - 96))
                luma[sy:sy + 96, sx:sx + 128] = sp
            yuv[:h] = np.clip(luma, 0, 255)
            cu = chroma[0, y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2]
            cv = chroma[1, y // 2:y // 2 + h // 2, x // 2:x // 2 + w // 2]
            # yuv420p as one array: Y rows, then U and V, each quarter-size, packed in rows.
            yuv[h:h + h // 4] = cu.reshape(h // 4, w)
            yuv[h + h // 4:] = cv.reshape(h // 4, w)
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    shutil.move(tmp, path)
    return path

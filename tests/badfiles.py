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


# -- hostile inputs (issue 12): times, stills, look-alikes, and what fuzzing mutates ---------

DAY_S = 86400


def timed_mkv(tmp: Path, name: str, times_s: list[float], size=(160, 90)) -> Path:
    """An MKV whose frames sit at exactly these times (pts, not a rate)."""
    from videos import make_video
    return make_video(tmp / name, times_s=times_s, fps=10, size=size).path


def gap_mkv(tmp: Path) -> Path:
    """2 s of video, then one frame 30 days later: 2 KB that claims a month."""
    return timed_mkv(tmp, "gap.mkv", [0, 0.5, 1, 1.5, 2, 30 * DAY_S])


def far_frame_mkv(tmp: Path) -> Path:
    """One frame, at 30 days."""
    return timed_mkv(tmp, "far.mkv", [30 * DAY_S])


def dense_month_mkv(tmp: Path) -> Path:
    """A frame every 400 s for 30 days: no gap, but times past int32 milliseconds (24.8
    days) and far past any duration limit."""
    return timed_mkv(tmp, "month.mkv", [i * 400.0 for i in range(30 * DAY_S // 400 + 1)],
                     size=(64, 36))


def html_after_mp4(tmp: Path) -> Path:
    path = tmp / "with_html.mp4"
    path.write_bytes((MEDIA / "his_girl_friday_6s.mp4").read_bytes()
                     + b"<html><body><script>alert(1)</script></body></html>\n" * 20)
    return path


def html_named_mp4(tmp: Path) -> Path:
    path = tmp / "download.mp4"
    path.write_text("<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
                    "<body><h1>Not Found</h1></body></html>\n")
    return path


def still(tmp: Path, fmt: str) -> Path:
    from PIL import Image
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8))
    path = tmp / f"picture.{fmt.lower()}"
    image.save(path, format=fmt)
    return path


def mutate(data: bytes, ops: list[tuple]) -> bytes:
    """Apply byte flips ("flip", at, value), cuts ("cut", at) and splices ("splice", src,
    dst, length: a copy of one stretch over another), positions as fractions of the size."""
    out = bytearray(data)
    for op in ops:
        n = len(out)
        if n == 0:
            break
        if op[0] == "flip":
            out[min(int(op[1] * n), n - 1)] = op[2]
        elif op[0] == "cut":
            del out[max(1, int(op[1] * n)):]
        else:
            src, dst = int(op[1] * n), int(op[2] * n)
            piece = out[src:src + op[3]]
            out[dst:dst + len(piece)] = piece
    return bytes(out)


def check_media(path: Path, *, max_ms: int = 8000) -> str:
    """Probe and a bounded decode (the first max_ms of picture and sound). Returns "refused"
    (a BadVideo or other ChronoscopeError) or "ok" after checking every time is inside the
    span and increasing; any other exception is a crash and propagates."""
    from core.errors import ChronoscopeError
    from indexer.audio import decode_audio
    from indexer.decode import sample_frames
    from indexer.probe import probe
    try:
        info = probe(path)
    except ChronoscopeError:
        return "refused"
    assert 0 < info.duration_ms <= 24 * 3600 * 1000, info
    end = min(info.duration_ms, max_ms)
    times = [f.t_ms for f in sample_frames(path, end_ms=end, max_side=64)]
    assert times == sorted(set(times)), times
    assert all(0 <= t <= info.duration_ms for t in times), (times, info.duration_ms)
    audio = decode_audio(path, end_ms=end) if info.has_audio else np.zeros(0, np.float32)
    assert len(audio) <= 16 * end + 16, (len(audio), end)
    return "ok"

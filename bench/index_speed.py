"""Indexing speed: x realtime end to end and per signal, against decode-only, in one run.

    .venv/bin/python bench/index_speed.py [--minutes 60] [--rss-every 1] [--profile out.prof]
    .venv/bin/python bench/index_speed.py --minutes 5      # quick check

The video (640x360, 25 fps H.264 + AAC, written once into bench/.cache/) has continuous
speech (espeak-ng sentences, one after another, looped to the length asked) and a text slide
that changes every 20 s. In one process and one run:

1. decode-only: what the pipeline decodes per chunk, with no models: the chunk's frames at
   the screen-text size (indexer.decode.sample_frames, as signals.ChunkContext does) and its
   audio with the overlap (indexer.audio.decode_audio);
2. the real pipeline end to end (indexer.pipeline.index_video, in-process, default settings,
   a fresh SQLite home): speech, screen text, text embeddings, chapters, index sync;
3. each signal alone over the first chunk, one after another, for its CPU seconds (in 2 the
   signals share the cores, so the process's CPU clock cannot be split between them).

Printed: x realtime of each and their ratio (on a shared machine the ratio is the figure to
compare), CPU seconds (this process and its Tesseract children: on a shared machine the
stable figure), the time per signal, and this process's RSS after every --rss-every chunks (it must
stay flat). The visual-embedding signal is left off (CHRONOSCOPE_VISUAL__ENABLED=false), as
are Qwen3-VL captions (no model configured): this measures the CPU signals."""

import argparse
import math
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CHRONOSCOPE_VISUAL__ENABLED"] = "false"

from core.config import Settings  # noqa: E402
from indexer import pipeline, signals  # noqa: E402
from videos import speak  # noqa: E402

from index_memory import rss_mb  # noqa: E402  (bench/ is this script's own folder)

SIZE, FPS, RATE, SLIDE_S = (640, 360), 25, 16_000, 20
TOPICS = ["budget", "hiring plan", "office move", "product launch", "security review",
          "customer survey", "quarterly targets", "data migration", "travel policy",
          "training program", "cloud costs", "support backlog"]
SENTENCES = [
    "Welcome back everyone, today we go through the {t} in some detail.",
    "The main question about the {t} is how much time it needs from each team.",
    "Last month we agreed that the {t} should be ready before the summer.",
    "If you look at the numbers, the {t} is slightly behind where we wanted it.",
    "Please send your comments on the {t} to the project channel by Friday.",
]


def speech_track(seconds: int) -> np.ndarray:
    """Sentences one after another with a short breath between them, looped."""
    clips = []
    for topic in TOPICS:
        for sentence in SENTENCES:
            clips += [speak(sentence.format(t=topic), words_per_minute=160, rate=RATE),
                      np.zeros(RATE * 3 // 10, np.float32)]
    loop = np.concatenate(clips)
    reps = -(-seconds * RATE // len(loop))
    audio = np.tile(loop, reps)[:seconds * RATE]
    return audio + np.random.default_rng(0).normal(0, 0.001, audio.size).astype(np.float32)


def slide(n: int) -> np.ndarray:
    img = Image.new("RGB", SIZE, (248, 248, 240))
    draw = ImageDraw.Draw(img)
    topic = TOPICS[n % len(TOPICS)]
    draw.text((40, 30), f"{n + 1}. {topic.title()}", fill=(20, 20, 90),
              font=ImageFont.load_default(size=40))
    font = ImageFont.load_default(size=26)
    for i, line in enumerate([f"Owner: team {n % 5 + 1}", f"Status: week {n % 9 + 2}",
                              f"Next step: review the {topic}"]):
        draw.text((60, 120 + 50 * i), "- " + line, fill=(10, 10, 10), font=font)
    return np.asarray(img)


def make_video(path: Path, minutes: int) -> Path:
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = minutes * 60
    audio = speech_track(seconds)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = *SIZE, "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23", "x264-params": "keyint=250"}
        aus = out.add_stream("aac", rate=RATE)
        aus.layout = "mono"
        for n in range(seconds // SLIDE_S + 1):
            pixels = slide(n)
            for i in range(min(SLIDE_S, seconds - n * SLIDE_S) * FPS):
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts, frame.time_base = n * SLIDE_S * FPS + i, Fraction(1, FPS)
                for p in vs.encode(frame):
                    out.mux(p)
        for p in vs.encode():
            out.mux(p)
        for i in range(0, len(audio), 1024):
            af = av.AudioFrame.from_ndarray(audio[i:i + 1024].reshape(1, -1), format="flt",
                                            layout="mono")
            af.sample_rate, af.pts, af.time_base = RATE, i, Fraction(1, RATE)
            for p in aus.encode(af):
                out.mux(p)
        for p in aus.encode():
            out.mux(p)
    tmp.rename(path)
    return path


def decode_only(settings: Settings, path: Path) -> float:
    """Seconds to decode what the pipeline decodes, chunk by chunk, with no model."""
    from indexer.audio import decode_audio
    from indexer.decode import sample_frames
    from indexer.plan import plan_chunks
    from indexer.probe import probe
    start = time.perf_counter()
    info = probe(path, settings.decode)
    overlap = round(settings.chunk.overlap_s * 1000)
    for span in plan_chunks(info.duration_ms, length_ms=round(settings.chunk.length_s * 1000),
                            max_chunks=settings.decode.max_chunks):
        for _ in sample_frames(path, start_ms=span.start_ms, end_ms=span.end_ms,
                               fps=settings.decode.fps, max_side=settings.ocr.max_side):
            pass
        a, b = span.read_range(overlap, info.duration_ms)
        decode_audio(path, start_ms=a, end_ms=b)
    return time.perf_counter() - start


def timed(times: dict, name: str, fn):
    """fn, adding its wall and CPU seconds to times[name]. CPU: this process (all threads) and
    its finished children (Tesseract runs as one): on a shared machine, what the work costs."""
    def wrapper(*args, **kwargs):
        wall, cpu = time.perf_counter(), cpu_s()
        try:
            return fn(*args, **kwargs)
        finally:
            times[name][0] += time.perf_counter() - wall
            times[name][1] += cpu_s() - cpu
    return wrapper


def cpu_s() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def instrument(times: dict) -> None:
    """Time each signal, the embeddings, chapters and index sync where the pipeline calls
    them (module attributes looked up at call time), without touching the pipeline."""
    from indexer import chapters, index_sync
    run, embed = signals.run, signals.embed
    signals.run = lambda signal, ctx: timed(times, signal, run)(signal, ctx)
    signals.embed = timed(times, "embeddings", embed)
    chapters.build_summary = timed(times, "chapters", chapters.build_summary)
    index_sync.sync = timed(times, "index sync", index_sync.sync)


def load_models() -> None:
    from model import embed, ocr, speech
    settings = Settings()
    speech.model_id(settings), embed.model_id(settings), ocr.model_id(settings)
    embed.embed(["warm up"], settings=settings)     # the document backend loads on first use


def per_signal(settings: Settings, vid: str, path: Path) -> None:
    """Each signal alone (with its embeddings) over the indexed video's first chunk, one after
    another: their CPU seconds, which the end-to-end run, where they share the cores, cannot
    split. Nothing is stored but the shots, as the run stored them."""
    from indexer.plan import plan_chunks
    from indexer.probe import probe
    times: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    info = probe(path, settings.decode)
    span = plan_chunks(info.duration_ms, length_ms=round(settings.chunk.length_s * 1000))[0]
    ctx = signals.ChunkContext(settings, vid, path, span, info.duration_ms, info.has_audio)
    timed(times, "decode", ctx.frames)()
    for name in signals.enabled(settings, has_audio=info.has_audio):
        timed(times, name, signals.produce)(name, ctx)
    for name, (wall, cpu) in times.items():
        seconds = (span.end_ms - span.start_ms) / 1000
        print(f"  {name:<12} {wall:7.1f} s wall {cpu:7.1f} CPU-s  "
              f"{seconds / max(cpu, 1e-9):7.1f} video s per CPU-s")


def end_to_end(path: Path, args, times: dict, decode_s: float) -> None:
    """Index the video in a fresh home (profiled with --profile), report, then time each
    signal alone in the same home."""
    rss: list[float] = []

    def progress(done_ms: int, total_ms: int, stage: str | None) -> None:
        # A chunk ends where the next one starts decoding, or where finalize begins.
        if stage not in ("decode", "finalize") or not done_ms:
            return
        chunk_ms = settings.chunk.length_s * 1000
        done, total = math.ceil(done_ms / chunk_ms), math.ceil(total_ms / chunk_ms)
        if done % args.rss_every == 0 or done == total:
            rss.append(rss_mb())
            print(f"  chunk {done}/{total}: RSS {rss[-1]:.0f} MB, "
                  f"{time.perf_counter() - start:.0f} s", flush=True)

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home))
        vid = pipeline.add_video(settings, path)
        profiler = None
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
        start, cpu = time.perf_counter(), cpu_s()
        pipeline.index_video(settings, vid, on_progress=progress)
        total = [time.perf_counter() - start, cpu_s() - cpu]
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        report(args.minutes * 60, decode_s, total, times, rss)
        print(f"each signal alone on the first chunk ({settings.chunk.length_s:.0f} s), with "
              "its embeddings; decode = the chunk's frames, shared by the frame signals:")
        per_signal(settings, vid, path)


def report(duration: int, decode_s: float, total: list[float], times: dict,
           rss: list[float]) -> None:
    elapsed = total[0]
    print(f"end to end: {elapsed:.1f} s = {duration / elapsed:.1f}x realtime "
          f"({decode_s / elapsed:.2f} of decode-only speed); load average "
          f"{os.getloadavg()[0]:.1f}")
    load = times.pop("model load")
    print(f"  CPU: {total[1]:.1f} CPU-s = {duration / total[1]:.1f} video s per CPU-s "
          f"(x realtime if it had one core to itself)")
    print(f"  (model load before it, not included: {load[0]:.1f} s wall, {load[1]:.1f} CPU-s)")
    # Signals run side by side, so their wall times overlap and the process's CPU clock
    # cannot be split between them here: their CPU comes from the pass after.
    print("  wall time inside each step (speech, screen text and their embeddings overlap):")
    for name, (wall, _) in sorted(times.items(), key=lambda kv: -kv[1][0]):
        print(f"  {name:<12} {wall:7.1f} s wall  {duration / max(wall, 1e-9):7.1f}x realtime")
    print(f"RSS MB per chunk: {', '.join(f'{r:.0f}' for r in rss)}; peak {max(rss):.0f}, "
          f"after first chunk {rss[0]:.0f}, ratio {max(rss) / rss[0]:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--rss-every", type=int, default=1, help="print RSS every N chunks")
    ap.add_argument("--profile", type=Path, help="write a cProfile of the end-to-end run")
    args = ap.parse_args()
    video = make_video(ROOT / "bench" / ".cache" / f"speech_slides_{args.minutes}min.mp4",
                       args.minutes)
    duration = args.minutes * 60
    print(f"video: {video.name}, {args.minutes} min, 640x360 {FPS} fps, slide every "
          f"{SLIDE_S} s, continuous speech; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; RSS at start {rss_mb():.0f} MB", flush=True)
    cpu = cpu_s()
    decode_s = decode_only(Settings(), video)
    cpu = cpu_s() - cpu
    print(f"decode-only: {decode_s:.1f} s = {duration / decode_s:.1f}x realtime; {cpu:.1f} CPU-s "
          f"= {duration / cpu:.1f} video s per CPU-s", flush=True)
    times: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    # Models load once per process: timed apart, so a short run is not mostly loading.
    timed(times, "model load", load_models)()
    instrument(times)
    end_to_end(video, args, times, decode_s)


if __name__ == "__main__":
    main()

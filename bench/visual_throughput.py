"""Visual embedding throughput on CPU: x realtime and CPU-seconds per video-second for the
default visual sampling, the chronoscope path beside a naive loop, measured in the same run.

    .venv/bin/python bench/visual_throughput.py [--video PATH] [--naive-frames 8]
                                                [--batch N] [--dtype auto|float32|bfloat16]

Model: the default CPU model's real architecture (SigLIP 2 base patch16 224, its published
config: ViT-B/16 vision and text towers, fixtures/visual_tiny.SIGLIP2_BASE_224) with random
weights, saved and loaded through model.visual like a downloaded checkpoint (the text
vocabulary is the offline WordPiece one, 30522 rows instead of 256000: it changes only the
embedding table, not the image path measured here).

chronoscope path: indexer.decode.sample_frames at settings.decode (1 fps, 448 px) ->
indexer.shots.detect (keyframes per shot, one at least every visual.keyframe_max_gap_s)
-> model.visual.embed_images on the keyframes (batches of visual.batch_size, the CPU dtype
of visual.cpu_dtype); the embed time is split into the image processor and the model.
naive loop: every sampled frame through the checkpoint's default AutoProcessor and the
float32 model, one call per frame (what a first version would do); measured on the first
--naive-frames keyframes and reported per frame. Its vectors are the float32 reference:
the minimum cosine of ours to them says what the speed costs in quality.
x realtime = video seconds / wall seconds; CPU-s per video-s counts every thread of this
process (time.process_time), so it does not depend on what else the machine runs."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.decode import Clock  # noqa: E402
from core.config import Settings, VisualSettings  # noqa: E402
from fixtures.visual_tiny import build  # noqa: E402
from indexer.decode import sample_frames  # noqa: E402
from indexer.shots import detect  # noqa: E402
from model import visual  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"


def chronoscope_path(video: Path, settings: Settings) -> dict:
    with Clock() as decode:
        frames = list(sample_frames(video, fps=settings.decode.fps,
                                    max_side=settings.decode.max_side))
    with Clock() as shot:
        shots = detect(frames, max_gap_s=settings.visual.keyframe_max_gap_s)
        keys = [f for s in shots for f in s.keyframes]
    with Clock() as embed:
        vectors = visual.embed_images(keys, settings)
    backend = visual.VisualEmbedder.get(settings).backend
    with Clock() as pre:
        backend.processor(images=[f.image for f in keys], return_tensors="pt")
    return dict(frames=frames, keys=keys, vectors=vectors, shots=len(shots), decode=decode,
                shot=shot, embed=embed, pre=pre, duration=shots[-1].end_ms / 1000)


def naive_loop(frames, directory: Path) -> tuple[Clock, np.ndarray]:
    from transformers import AutoModel, AutoProcessor
    processor = AutoProcessor.from_pretrained(str(directory), local_files_only=True)
    model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()
    out = []
    with Clock() as clock:
        for f in frames:
            inputs = processor(images=[f.image], return_tensors="pt")
            with torch.no_grad():
                out.append(visual._features(model.get_image_features(**inputs))[0].numpy())
    return clock, visual._unit(out)


def report(args, r: dict, naive: Clock, cosine: float, dtype, load: float) -> None:
    n, dur, k = len(r["frames"]), r["duration"], len(r["keys"])
    ours = r["decode"].wall + r["shot"].wall + r["embed"].wall
    ours_cpu = r["decode"].cpu + r["shot"].cpu + r["embed"].cpu
    per, per_cpu = naive.wall / args.naive_frames, naive.cpu / args.naive_frames
    naive_wall, naive_cpu = r["decode"].wall + per * n, r["decode"].cpu + per_cpu * n
    e, p = r["embed"], r["pre"]
    print(f"# {date.today()} {args.video.name} ({dur:.0f} s), torch threads "
          f"{torch.get_num_threads()}, {os.cpu_count()} cpus, load average "
          f"{os.getloadavg()[0]:.1f}, model load {load:.1f} s, dtype {dtype}")
    print(f"sampled frames {n}, shots {r['shots']}, keyframes {k}")
    print(f"chronoscope: decode {r['decode'].wall:.1f} s ({r['decode'].cpu:.1f} CPU-s), "
          f"shots {r['shot'].wall:.2f} s, embed {e.wall:.1f} s ({e.cpu:.1f} CPU-s = processor "
          f"{p.cpu:.2f} + model {e.cpu - p.cpu:.1f}; {k / e.wall:.1f} keyframes/s, "
          f"{e.cpu / k:.3f} CPU-s per keyframe, batch {args.batch})")
    print(f"chronoscope: total {ours:.1f} s = {dur / ours:.1f}x realtime, "
          f"{ours_cpu / dur:.3f} CPU-s per video-s")
    print(f"naive loop: {1 / per:.2f} frames/s, {per_cpu:.3f} CPU-s per frame; decode + every "
          f"frame {naive_wall:.1f} s = {dur / naive_wall:.2f}x realtime, "
          f"{naive_cpu / dur:.3f} CPU-s per video-s")
    print(f"ratio chronoscope / naive: {naive_wall / ours:.1f}x wall, "
          f"{naive_cpu / ours_cpu:.1f}x CPU; per embedded frame {per_cpu / (e.cpu / k):.1f}x CPU")
    print(f"min cosine of chronoscope's vectors to the naive float32 ones ({args.naive_frames} "
          f"keyframes): {cosine:.5f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--video", type=Path, default=MEDIA / "people_walking_139s.mp4")
    ap.add_argument("--naive-frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=VisualSettings().batch_size)
    ap.add_argument("--dtype", default=VisualSettings().cpu_dtype,
                    choices=("auto", "float32", "bfloat16"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = build(Path(tmp) / "siglip2-base-patch16-224", tiny=False)
        settings = Settings(visual=VisualSettings(model=str(directory), batch_size=args.batch,
                                                  cpu_dtype=args.dtype))
        t = time.perf_counter()
        dtype = visual.VisualEmbedder.get(settings).backend.model.dtype
        load = time.perf_counter() - t
        visual.embed_images([np.zeros((224, 224, 3), np.uint8)], settings)     # warm up
        r = chronoscope_path(args.video, settings)
        naive, reference = naive_loop(r["keys"][:args.naive_frames], directory)
    cosine = float(np.sum(reference * r["vectors"][:len(reference)], axis=1).min())
    report(args, r, naive, cosine, dtype, load)


if __name__ == "__main__":
    main()
